//! JWT issuers through the chain: every negative case of the jose verifier, mappings, rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_authn::{
    Authenticated, Authenticator, AuthenticatorChain, Credentials, Error, JwtAuthenticator,
    KeySource, Outcome, StaticKeys,
};
use portcullis_jose::{VerifiedToken, Verifier};
use serde_json::json;

use crate::support::*;

fn one_issuer() -> (portcullis_jose::KeySet, AuthenticatorChain) {
    let keys = key_set();
    let jwt = JwtAuthenticator::new(
        &config(&basic_yaml(ISSUER_A, "kube")),
        &factory(&[(ISSUER_A, &keys)]),
    )
    .unwrap();
    (keys, chain_of(jwt))
}

#[tokio::test]
async fn a_valid_token_becomes_a_user_with_prefixed_groups() {
    let (keys, chain) = one_issuer();
    let token = keys
        .sign(&claims(ISSUER_A, "kube", json!({"jti": "t-1"})))
        .unwrap();
    let user = auth(&chain, &token).await.unwrap().unwrap();
    assert_eq!(user.name, "jane@example.com");
    assert_eq!(user.uid, "u-1");
    assert_eq!(
        user.groups,
        ["oidc:devs", "oidc:ops", "system:authenticated"]
    );
    assert_eq!(
        user.extra["authentication.kubernetes.io/credential-id"],
        ["JTI=t-1"]
    );
}

/// Each refusal of the verifier reaches the chain as an error, never as anonymous.
#[tokio::test]
async fn every_verifier_refusal_denies_through_the_chain() {
    let (keys, chain) = one_issuer();
    let now = now();
    let good = keys.sign(&claims(ISSUER_A, "kube", json!({}))).unwrap();
    let kid = keys.signing_key().unwrap().kid().to_owned();

    // Bad signature: the signature of another token with the same header.
    let other = keys
        .sign(&claims(ISSUER_A, "kube", json!({"sub": "u-2"})))
        .unwrap();
    let mut g = good.split('.');
    let (h, p) = (g.next().unwrap(), g.next().unwrap());
    let bad_signature = format!("{h}.{p}.{}", other.rsplit('.').next().unwrap());

    let cases: Vec<(&str, String)> = vec![
        ("bad signature", bad_signature),
        (
            "wrong audience",
            keys.sign(&claims(ISSUER_A, "other", json!({}))).unwrap(),
        ),
        (
            "expired",
            keys.sign(&claims(
                ISSUER_A,
                "kube",
                json!({"iat": now - 7200, "exp": now - 3600}),
            ))
            .unwrap(),
        ),
        (
            "not yet valid",
            keys.sign(&claims(ISSUER_A, "kube", json!({"nbf": now + 3600})))
                .unwrap(),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "kid": kid}).to_string().as_bytes()),
                good.split('.').nth(1).unwrap()
            ),
        ),
        (
            "alg HS256",
            with_header(&good, json!({"alg": "HS256", "kid": kid, "typ": "JWT"})),
        ),
        (
            "alg RS256 with an ES256 key",
            with_header(&good, json!({"alg": "RS256", "kid": kid, "typ": "JWT"})),
        ),
        (
            "unknown kid",
            key_set()
                .sign(&claims(ISSUER_A, "kube", json!({})))
                .unwrap(),
        ),
        (
            "no exp",
            keys.sign(&claims(ISSUER_A, "kube", json!({"exp": null})))
                .unwrap(),
        ),
    ];
    assert!(auth(&chain, &good).await.unwrap().is_some());
    for (what, token) in cases {
        let result = auth(&chain, &token).await;
        assert!(matches!(result, Err(Error::Token(_))), "{what}: {result:?}");
    }
}

#[tokio::test]
async fn a_token_of_an_unknown_issuer_or_not_a_jwt_is_an_invalid_bearer_token() {
    let (keys, chain) = one_issuer();
    for token in [
        keys.sign(&claims("https://evil.example", "kube", json!({})))
            .unwrap(),
        "not-a-jwt".to_owned(),
    ] {
        let result = auth(&chain, &token).await;
        assert!(
            matches!(&result, Err(e) if e.to_string().contains("invalid bearer token")),
            "{result:?}"
        );
    }
    // No credential at all is anonymous (Ok(None)), for the front end to decide.
    let headers = http::HeaderMap::new();
    assert!(
        chain
            .authenticate(&Credentials::from_headers(&headers))
            .await
            .unwrap()
            .is_none()
    );
}

struct Always;

