//! Validation: the examples pass, and each rule is refused with the field's path and reason.

use portcullis_model::{
    FieldError, FieldErrorType, Resource, decode_yaml_documents, validate, validate_update,
};

use crate::{EXAMPLES, data};

use FieldErrorType::*;

fn one(text: &str) -> Resource {
    let mut rs = decode_yaml_documents("test", text).unwrap();
    assert_eq!(rs.len(), 1);
    rs.remove(0)
}

/// The first example of `file` with `from` replaced by `to`.
fn edited(file: &str, from: &str, to: &str) -> Resource {
    let text = data(file);
    assert!(text.contains(from), "{file} has no {from:?}");
    let text = text.replacen(from, to, 1);
    decode_yaml_documents(file, &text).unwrap().remove(0)
}

fn errors(r: &Resource) -> Vec<FieldError> {
    validate(r).expect_err("expected validation errors")
}

/// Asserts that validation reports exactly one error, on `field`, of `reason`, whose
/// message contains `needle`.
#[track_caller]
fn refused(r: &Resource, field: &str, reason: FieldErrorType, needle: &str) {
    let errs = errors(r);
    assert!(
        errs.iter()
            .any(|e| e.field == field && e.reason == reason && e.message.contains(needle)),
        "wanted {field} {reason:?} containing {needle:?}, got {errs:#?}"
    );
}

#[test]
fn examples_are_valid() {
    for name in EXAMPLES {
        for r in decode_yaml_documents(name, &data(name)).unwrap() {
            assert_eq!(validate(&r), Ok(()), "{name} {}", r.name());
            assert_eq!(validate_update(&r, &r), Ok(()), "{name} {}", r.name());
        }
    }
}

fn workspace(meta: &str) -> Resource {
    one(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Workspace\nmetadata:\n{meta}"
    ))
}

// === metadata ===

#[test]
fn name_is_required() {
    refused(
        &workspace("  labels: {a: b}\n"),
        "metadata.name",
        Required,
        "name or generateName",
    );
    assert_eq!(validate(&workspace("  generateName: ws-\n")), Ok(()));
}

#[test]
fn generate_name_follows_the_name_rule() {
    refused(
        &workspace("  generateName: WS-\n"),
        "metadata.generateName",
        Invalid,
        "DNS-1123",
    );
}

#[test]
fn label_names_are_dns1123_labels() {
    refused(
        &workspace("  name: Payments\n"),
        "metadata.name",
        Invalid,
        "DNS-1123 label",
    );
    refused(
        &workspace("  name: a.b\n"),
        "metadata.name",
        Invalid,
        "DNS-1123 label",
    );
    let long = "a".repeat(64);
    refused(
        &workspace(&format!("  name: {long}\n")),
        "metadata.name",
        Invalid,
        "63",
    );
}

#[test]
fn subdomain_names_are_dns1123_subdomains() {
    let r = edited("group.yaml", "name: sre", "name: SRE_team");
    refused(&r, "metadata.name", Invalid, "DNS-1123 subdomain");
    assert_eq!(
        validate(&edited("group.yaml", "name: sre", "name: sre.example.com")),
        Ok(())
    );
}

#[test]
fn rbac_names_are_path_segments() {
    let r = edited("roles.yaml", "name: portcullis-admin", "name: a/b");
    refused(&r, "metadata.name", Invalid, "'/'");
    let ok = edited(
        "roles.yaml",
        "name: portcullis-admin",
        "name: \"portcullis:admin\"",
    );
    assert_eq!(validate(&ok), Ok(()));
}

#[test]
fn namespaced_kinds_need_a_namespace() {
    let r = edited("cluster.yaml", "  namespace: ws-payments\n", "");
    refused(&r, "metadata.namespace", Required, "namespaced");
    let r = edited("cluster.yaml", "namespace: ws-payments", "namespace: WS");
    refused(&r, "metadata.namespace", Invalid, "DNS-1123 label");
}

