//! `labelSelector` and `fieldSelector` of list and watch requests: parsing never panics, and a
//! selector that parses can be matched against an object. The input is the two selectors
//! separated by a NUL byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (label, field) = text.split_once('\0').unwrap_or((text, ""));
    let _ = portcullis_server::fuzzing::list_selectors(label, field);
});