#[async_trait::async_trait]
impl Authenticator for Always {
    async fn authenticate(&self, _: &Credentials<'_>) -> Outcome {
        Outcome::Authenticated(Authenticated {
            user: std::sync::Arc::new(portcullis_authn::UserInfo {
                name: "weaker".into(),
                ..Default::default()
            }),
            expires_at: None,
        })
    }
}

#[tokio::test]
async fn a_failing_authenticator_never_falls_through_to_a_later_one() {
    let (keys, chain) = one_issuer();
    let chain = chain.with(Arc::new(Always));
    let expired = keys
        .sign(&claims(
            ISSUER_A,
            "kube",
            json!({"iat": now() - 7200, "exp": now() - 3600}),
        ))
        .unwrap();
    assert!(auth(&chain, &expired).await.is_err());
    // A token of another issuer is not the JWT authenticator's: the next one decides.
    let foreign = keys
        .sign(&claims("https://elsewhere.example", "kube", json!({})))
        .unwrap();
    assert_eq!(
        auth(&chain, &foreign).await.unwrap().unwrap().name,
        "weaker"
    );
}

#[tokio::test]
async fn two_issuers_with_different_audiences() {
    let (a, b) = (key_set(), key_set());
    let yaml = format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {ISSUER_A}
    audiences: [kube-a, shared]
    audienceMatchPolicy: MatchAny
  claimMappings:
    username: {{claim: sub, prefix: "a:"}}
- issuer:
    url: {ISSUER_B}
    audiences: [kube-b]
  claimMappings:
    username: {{claim: sub, prefix: "b:"}}
"#
    );
    let jwt =
        JwtAuthenticator::new(&config(&yaml), &factory(&[(ISSUER_A, &a), (ISSUER_B, &b)])).unwrap();
    let chain = chain_of(jwt);
    let ok = |t: String| t;
    for (token, name) in [
        (
            ok(a.sign(&claims(ISSUER_A, "kube-a", json!({}))).unwrap()),
            "a:u-1",
        ),
        (
            ok(a.sign(&claims(ISSUER_A, "shared", json!({}))).unwrap()),
            "a:u-1",
        ),
        (
            ok(b.sign(&claims(ISSUER_B, "kube-b", json!({}))).unwrap()),
            "b:u-1",
        ),
    ] {
        assert_eq!(auth(&chain, &token).await.unwrap().unwrap().name, name);
    }
    for token in [
        // Audience of the other issuer.
        a.sign(&claims(ISSUER_A, "kube-b", json!({}))).unwrap(),
        b.sign(&claims(ISSUER_B, "kube-a", json!({}))).unwrap(),
        // Right audience, other issuer's key.
        b.sign(&claims(ISSUER_A, "kube-a", json!({}))).unwrap(),
    ] {
        assert!(matches!(auth(&chain, &token).await, Err(Error::Token(_))));
    }
}

#[tokio::test]
async fn cel_mappings_and_rules() {
    let keys = key_set();
    let yaml = format!(
        r#"apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {ISSUER_A}
    audiences: [kube]
  claimValidationRules:
  - expression: "claims.hd == 'example.com'"
    message: the hosted domain must be example.com
  claimMappings:
    username:
      expression: "'cel:' + claims.preferred_username"
    groups:
      expression: "claims.roles.map(r, 'role:' + r)"
    uid:
      expression: "claims.sub"
    extra:
    - key: example.com/tier
      valueExpression: "claims.tier"
  userValidationRules:
  - expression: "!user.username.startsWith('cel:banned')"
    message: banned users may not sign in
"#
    );
    let chain =
        chain_of(JwtAuthenticator::new(&config(&yaml), &factory(&[(ISSUER_A, &keys)])).unwrap());
    let token = |extra| keys.sign(&claims(ISSUER_A, "kube", extra)).unwrap();
    let base = json!({"hd": "example.com", "preferred_username": "jane",
        "roles": ["admin", "dev"], "tier": "gold"});
    let user = auth(&chain, &token(base.clone())).await.unwrap().unwrap();
    assert_eq!(user.name, "cel:jane");
    assert_eq!(
        user.groups,
        ["role:admin", "role:dev", "system:authenticated"]
    );
    assert_eq!(user.uid, "u-1");
    assert_eq!(user.extra["example.com/tier"], ["gold"]);

    let mut other_domain = base.clone();
    other_domain["hd"] = json!("evil.com");
    let e = auth(&chain, &token(other_domain)).await.unwrap_err();
    assert!(
        e.to_string().contains("hosted domain must be example.com"),
        "{e}"
    );

    let mut banned = base.clone();
    banned["preferred_username"] = json!("banned-bob");
    let e = auth(&chain, &token(banned)).await.unwrap_err();
    assert!(e.to_string().contains("banned users"), "{e}");

    // A claim the expression reads is missing: evaluation error, denied.
    let mut missing = base;
    missing
        .as_object_mut()
        .unwrap()
        .remove("preferred_username");
    assert!(matches!(
        auth(&chain, &token(missing)).await,
        Err(Error::Claims(_))
    ));
}