#[test]
fn cluster_scoped_kinds_refuse_a_namespace() {
    refused(
        &workspace("  name: a\n  namespace: b\n"),
        "metadata.namespace",
        Forbidden,
        "cluster-scoped",
    );
}

#[test]
fn label_keys_are_qualified_names() {
    let r = workspace("  name: a\n  labels: {\"-bad\": x}\n");
    refused(&r, "metadata.labels[-bad]", Invalid, "label key");
    let r = workspace("  name: a\n  labels: {\"Example.com/x\": x}\n");
    refused(&r, "metadata.labels[Example.com/x]", Invalid, "prefix");
}

#[test]
fn label_values_are_at_most_63_characters() {
    let r = workspace(&format!("  name: a\n  labels: {{k: {}}}\n", "v".repeat(64)));
    refused(&r, "metadata.labels[k]", Invalid, "63");
    let r = workspace("  name: a\n  labels: {k: \"a b\"}\n");
    refused(&r, "metadata.labels[k]", Invalid, "label value");
}

#[test]
fn annotation_keys_are_qualified_names() {
    let r = workspace("  name: a\n  annotations: {\"a b\": x}\n");
    refused(&r, "metadata.annotations[a b]", Invalid, "annotation key");
    // Upper case is allowed: keys are checked in lower case, as Kubernetes does.
    assert_eq!(
        validate(&workspace("  name: a\n  annotations: {Example.com/X: x}\n")),
        Ok(())
    );
}

#[test]
fn annotations_are_at_most_256_kib() {
    let big = "x".repeat(256 * 1024);
    let r = workspace(&format!("  name: a\n  annotations: {{k: {big}}}\n"));
    refused(&r, "metadata.annotations", TooLong, "262144");
}

#[test]
fn finalizers_are_qualified_and_unique() {
    let r = workspace("  name: a\n  finalizers: [\"a b\"]\n");
    refused(&r, "metadata.finalizers[0]", Invalid, "name part");
    let r = workspace("  name: a\n  finalizers: [x.io/f, x.io/f]\n");
    refused(&r, "metadata.finalizers[1]", Duplicate, "");
}

#[test]
fn generation_and_grace_period_are_not_negative() {
    refused(
        &workspace("  name: a\n  generation: -1\n"),
        "metadata.generation",
        Invalid,
        "greater",
    );
    let r = workspace("  name: a\n  deletionGracePeriodSeconds: -1\n");
    refused(&r, "metadata.deletionGracePeriodSeconds", Invalid, "");
}

#[test]
fn owner_references_are_complete_with_one_controller() {
    let r =
        workspace("  name: a\n  ownerReferences: [{apiVersion: v1, kind: A, name: '', uid: u}]\n");
    refused(&r, "metadata.ownerReferences[0].name", Required, "");
    let r = workspace(
        "  name: a\n  ownerReferences:\n  - {apiVersion: v1, kind: A, name: a, uid: u, controller: true}\n  \
         - {apiVersion: v1, kind: B, name: b, uid: v, controller: true}\n",
    );
    refused(&r, "metadata.ownerReferences", Invalid, "controller");
}

#[test]
fn all_errors_are_reported_at_once() {
    let r = workspace("  name: A\n  labels: {\"-k\": \"-v\"}\n  finalizers: [\"!\"]\n");
    assert!(errors(&r).len() >= 3, "{:#?}", errors(&r));
}

// === Workspace and Project ===

#[test]
fn workspace_namespace_is_a_label_and_not_reserved() {
    let r = edited(
        "workspace.yaml",
        "namespaceName: ws-payments",
        "namespaceName: ws_payments",
    );
    refused(&r, "spec.namespaceName", Invalid, "DNS-1123 label");
    let r = edited(
        "workspace.yaml",
        "namespaceName: ws-payments",
        "namespaceName: kube-system",
    );
    refused(&r, "spec.namespaceName", Forbidden, "reserved");
    let r = workspace("  name: default\n");
    refused(&r, "metadata.name", Forbidden, "spec.namespaceName");
}

