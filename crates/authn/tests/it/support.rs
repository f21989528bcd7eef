//! Shared fixtures: issuers with keys, tokens, configurations.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use portcullis_authn::config::Issuer;
use portcullis_authn::{
    AuthenticationConfiguration, AuthenticatorChain, Credentials, JwtAuthenticator,
    KeySourceFactory, StaticKeys, UserInfo,
};
use portcullis_jose::{KeySet, RotationPolicy};
use serde_json::{Value, json};

pub const ISSUER_A: &str = "https://issuer-a.example";
pub const ISSUER_B: &str = "https://issuer-b.example";

pub fn now() -> u64 {
    portcullis_jose::unix_now()
}

pub fn key_set() -> KeySet {
    KeySet::generate(RotationPolicy::default(), now()).unwrap()
}

/// Key sources for the issuers' URLs; any other issuer is an error.
pub fn factory(keys: &[(&str, &KeySet)]) -> KeySourceFactory {
    let map: HashMap<String, StaticKeys> = keys
        .iter()
        .map(|(url, k)| ((*url).to_owned(), StaticKeys::new(k.verification_keys())))
        .collect();
    Arc::new(move |issuer: &Issuer| {
        map.get(&issuer.url)
            .cloned()
            .map(|k| Arc::new(k) as Arc<dyn portcullis_authn::KeySource>)
            .ok_or_else(|| portcullis_authn::Error::Keys {
                issuer: issuer.url.clone(),
                reason: "no test keys".into(),
            })
    })
}

pub fn config(yaml: &str) -> AuthenticationConfiguration {
    AuthenticationConfiguration::from_yaml(yaml).unwrap()
}

/// Claims of a valid token of `iss` for `aud`, with `extra` merged in (null removes a claim).
pub fn claims(iss: &str, aud: &str, extra: Value) -> Value {
    let now = now();
    let mut c = json!({
        "iss": iss, "aud": aud, "sub": "u-1", "iat": now, "exp": now + 600,
        "email": "jane@example.com", "email_verified": true, "groups": ["devs", "ops"],
    });
    let obj = c.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    c
}

pub fn headers_with_token(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

/// Runs the chain on a bearer token.
pub async fn auth(
    chain: &AuthenticatorChain,
    token: &str,
) -> Result<Option<UserInfo>, portcullis_authn::Error> {
    let headers = headers_with_token(token);
    chain
        .authenticate(&Credentials::from_headers(&headers))
        .await
        .map(|a| a.map(|a| std::sync::Arc::unwrap_or_clone(a.user)))
}

pub fn chain_of(jwt: JwtAuthenticator) -> AuthenticatorChain {
    AuthenticatorChain::new().with(Arc::new(jwt))
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with a hand-made header and the signature of `signed` (a real token).
pub fn with_header(signed: &str, header: Value) -> String {
    let mut parts = signed.split('.');
    let (_, payload, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    format!(
        "{}.{payload}.{signature}",
        b64(header.to_string().as_bytes())
    )
}

/// A basic one-issuer configuration (user from `email`, groups with prefix `oidc:`).
pub fn basic_yaml(issuer: &str, audience: &str) -> String {
    format!(
        r#"apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {issuer}
    audiences: [{audience}]
  claimMappings:
    username:
      claim: email
      prefix: ""
    groups:
      claim: groups
      prefix: "oidc:"
    uid:
      claim: sub
"#
    )
}
