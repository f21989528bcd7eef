//! Claim mapping and validation (CEL over arbitrary claims) must never panic: any claims a
//! trusted issuer signs either map to a user or are refused.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use portcullis_authn::config::Issuer;
use portcullis_authn::{
    AuthenticationConfiguration, JwtAuthenticator, KeySource, KeySourceFactory, Outcome, StaticKeys,
};
use portcullis_jose::{KeySet, RotationPolicy};

const ISSUER: &str = "https://issuer.example";
const NOW: u64 = 1_700_000_000;

const CONFIG: &str = r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer: {url: "https://issuer.example", audiences: [fuzz]}
  claimValidationRules:
  - expression: "!has(claims.banned) || claims.banned == false"
  claimMappings:
    username: {expression: "'cel:' + claims.sub"}
    groups: {expression: "has(claims.groups) ? claims.groups : []"}
    uid: {claim: sub}
    extra:
    - key: example.com/tier
      valueExpression: "has(claims.tier) ? claims.tier : ''"
  userValidationRules:
  - expression: "size(user.groups) < 100"
"#;

struct Fixture {
    keys: KeySet,
    jwt: JwtAuthenticator,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = KeySet::generate(RotationPolicy::default(), NOW).unwrap();
        let static_keys = StaticKeys::new(keys.verification_keys());
        let factory: KeySourceFactory =
            Arc::new(move |_: &Issuer| Ok(Arc::new(static_keys.clone()) as Arc<dyn KeySource>));
        let config = AuthenticationConfiguration::from_yaml(CONFIG).unwrap();
        let jwt = JwtAuthenticator::new(&config, &factory).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Fixture { keys, jwt, runtime }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(mut claims)) = serde_json::from_slice(data) else {
        return;
    };
    claims.insert("iss".into(), ISSUER.into());
    claims.insert("aud".into(), "fuzz".into());
    claims.insert("iat".into(), NOW.into());
    claims.insert("exp".into(), (NOW + 600).into());
    let f = fixture();
    let Ok(token) = f.keys.sign(&claims) else {
        return;
    };
    let token = secrecy::SecretString::from(token);
    match f.runtime.block_on(f.jwt.authenticate_token(&token, NOW)) {
        Outcome::Authenticated(a) => {
            assert!(a.user.name.starts_with("cel:"));
            assert!(!a.user.groups.iter().any(|g| g == "system:masters"));
        }
        Outcome::Failed(_) | Outcome::NotMine => {}
    }
});
