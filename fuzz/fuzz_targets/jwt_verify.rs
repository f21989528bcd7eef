//! The JWT verifier must never panic and never accept bytes it did not sign: arbitrary
//! input is refused (the chance of forging an ES256 signature is nil).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_jose::{KeySet, RotationPolicy, VerificationKeys, Verifier};

fn keys() -> &'static VerificationKeys {
    static KEYS: OnceLock<VerificationKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        KeySet::generate(RotationPolicy::default(), 1_700_000_000)
            .unwrap()
            .verification_keys()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let verifier = Verifier::new("https://issuer.example", "fuzz");
    assert!(verifier.verify(token, keys(), 1_700_000_100).is_err());
});
