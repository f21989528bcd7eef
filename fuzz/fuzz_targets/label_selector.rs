//! The `?labelSelector=` parser must never panic; a selector that parses must be evaluable.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use portcullis_model::LabelSelector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = LabelSelector::parse(text) {
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let _ = selector.matches(&labels);
        let _ = selector.matches(&BTreeMap::new());
    }
});
