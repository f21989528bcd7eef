//! The resource decoder must never panic on any YAML.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portcullis_model::decode_yaml_documents("fuzz.yaml", text);
    }
});