#[test]
fn display_names_are_bounded() {
    let long = "x".repeat(257);
    let r = edited(
        "workspace.yaml",
        "displayName: Payments",
        &format!("displayName: {long}"),
    );
    refused(&r, "spec.displayName", TooLong, "256");
}

#[test]
fn project_namespace_is_required_valid_and_distinct() {
    let r = edited("project.yaml", "  namespaceName: checkout\n", "");
    refused(&r, "spec.namespaceName", Required, "");
    let r = edited(
        "project.yaml",
        "namespaceName: checkout",
        "namespaceName: Checkout",
    );
    refused(&r, "spec.namespaceName", Invalid, "DNS-1123");
    let r = edited(
        "project.yaml",
        "namespaceName: checkout",
        "namespaceName: ws-payments",
    );
    refused(&r, "spec.namespaceName", Invalid, "workspace namespace");
    let r = edited(
        "project.yaml",
        "namespaceName: checkout",
        "namespaceName: portcullis-global",
    );
    refused(&r, "spec.namespaceName", Forbidden, "reserved");
}

#[test]
fn project_placement_clusters_are_valid_and_unique() {
    let r = edited(
        "project.yaml",
        "      - name: prod-eu\n",
        "      - name: prod-eu\n      - name: prod-eu\n",
    );
    refused(&r, "spec.placement.clusters[1]", Duplicate, "");
    let r = edited("project.yaml", "- name: prod-eu", "- name: Prod");
    refused(&r, "spec.placement.clusters[0].name", Invalid, "DNS-1123");
}

#[test]
fn label_selectors_are_validated() {
    let r = edited(
        "project.yaml",
        "values: [eu-west-1, eu-central-1]",
        "values: []",
    );
    refused(
        &r,
        "spec.placement.clusterSelector.matchExpressions[0].values",
        Required,
        "In",
    );
    let r = edited(
        "project.yaml",
        "operator: DoesNotExist",
        "operator: DoesNotExist\n          values: [x]",
    );
    refused(
        &r,
        "spec.placement.clusterSelector.matchExpressions[1].values",
        Forbidden,
        "Exists",
    );
    let r = edited("project.yaml", "env: prod", "env: -prod");
    refused(
        &r,
        "spec.placement.clusterSelector.matchLabels[env]",
        Invalid,
        "label value",
    );
    let r = edited("project.yaml", "key: region", "key: -region");
    refused(
        &r,
        "spec.placement.clusterSelector.matchExpressions[0].key",
        Invalid,
        "",
    );
}

#[test]
fn namespace_names_are_immutable() {
    let old = one(&data("project.yaml"));
    let new = edited(
        "project.yaml",
        "namespaceName: checkout",
        "namespaceName: checkout-2",
    );
    let errs = validate_update(&old, &new).unwrap_err();
    assert_eq!(errs[0].field, "spec.namespaceName");
    assert_eq!(errs[0].message, "field is immutable");
    let old = one(&data("workspace.yaml"));
    let new = edited(
        "workspace.yaml",
        "namespaceName: ws-payments",
        "namespaceName: ws-pay",
    );
    assert_eq!(
        validate_update(&old, &new).unwrap_err()[0].field,
        "spec.namespaceName"
    );
}

#[test]
fn name_namespace_uid_and_kind_are_immutable() {
    let old = one(&data("project.yaml"));
    let renamed = edited("project.yaml", "name: checkout", "name: checkout2");
    assert_eq!(
        validate_update(&old, &renamed).unwrap_err()[0].field,
        "metadata.name"
    );
    let other = one(&data("cluster.yaml"));
    assert_eq!(validate_update(&old, &other).unwrap_err()[0].field, "kind");
    let a = one(&data("workspace.yaml"));
    let b = edited("workspace.yaml", "uid: 6d3c1f0e", "uid: 7d3c1f0e");
    assert_eq!(
        validate_update(&a, &b).unwrap_err()[0].field,
        "metadata.uid"
    );
}

// === Cluster ===