#[tokio::test]
async fn email_verified_false_is_refused_true_and_absent_are_accepted() {
    let (keys, chain) = one_issuer();
    let token = |extra| keys.sign(&claims(ISSUER_A, "kube", extra)).unwrap();
    let e = auth(&chain, &token(json!({"email_verified": false})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("email not verified"), "{e}");
    assert!(
        auth(&chain, &token(json!({"email_verified": "true"})))
            .await
            .is_err(),
        "a string is not a boolean"
    );
    assert!(auth(&chain, &token(json!({}))).await.unwrap().is_some());
    // As kube-apiserver's claim form: an absent email_verified is accepted.
    assert!(
        auth(&chain, &token(json!({"email_verified": null})))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn claims_cannot_mint_system_identities() {
    let keys = key_set();
    let yaml = format!(
        r#"apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {ISSUER_A}
    audiences: [kube]
  claimMappings:
    username: {{claim: sub, prefix: ""}}
    groups: {{claim: groups, prefix: ""}}
"#
    );
    let chain =
        chain_of(JwtAuthenticator::new(&config(&yaml), &factory(&[(ISSUER_A, &keys)])).unwrap());
    let token = |extra| keys.sign(&claims(ISSUER_A, "kube", extra)).unwrap();
    let e = auth(
        &chain,
        &token(json!({"groups": ["devs", "system:masters"]})),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("system:masters"), "{e}");
    let e = auth(&chain, &token(json!({"sub": "system:admin"})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("system:admin"), "{e}");
    assert_eq!(
        auth(&chain, &token(json!({})))
            .await
            .unwrap()
            .unwrap()
            .groups,
        ["devs", "ops", "system:authenticated"]
    );
}

#[tokio::test]
async fn legacy_flags_with_a_required_claim() {
    let keys = key_set();
    let flags = portcullis_authn::LegacyOidcFlags::from_args(&[
        format!("--oidc-issuer-url={ISSUER_A}"),
        "--oidc-client-id=kube".into(),
        "--oidc-groups-claim=groups".into(),
        "--oidc-groups-prefix=oidc:".into(),
        "--oidc-required-claim=hd=example.com".into(),
    ])
    .unwrap();
    let jwt = JwtAuthenticator::new(
        &flags.to_configuration().unwrap(),
        &factory(&[(ISSUER_A, &keys)]),
    )
    .unwrap();
    let chain = chain_of(jwt);
    let token = |extra| keys.sign(&claims(ISSUER_A, "kube", extra)).unwrap();
    let user = auth(&chain, &token(json!({"hd": "example.com"})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.name, format!("{ISSUER_A}#u-1"));
    assert_eq!(
        user.groups,
        ["oidc:devs", "oidc:ops", "system:authenticated"]
    );
    for bad in [json!({"hd": "evil.com"}), json!({}), json!({"hd": 1})] {
        assert!(matches!(
            auth(&chain, &token(bad)).await,
            Err(Error::Claims(_))
        ));
    }
}

/// Counts verifications, to see the cache at work.
struct Counting(StaticKeys, Arc<AtomicUsize>);

#[async_trait::async_trait]
impl KeySource for Counting {
    async fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<VerifiedToken, portcullis_jose::Error> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.verify(verifier, token, now).await
    }
}

#[tokio::test]
async fn identities_are_cached_until_exp() {
    let keys = key_set();
    let calls = Arc::new(AtomicUsize::new(0));
    let (vk, c) = (keys.verification_keys(), Arc::clone(&calls));
    let factory: portcullis_authn::KeySourceFactory = Arc::new(move |_| {
        Ok(Arc::new(Counting(StaticKeys::new(vk.clone()), Arc::clone(&c))) as Arc<dyn KeySource>)
    });
    let jwt = JwtAuthenticator::new(&config(&basic_yaml(ISSUER_A, "kube")), &factory).unwrap();
    let now = now();
    let token = secrecy::SecretString::from(
        keys.sign(&claims(ISSUER_A, "kube", json!({"exp": now + 100})))
            .unwrap(),
    );
    for _ in 0..3 {
        assert!(matches!(
            jwt.authenticate_token(&token, now).await,
            Outcome::Authenticated(_)
        ));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "verified once, then cached"
    );
    // Past exp (and the leeway), the cache does not answer: verification refuses.
    assert!(matches!(
        jwt.authenticate_token(&token, now + 100 + 3600).await,
        Outcome::Failed(_)
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
