//! The AuthenticationConfiguration reader (YAML, strict fields, validation, CEL compilation)
//! must never panic: any text is a configuration or an error naming a field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portcullis_authn::AuthenticationConfiguration::from_yaml(text);
    }
});