#[test]
fn cluster_api_server_is_an_https_url() {
    let r = edited(
        "cluster.yaml",
        "apiServerURL: https://",
        "apiServerURL: http://",
    );
    refused(&r, "spec.apiServerURL", Invalid, "absolute https URL");
    let r = edited(
        "cluster.yaml",
        "  apiServerURL: https://prod-eu.k8s.example.com:6443\n",
        "",
    );
    refused(&r, "spec.apiServerURL", Required, "");
    let r = edited("cluster.yaml", "https://prod-eu", "https://user:pw@prod-eu");
    refused(&r, "spec.apiServerURL", Invalid, "user information");
}

#[test]
fn cluster_ca_bundle_is_pem_certificates_only() {
    let r = edited(
        "cluster.yaml",
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\n    !!!!",
    );
    refused(&r, "spec.caBundle", Invalid, "PEM");
    let r = edited("cluster.yaml", "BEGIN CERTIFICATE", "BEGIN PRIVATE KEY");
    refused(&r, "spec.caBundle", Forbidden, "private key");
    let text = data("cluster.yaml");
    let start = text.find("  caBundle").unwrap();
    let end = text.find("  credentialsRef").unwrap();
    let no_pem = format!("{}  caBundle: just text\n{}", &text[..start], &text[end..]);
    refused(
        &one(&no_pem),
        "spec.caBundle",
        Invalid,
        "at least one PEM certificate",
    );
}

#[test]
fn cluster_credentials_are_a_reference() {
    let r = edited("cluster.yaml", "name: prod-eu-credentials", "name: ''");
    refused(&r, "spec.credentialsRef.name", Required, "");
}

// === Group ===

#[test]
fn group_entries_are_unique_and_domains_valid() {
    let r = edited("group.yaml", "users: [alice]", "users: [alice, alice]");
    refused(&r, "spec.users[1]", Duplicate, "");
    let r = edited("group.yaml", "groups: [ldap-sre", "groups: [''");
    refused(&r, "spec.groups[0]", Required, "");
    let r = edited(
        "group.yaml",
        "emailDomains: [sre.example.com]",
        "emailDomains: [\"@example.com\"]",
    );
    refused(&r, "spec.emailDomains[0]", Invalid, "domain name");
    let r = edited(
        "group.yaml",
        "emailDomains: [sre.example.com]",
        "emailDomains: [a.com, A.com]",
    );
    refused(&r, "spec.emailDomains[1]", Duplicate, "");
}

// === roles and bindings ===

fn role(kind: &str, namespace: &str, rules: &str) -> Resource {
    one(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: r, namespace: {namespace}}}\nrules:\n{rules}"
    ))
}

#[test]
fn rules_need_verbs() {
    let r = role(
        "KommanderRole",
        "ws",
        "- apiGroups: ['']\n  resources: [pods]\n",
    );
    refused(&r, "rules[0].verbs", Required, "at least one");
}

#[test]
fn resource_rules_need_api_groups_and_resources() {
    let r = role(
        "ClusterScopeRole",
        "ws",
        "- verbs: [get]\n  resources: [pods]\n",
    );
    refused(&r, "rules[0].apiGroups", Required, "api group");
    let r = role(
        "ClusterScopeRole",
        "ws",
        "- verbs: [get]\n  apiGroups: ['']\n",
    );
    refused(&r, "rules[0].resources", Required, "resource");
}

#[test]
fn non_resource_urls_exclude_resources() {
    let r = role(
        "KommanderRole",
        "portcullis-global",
        "- verbs: [get]\n  resources: [pods]\n  nonResourceURLs: [/healthz]\n",
    );
    refused(&r, "rules[0].nonResourceURLs", Forbidden, "both");
}

#[test]
fn non_resource_urls_only_where_the_role_is_cluster_wide() {
    let rules = "- verbs: [get]\n  nonResourceURLs: [/healthz]\n";
    refused(
        &role("KommanderRole", "ws-payments", rules),
        "rules[0].nonResourceURLs",
        Forbidden,
        "Role",
    );
    assert_eq!(
        validate(&role("KommanderRole", "portcullis-global", rules)),
        Ok(())
    );
    assert_eq!(
        validate(&role("ClusterScopeRole", "ws-payments", rules)),
        Ok(())
    );
}

