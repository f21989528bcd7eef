//! The AuthenticationConfiguration file: strict reading and kube-apiserver's validation.

use portcullis_authn::{AuthenticationConfiguration, Error};

use crate::support::basic_yaml;

const HEAD: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n";

fn error_of(yaml: &str) -> (String, String) {
    match AuthenticationConfiguration::from_yaml(yaml) {
        Err(Error::Config { path, message }) => (path, message),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn both_api_versions_are_read() {
    for version in ["v1beta1", "v1"] {
        let yaml = basic_yaml("https://idp.example", "kube").replace(
            "apiserver.config.k8s.io/v1beta1",
            &format!("apiserver.config.k8s.io/{version}"),
        );
        let config = AuthenticationConfiguration::from_yaml(&yaml).unwrap();
        assert_eq!(config.jwt[0].issuer.audiences, ["kube"]);
    }
    let (path, _) =
        error_of(&basic_yaml("https://idp.example", "kube").replace("v1beta1", "v1alpha9"));
    assert_eq!(path, "apiVersion");
}

#[test]
fn unknown_and_repeated_fields_are_refused_with_their_path() {
    let yaml = basic_yaml("https://idp.example", "kube").replace("audiences:", "audiance:");
    let (path, message) = error_of(&yaml);
    assert_eq!(path, "jwt[0].issuer.audiance");
    assert!(message.contains("unknown field"), "{message}");

    let yaml = basic_yaml("https://idp.example", "kube").replace(
        "      prefix: \"\"\n",
        "      prefix: \"\"\n      prefixx: a\n",
    );
    let (path, _) = error_of(&yaml);
    assert_eq!(path, "jwt[0].claimMappings.username.prefixx");

    let yaml = format!("{HEAD}kind: AuthenticationConfiguration\njwt: []\n");
    let (_, message) = error_of(&yaml);
    assert!(message.to_lowercase().contains("duplicate"), "{message}");
}

/// A valid authenticator with one part replaced; each must be refused at `path`.
#[test]
fn validation_as_kube_apiserver() {
    let issuer = "issuer: {url: https://idp.example, audiences: [kube]}";
    let username = "username: {claim: sub, prefix: \"\"}";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "http issuer",
            format!(
                "- issuer: {{url: http://idp.example, audiences: [kube]}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].issuer.url",
            "https",
        ),
        (
            "issuer with a query",
            format!(
                "- issuer: {{url: 'https://idp.example?a=b', audiences: [kube]}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].issuer.url",
            "query",
        ),
        (
            "no audience",
            format!(
                "- issuer: {{url: https://idp.example, audiences: []}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].issuer.audiences",
            "at least one",
        ),
        (
            "two audiences without MatchAny",
            format!(
                "- issuer: {{url: https://idp.example, audiences: [a, b]}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].issuer.audienceMatchPolicy",
            "MatchAny",
        ),
        (
            "duplicate audience",
            format!(
                "- issuer: {{url: https://idp.example, audiences: [a, a], audienceMatchPolicy: MatchAny}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].issuer.audiences[1]",
            "duplicate",
        ),
        (
            "discoveryURL equal to url",
            format!(
                "- issuer: {{url: https://idp.example, discoveryURL: https://idp.example/, audiences: [a]}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].issuer.discoveryURL",
            "different",
        ),
        (
            "bad CA",
            format!(
                "- issuer: {{url: https://idp.example, certificateAuthority: nope, audiences: [a]}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].issuer.certificateAuthority",
            "PEM",
        ),
        (
            "username claim without prefix",
            format!("- {issuer}\n  claimMappings: {{username: {{claim: sub}}}}"),
            "jwt[0].claimMappings.username.prefix",
            "prefix is required",
        ),
        (
            "username claim and expression",
            format!(
                "- {issuer}\n  claimMappings: {{username: {{claim: sub, prefix: '', expression: claims.sub}}}}"
            ),
            "jwt[0].claimMappings.username",
            "both",
        ),
        (
            "username prefix with expression",
            format!(
                "- {issuer}\n  claimMappings: {{username: {{prefix: x, expression: claims.sub}}}}"
            ),
            "jwt[0].claimMappings.username.prefix",
            "expression",
        ),
        (
            "no username",
            format!("- {issuer}\n  claimMappings: {{username: {{}}}}"),
            "jwt[0].claimMappings.username",
            "required",
        ),
        (
            "groups claim without prefix",
            format!("- {issuer}\n  claimMappings: {{{username}, groups: {{claim: groups}}}}"),
            "jwt[0].claimMappings.groups.prefix",
            "prefix is required",
        ),
        (
            "a system: prefix",
            format!("- {issuer}\n  claimMappings: {{username: {{claim: sub, prefix: 'system:'}}}}"),
            "jwt[0].claimMappings.username.prefix",
            "system:",
        ),
        (
            "CEL that does not compile",
            format!("- {issuer}\n  claimMappings: {{username: {{expression: 'claims.sub +'}}}}"),
            "jwt[0].claimMappings.username.expression",
            "compilation failed",
        ),
        (
            "CEL reading user in a claim mapping",
            format!("- {issuer}\n  claimMappings: {{username: {{expression: 'user.username'}}}}"),
            "jwt[0].claimMappings.username.expression",
            "undeclared reference",
        ),
        (
            "claims.email without claims.email_verified",
            format!("- {issuer}\n  claimMappings: {{username: {{expression: 'claims.email'}}}}"),
            "jwt[0].claimMappings.username.expression",
            "email_verified",
        ),
        (
            "extra key in kubernetes.io",
            format!(
                "- {issuer}\n  claimMappings: {{{username}, extra: [{{key: kubernetes.io/x, valueExpression: claims.sub}}]}}"
            ),
            "jwt[0].claimMappings.extra[0].key",
            "reserved",
        ),
        (
            "extra key without a domain",
            format!(
                "- {issuer}\n  claimMappings: {{{username}, extra: [{{key: tier, valueExpression: claims.sub}}]}}"
            ),
            "jwt[0].claimMappings.extra[0].key",
            "domain-prefixed",
        ),
        (
            "extra key upper case",
            format!(
                "- {issuer}\n  claimMappings: {{{username}, extra: [{{key: Example.com/x, valueExpression: claims.sub}}]}}"
            ),
            "jwt[0].claimMappings.extra[0].key",
            "lowercase",
        ),
        (
            "claim rule with claim and expression",
            format!(
                "- {issuer}\n  claimValidationRules: [{{claim: hd, expression: 'true'}}]\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].claimValidationRules[0]",
            "both",
        ),
        (
            "claim rule with requiredValue and expression",
            format!(
                "- {issuer}\n  claimValidationRules: [{{requiredValue: x, expression: 'true'}}]\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].claimValidationRules[0].requiredValue",
            "expression",
        ),
        (
            "user rule reading claims",
            format!(
                "- {issuer}\n  claimMappings: {{{username}}}\n  userValidationRules: [{{expression: 'claims.sub == \"\"'}}]"
            ),
            "jwt[0].userValidationRules[0].expression",
            "undeclared reference",
        ),
        (
            "duplicate claim rule expression",
            format!(
                "- {issuer}\n  claimValidationRules: [{{expression: 'true'}}, {{expression: 'true'}}]\n  claimMappings: {{{username}}}"
            ),
            "jwt[0].claimValidationRules[1].expression",
            "duplicate",
        ),
        (
            "duplicate discoveryURL",
            format!(
                "- issuer: {{url: https://a.example, discoveryURL: https://d.example/x, audiences: [a]}}\n  claimMappings: {{{username}}}\n- issuer: {{url: https://b.example, discoveryURL: https://d.example/x, audiences: [a]}}\n  claimMappings: {{{username}}}"
            ),
            "jwt[1].issuer.discoveryURL",
            "duplicate",
        ),
        (
            "duplicate issuer",
            format!(
                "- {issuer}\n  claimMappings: {{{username}}}\n- {issuer}\n  claimMappings: {{{username}}}"
            ),
            "jwt[1].issuer.url",
            "duplicate",
        ),
    ];
    for (what, jwt, want_path, want_message) in cases {
        let yaml = format!("{HEAD}jwt:\n{jwt}\n");
        let (path, message) = error_of(&yaml);
        assert_eq!(path, want_path, "{what}: {message}");
        assert!(
            message.contains(want_message),
            "{what}: {message:?} should say {want_message:?}"
        );
    }
    // And the variants that are valid.
    for ok in [
        format!(
            "- issuer: {{url: https://idp.example, audiences: [a, b], audienceMatchPolicy: MatchAny}}\n  claimMappings: {{{username}}}"
        ),
        format!(
            "- {issuer}\n  claimMappings: {{username: {{expression: 'claims.email', }}}}\n  claimValidationRules: [{{expression: 'claims.email_verified == true'}}]"
        ),
        format!(
            "- {issuer}\n  claimMappings: {{username: {{claim: email, prefix: ''}}, groups: {{expression: claims.groups}}}}"
        ),
    ] {
        let yaml = format!("{HEAD}jwt:\n{ok}\n");
        assert!(
            AuthenticationConfiguration::from_yaml(&yaml).is_ok(),
            "{ok}"
        );
    }
}

/// The fuzz seeds of the configuration reader are valid, so the fuzzer starts from files that
/// reach validation and CEL compilation.
#[test]
fn the_fuzz_seeds_are_valid_configurations() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/authn_config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = AuthenticationConfiguration::from_yaml(&text) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 2);
}
