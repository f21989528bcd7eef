//! Property: whatever claims are signed come back verified, unchanged.

use std::sync::LazyLock;

use portcullis_jose::{KeySpec, SigningKey, Verifier};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::support::{AUDIENCE, ISSUER, NOW, keys_of};

static KEYS: LazyLock<Vec<SigningKey>> = LazyLock::new(|| {
    [KeySpec::Es256, KeySpec::Rs256Bits2048, KeySpec::Ed25519]
        .into_iter()
        .map(|s| SigningKey::generate(s).unwrap())
        .collect()
});

fn extra_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        proptest::collection::vec(any::<String>(), 0..4).prop_map(Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn sign_then_verify_returns_the_claims(
        key in 0usize..3,
        sub in any::<String>(),
        extra in proptest::collection::btree_map("[a-z_]{1,12}", extra_value(), 0..8),
        lifetime in 1u64..86_400,
    ) {
        let mut claims = Map::new();
        for (k, v) in extra {
            claims.insert(format!("x_{k}"), v);
        }
        claims.insert("iss".into(), json!(ISSUER));
        claims.insert("aud".into(), json!(AUDIENCE));
        claims.insert("sub".into(), json!(sub));
        claims.insert("iat".into(), json!(NOW));
        claims.insert("exp".into(), json!(NOW + lifetime));
        let claims = Value::Object(claims);

        let signer = &KEYS[key];
        let token = signer.sign(&claims).unwrap();
        let verified = Verifier::new(ISSUER, AUDIENCE)
            .verify(&token, &keys_of(&KEYS.iter().collect::<Vec<_>>()), NOW)
            .unwrap();
        prop_assert_eq!(&verified.claims, &claims);
        prop_assert_eq!(verified.subject.as_deref(), Some(sub.as_str()));
        prop_assert_eq!(verified.kid.as_deref(), Some(signer.kid()));
    }
}