#[test]
fn non_resource_urls_are_paths_with_a_trailing_star_only() {
    let r = role(
        "ClusterScopeRole",
        "ws",
        "- verbs: [get]\n  nonResourceURLs: [healthz, /a/*/b, /ok/*]\n",
    );
    refused(&r, "rules[0].nonResourceURLs[0]", Invalid, "'/'");
    refused(
        &r,
        "rules[0].nonResourceURLs[1]",
        Invalid,
        "only at the end",
    );
    assert_eq!(errors(&r).len(), 2);
}

#[test]
fn binding_role_ref_matches_the_binding_kind() {
    let text = data("roles.yaml").replace(
        "  kind: KommanderRole\n  name: portcullis-admin",
        "  kind: ClusterScopeRole\n  name: portcullis-admin",
    );
    let r = decode_yaml_documents("roles.yaml", &text)
        .unwrap()
        .remove(1);
    assert!(matches!(r, Resource::KommanderRoleBinding(_)));
    refused(&r, "roleRef.kind", NotSupported, "KommanderRole");
}

#[test]
fn binding_role_ref_is_complete() {
    let text = data("roles.yaml").replace(
        "  apiGroup: portcullis.dev\n  kind: KommanderRole\n  name: portcullis-admin",
        "  apiGroup: rbac.authorization.k8s.io\n  kind: KommanderRole",
    );
    let r = decode_yaml_documents("roles.yaml", &text)
        .unwrap()
        .remove(1);
    refused(&r, "roleRef.apiGroup", NotSupported, "portcullis.dev");
    refused(&r, "roleRef.name", Required, "");
}

#[test]
fn binding_subjects_are_valid() {
    let text = data("roles.yaml").replace(
        "    name: alice@example.com",
        "    name: alice@example.com\n    apiGroup: portcullis.dev",
    );
    let r = decode_yaml_documents("roles.yaml", &text)
        .unwrap()
        .remove(1);
    refused(
        &r,
        "subjects[1].apiGroup",
        NotSupported,
        "rbac.authorization.k8s.io",
    );
    let text = data("roles.yaml").replace("    name: sre\n", "    name: SRE Team\n");
    let r = decode_yaml_documents("roles.yaml", &text)
        .unwrap()
        .remove(1);
    refused(&r, "subjects[0].name", Invalid, "DNS-1123");
    let text = data("roles.yaml").replace(
        "  - kind: User\n    name: alice@example.com\n",
        "  - kind: Group\n    name: sre\n    apiGroup: portcullis.dev\n",
    );
    let r = decode_yaml_documents("roles.yaml", &text)
        .unwrap()
        .remove(1);
    refused(&r, "subjects[1]", Duplicate, "");
}

#[test]
fn binding_role_ref_is_immutable() {
    let rs = decode_yaml_documents("roles.yaml", &data("roles.yaml")).unwrap();
    let text = data("roles.yaml").replace("  name: portcullis-admin\n---", "  name: other\n---");
    let changed = decode_yaml_documents("roles.yaml", &text).unwrap();
    let errs = validate_update(&rs[1], &changed[1]).unwrap_err();
    assert_eq!(errs[0].field, "roleRef");
    assert!(errs[0].message.contains("cannot change roleRef"));
}

// === Client ===

fn client(public: bool, uris: &[&str]) -> Resource {
    let secret = if public {
        String::new()
    } else {
        format!("  secretHash: sha256:{}\n", "a".repeat(64))
    };
    one(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Client\nmetadata: {{name: c}}\nspec:\n  public: {public}\n  redirectURIs: {}\n{secret}",
        serde_json::to_string(uris).unwrap()
    ))
}

#[test]
fn confidential_redirect_uris_are_https() {
    refused(
        &client(false, &["https://a.example/cb", "http://a.example/cb"]),
        "spec.redirectURIs[1]",
        Invalid,
        "must be an absolute https URL",
    );
    refused(
        &client(false, &["http://127.0.0.1/cb"]),
        "spec.redirectURIs[0]",
        Invalid,
        "only for public clients",
    );
    refused(
        &client(false, &["com.example.app:/cb"]),
        "spec.redirectURIs[0]",
        Invalid,
        "only for public clients",
    );
    refused(
        &client(false, &["/relative"]),
        "spec.redirectURIs[0]",
        Invalid,
        "absolute https URL",
    );
}

#[test]
fn public_clients_may_use_loopback_and_private_use_schemes() {
    let ok = [
        "http://127.0.0.1",
        "http://127.0.0.1:49152/cb",
        "http://[::1]:8000",
        "http://localhost:18000/x",
        "com.example.app:/oauth2redirect",
        "https://a.example/cb?x=1",
    ];
    assert_eq!(validate(&client(true, &ok)), Ok(()));
    for bad in [
        "http://example.com/cb",
        "http://127.0.0.2/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "myapp:/cb",
    ] {
        refused(
            &client(true, &[bad]),
            "spec.redirectURIs[0]",
            Invalid,
            "RFC 8252",
        );
    }
}

#[test]
fn redirect_uris_have_no_fragment_userinfo_wildcard_or_whitespace() {
    refused(
        &client(true, &["https://a.example/cb#x"]),
        "spec.redirectURIs[0]",
        Invalid,
        "fragment",
    );
    refused(
        &client(true, &["https://a.example/cb#"]),
        "spec.redirectURIs[0]",
        Invalid,
        "fragment",
    );
    refused(
        &client(true, &["https://evil@a.example/cb"]),
        "spec.redirectURIs[0]",
        Invalid,
        "user information",
    );
    refused(
        &client(true, &["https://*.example/cb"]),
        "spec.redirectURIs[0]",
        Invalid,
        "wildcards",
    );
    for ws in [
        "https://a.example/cb\t",
        "https://a.exa\nmple/cb",
        " https://a.example/cb",
        "https://a.example/c\u{b}b",
    ] {
        refused(
            &client(true, &[ws]),
            "spec.redirectURIs[0]",
            Invalid,
            "whitespace",
        );
    }
    refused(
        &client(true, &["https://a.example/", "https://a.example/"]),
        "spec.redirectURIs[1]",
        Duplicate,
        "",
    );
}

#[test]
fn post_logout_redirect_uris_follow_the_same_rules() {
    let r = edited(
        "client.yaml",
        "  grantTypes:\n    - authorization_code",
        "  postLogoutRedirectURIs: [\"http://evil.example/\"]\n  grantTypes:\n    - authorization_code",
    );
    refused(&r, "spec.postLogoutRedirectURIs[0]", Invalid, "RFC 8252");
}

#[test]
fn authorization_code_needs_a_redirect_uri() {
    refused(
        &client(true, &[]),
        "spec.redirectURIs",
        Required,
        "authorization_code",
    );
}

#[test]
fn grant_types_are_unique_and_coherent() {
    let r = edited(
        "client.yaml",
        "    - refresh_token\n",
        "    - refresh_token\n    - refresh_token\n",
    );
    refused(&r, "spec.grantTypes[2]", Duplicate, "");
    let r = edited(
        "client.yaml",
        "    - authorization_code\n    - refresh_token\n    - urn:ietf:params:oauth:grant-type:device_code",
        "    - refresh_token",
    );
    refused(&r, "spec.grantTypes", Invalid, "refresh_token needs");
    let r = edited(
        "client.yaml",
        "  grantTypes:\n    - authorization_code\n    - refresh_token\n    - urn:ietf:params:oauth:grant-type:device_code\n",
        "  grantTypes: []\n",
    );
    refused(&r, "spec.grantTypes", Required, "");
}

#[test]
fn client_secret_hash_rules() {
    let text = data("client.yaml");
    let dashboard = |from: &str, to: &str| {
        decode_yaml_documents("client.yaml", &text.replace(from, to))
            .unwrap()
            .remove(1)
    };
    let r = dashboard(
        "  secretHash: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
        "",
    );
    refused(&r, "spec.secretHash", Required, "confidential");
    let r = dashboard("secretHash: sha256:9f86", "secretHash: s3cr3t-9f86");
    refused(&r, "spec.secretHash", Invalid, "never the secret itself");
    let r = dashboard(
        "  displayName: Dashboard\n",
        "  displayName: Dashboard\n  public: true\n",
    );
    refused(
        &r,
        "spec.secretHash",
        Forbidden,
        "public client has no secret",
    );
}

#[test]
fn trusted_peers_are_client_names() {
    let text = data("client.yaml").replace(
        "trustedPeers: [kubectl]",
        "trustedPeers: [Kube CTL, kubectl, kubectl]",
    );
    let r = decode_yaml_documents("client.yaml", &text)
        .unwrap()
        .remove(1);
    refused(&r, "spec.trustedPeers[0]", Invalid, "DNS-1123");
    refused(&r, "spec.trustedPeers[2]", Duplicate, "");
}

// === User ===

#[test]
fn user_email_is_an_address() {
    let r = edited("user.yaml", "email: admin@example.com", "email: admin");
    refused(&r, "spec.email", Invalid, "e-mail address");
    let r = edited("user.yaml", "  email: admin@example.com\n", "");
    refused(&r, "spec.email", Required, "emailVerified");
}

#[test]
fn user_password_hash_is_argon2id_phc() {
    for (bad, needle) in [
        (
            "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hFAUR8SJ+4k0HzKc3HP2H8cgVEr0dsXfl2pWYKTNfE",
            "argon2id",
        ),
        (
            "$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hFAUR8SJ+4k0HzKc3HP2H8cgVEr0dsXfl2pWYKTNfE",
            "v=19",
        ),
        (
            "$argon2id$v=19$m=99999999,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hFAUR8SJ+4k0HzKc3HP2H8cgVEr0dsXfl2pWYKTNfE",
            "m must be",
        ),
        (
            "$argon2id$v=19$t=2,m=19456,p=1$c29tZXNhbHRzb21lc2FsdA$0hFAUR8SJ+4k0HzKc3HP2H8cgVEr0dsXfl2pWYKTNfE",
            "parameters",
        ),
        (
            "$argon2id$v=19$m=19456,t=2,p=1$c29t$0hFAUR8SJ+4k0HzKc3HP2H8cgVEr0dsXfl2pWYKTNfE",
            "salt",
        ),
        (
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hFAUR8SJ+4k0HzKc3HP2H8cgVEr0dsXfl2pWYKTNfE=",
            "hash",
        ),
        ("hunter2", "six"),
    ] {
        let r = edited(
            "user.yaml",
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hFAUR8SJ+4k0HzKc3HP2H8cgVEr0dsXfl2pWYKTNfE",
            bad,
        );
        refused(&r, "spec.passwordHash", Invalid, needle);
    }
}

// === Connector ===

#[test]
fn connector_type_selects_exactly_one_section() {
    let r = edited("connectors.yaml", "type: ldap", "type: oidc");
    refused(&r, "spec.oidc", Required, "oidc section");
    refused(&r, "spec.ldap", Forbidden, "only the section");
}

#[test]
fn ldap_host_bind_and_searches_are_complete() {
    let r = edited(
        "connectors.yaml",
        "host: ldap.example.com:636",
        "host: ldap.example.com",
    );
    refused(&r, "spec.ldap.host", Invalid, "host:port");
    let r = edited(
        "connectors.yaml",
        "    bindPasswordRef:\n      name: corp-ldap-bind\n      key: password\n",
        "",
    );
    refused(
        &r,
        "spec.ldap.bindPasswordRef",
        Required,
        "never the password",
    );
    let r = edited("connectors.yaml", "key: password", "key: ../password");
    refused(&r, "spec.ldap.bindPasswordRef.key", Invalid, "alphanumeric");
    // A cluster's sealed credentials are no connector's to read (they would be sent as the
    // bind password to the connector's server).
    let r = edited(
        "connectors.yaml",
        "name: corp-ldap-bind",
        "name: cluster-credentials.ws-a.edge-1",
    );
    refused(
        &r,
        "spec.ldap.bindPasswordRef.name",
        Forbidden,
        "cluster attach",
    );
    let r = edited("connectors.yaml", "      usernameAttr: mail\n", "");
    refused(&r, "spec.ldap.userSearch.usernameAttr", Required, "");
    let r = edited(
        "connectors.yaml",
        "filter: (objectClass=person)",
        "filter: objectClass=person",
    );
    refused(&r, "spec.ldap.userSearch.filter", Invalid, "parentheses");
    let r = edited(
        "connectors.yaml",
        "      userMatchers:\n        - userAttr: DN\n          groupAttr: member\n",
        "",
    );
    refused(&r, "spec.ldap.groupSearch.userMatchers", Required, "");
}

#[test]
fn oidc_connector_issuer_and_client() {
    let text = data("connectors.yaml");
    let gitlab = |from: &str, to: &str| {
        decode_yaml_documents("connectors.yaml", &text.replace(from, to))
            .unwrap()
            .remove(1)
    };
    refused(
        &gitlab("issuerURL: https://", "issuerURL: http://"),
        "spec.oidc.issuerURL",
        Invalid,
        "https",
    );
    refused(
        &gitlab("    clientID: portcullis\n", ""),
        "spec.oidc.clientID",
        Required,
        "",
    );
    refused(
        &gitlab("scopes: [email,", "scopes: [\"a b\","),
        "spec.oidc.scopes[0]",
        Invalid,
        "scope token",
    );
    refused(
        &gitlab(
            "allowedEmailDomains: [example.com]",
            "allowedEmailDomains: [\"@x\"]",
        ),
        "spec.oidc.allowedEmailDomains[0]",
        Invalid,
        "DNS domain",
    );
    refused(
        &gitlab(
            "allowedGroups: [platform, sre]",
            "allowedGroups: [sre, sre]",
        ),
        "spec.oidc.allowedGroups[1]",
        Duplicate,
        "",
    );
}

#[test]
fn group_mappings_are_complete_and_unique() {
    let r = edited(
        "connectors.yaml",
        "      to: ops\n",
        "      to: ops\n    - from: cn=ops,ou=groups,dc=example,dc=com\n      to: ''\n",
    );
    refused(&r, "spec.groupMappings[1]", Duplicate, "");
    refused(&r, "spec.groupMappings[1].to", Required, "");
}

#[test]
fn connector_type_is_immutable() {
    let text = data("connectors.yaml");
    let old = one(text.split("---").next().unwrap());
    let new = edited("connectors.yaml", "type: ldap", "type: oidc");
    assert!(
        validate_update(&old, &new)
            .unwrap_err()
            .iter()
            .any(|e| e.field == "spec.type")
    );
}

#[test]
fn status_conditions_have_unique_types() {
    let r = edited(
        "workspace.yaml",
        "      observedGeneration: 1\n",
        "      observedGeneration: 1\n    - type: Ready\n      status: \"False\"\n    - type: ''\n      status: Unknown\n",
    );
    refused(&r, "status.conditions[1]", Duplicate, "");
    refused(&r, "status.conditions[2].type", Required, "");
}

#[test]
fn status_namespace_ref_is_a_namespace_name() {
    let r = edited(
        "workspace.yaml",
        "    name: ws-payments\n  conditions",
        "    name: WS\n  conditions",
    );
    refused(&r, "status.namespaceRef.name", Invalid, "DNS-1123 label");
}

#[test]
fn errors_display_as_path_and_message() {
    let r = client(
        false,
        &[
            "https://a.example/cb",
            "https://b.example/",
            "http://c.example/",
        ],
    );
    let errs = errors(&r);
    assert_eq!(
        errs[0].to_string(),
        "spec.redirectURIs[2]: must be an absolute https URL"
    );
    assert_eq!(errs[0].reason.cause_type(), "FieldValueInvalid");
}
