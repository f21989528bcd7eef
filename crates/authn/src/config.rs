//! Kubernetes' structured authentication configuration (`AuthenticationConfiguration` of
//! `apiserver.config.k8s.io/v1beta1` and `v1`), read strictly and validated as kube-apiserver
//! validates it, and the legacy `--oidc-*` flags converted to the same structure.
//!
//! Unknown and repeated fields are refused with their path. Validation follows k8s.io/apiserver
//! `pkg/apis/apiserver/validation`: issuer URLs are `https` without query, fragment or user
//! info and unique; audiences are non-empty and unique, and several need
//! `audienceMatchPolicy: MatchAny`; a `claim` and an `expression` exclude each other; `prefix`
//! is required with a `claim` (it may be empty) and forbidden with an `expression`; extra keys
//! are lower-case domain-prefixed paths outside `kubernetes.io` and `k8s.io`; every CEL
//! expression compiles and references only `claims` (or `user` in `userValidationRules`); a
//! username expression using `claims.email` must also use `claims.email_verified` somewhere.

use serde::Deserialize;
use serde_json::Value;

use crate::Error;
use crate::cel_eval::Expression;

/// The two API versions read.
pub const API_VERSIONS: [&str; 2] = [
    "apiserver.config.k8s.io/v1beta1",
    "apiserver.config.k8s.io/v1",
];
/// Largest configuration file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Most JWT authenticators in one file.
pub const MAX_JWT_AUTHENTICATORS: usize = 64;
/// Most audiences of one issuer (each is a verification attempt).
pub const MAX_AUDIENCES: usize = 16;

/// The file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationConfiguration {
    /// `apiserver.config.k8s.io/v1beta1` or `apiserver.config.k8s.io/v1`.
    pub api_version: String,
    /// `AuthenticationConfiguration`.
    pub kind: String,
    /// JWT authenticators, one per issuer.
    #[serde(default)]
    pub jwt: Vec<JwtAuthenticatorConfig>,
    /// Anonymous authentication (kube-apiserver 1.31+).
    #[serde(default)]
    pub anonymous: Option<AnonymousConfig>,
}

/// `anonymous`: whether requests without credentials are anonymous, and on which paths.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousConfig {
    /// Anonymous requests allowed at all.
    pub enabled: bool,
    /// When set, only on these paths.
    #[serde(default)]
    pub conditions: Vec<AnonymousCondition>,
}

/// One path anonymous requests may reach.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousCondition {
    /// The path, e.g. `/healthz`.
    pub path: String,
}

/// `jwt[]`: one issuer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuthenticatorConfig {
    /// Who issues the tokens and for whom.
    pub issuer: Issuer,
    /// Rules over the claims; every one must hold.
    #[serde(default)]
    pub claim_validation_rules: Vec<ClaimValidationRule>,
    /// How claims become a user.
    pub claim_mappings: ClaimMappings,
    /// Rules over the mapped user; every one must hold.
    #[serde(default)]
    pub user_validation_rules: Vec<UserValidationRule>,
}

/// `jwt[].issuer`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Issuer {
    /// The issuer URL; tokens' `iss` must equal it.
    pub url: String,
    /// Where the discovery document is, when not under `url`.
    #[serde(default, rename = "discoveryURL")]
    pub discovery_url: Option<String>,
    /// PEM CA bundle to verify the issuer's TLS certificate with.
    #[serde(default)]
    pub certificate_authority: Option<String>,
    /// Accepted audiences; a token must name at least one.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// `MatchAny` (required with several audiences).
    #[serde(default)]
    pub audience_match_policy: Option<String>,
    /// `controlplane` or `cluster` (v1, 1.34+): which egress to use; recorded only.
    #[serde(default)]
    pub egress_selector_type: Option<String>,
}

/// `jwt[].claimValidationRules[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimValidationRule {
    /// A claim that must be a string equal to `requiredValue`.
    #[serde(default)]
    pub claim: Option<String>,
    /// The value the claim must have.
    #[serde(default)]
    pub required_value: Option<String>,
    /// A CEL expression over `claims` that must be true.
    #[serde(default)]
    pub expression: Option<String>,
    /// The message when the expression is false.
    #[serde(default)]
    pub message: Option<String>,
}

/// `jwt[].claimMappings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMappings {
    /// The user name (required).
    pub username: PrefixedClaimOrExpression,
    /// The groups.
    #[serde(default)]
    pub groups: Option<PrefixedClaimOrExpression>,
    /// The uid.
    #[serde(default)]
    pub uid: Option<ClaimOrExpression>,
    /// Extra attributes.
    #[serde(default)]
    pub extra: Vec<ExtraMapping>,
}

/// A claim with a prefix, or an expression.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixedClaimOrExpression {
    /// The claim.
    #[serde(default)]
    pub claim: Option<String>,
    /// Prefix of the claim's value; required with `claim` (`""` for none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A CEL expression over `claims`.
    #[serde(default)]
    pub expression: Option<String>,
}

/// A claim or an expression.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimOrExpression {
    /// The claim.
    #[serde(default)]
    pub claim: Option<String>,
    /// A CEL expression over `claims`.
    #[serde(default)]
    pub expression: Option<String>,
}

/// `claimMappings.extra[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtraMapping {
    /// The extra key (a lower-case domain-prefixed path, `example.org/team`).
    pub key: String,
    /// A CEL expression over `claims` giving a string or a list of strings.
    pub value_expression: String,
}

/// `jwt[].userValidationRules[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserValidationRule {
    /// A CEL expression over `user` that must be true.
    pub expression: String,
    /// The message when it is false.
    #[serde(default)]
    pub message: Option<String>,
}

// === impl AuthenticationConfiguration ===

impl AuthenticationConfiguration {
    /// Reads a configuration file's text (YAML or JSON) strictly and validates it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with the path of the first unknown, repeated, mistyped or invalid
    /// field and what to change.
    pub fn from_yaml(text: &str) -> Result<AuthenticationConfiguration, Error> {
        let config = AuthenticationConfiguration::parse(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the file without validating it (see [`AuthenticationConfiguration::validate`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for YAML syntax, unknown, repeated or mistyped fields.
    pub fn parse(text: &str) -> Result<AuthenticationConfiguration, Error> {
        if text.len() > MAX_FILE_BYTES {
            return Err(Error::config(
                "",
                format!(
                    "the file is {} bytes, more than the {MAX_FILE_BYTES} accepted",
                    text.len()
                ),
            ));
        }
        let value: Value = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| Error::config("", format!("not valid YAML: {e}")))?;
        if !value.is_object() {
            return Err(Error::config(
                "",
                "the file must be a mapping with apiVersion, kind and jwt",
            ));
        }
        let config: AuthenticationConfiguration =
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                Error::config(
                    if path == "." { String::new() } else { path },
                    e.inner().to_string(),
                )
            })?;
        if !API_VERSIONS.contains(&config.api_version.as_str()) {
            return Err(Error::config(
                "apiVersion",
                format!(
                    "unsupported {:?}; use {} or {}",
                    config.api_version, API_VERSIONS[0], API_VERSIONS[1]
                ),
            ));
        }
        if config.kind != "AuthenticationConfiguration" {
            return Err(Error::config(
                "kind",
                format!("{:?} is not AuthenticationConfiguration", config.kind),
            ));
        }
        Ok(config)
    }

    /// Validates as kube-apiserver does, compiling every CEL expression.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.jwt.len() > MAX_JWT_AUTHENTICATORS {
            return Err(Error::config(
                "jwt",
                format!("more than {MAX_JWT_AUTHENTICATORS} authenticators"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut seen_discovery = std::collections::BTreeSet::new();
        for (i, jwt) in self.jwt.iter().enumerate() {
            let path = format!("jwt[{i}]");
            if !seen.insert(jwt.issuer.url.as_str()) {
                return Err(Error::config(
                    format!("{path}.issuer.url"),
                    format!("duplicate issuer {:?}", jwt.issuer.url),
                ));
            }
            if let Some(d) = non_empty(&jwt.issuer.discovery_url)
                && !seen_discovery.insert(d)
            {
                return Err(Error::config(
                    format!("{path}.issuer.discoveryURL"),
                    format!("duplicate discoveryURL {d:?}"),
                ));
            }
            jwt.compile(&path)?;
        }
        if let Some(anonymous) = &self.anonymous {
            if !anonymous.enabled && !anonymous.conditions.is_empty() {
                return Err(Error::config(
                    "anonymous.conditions",
                    "enabled should be set to true when conditions are defined",
                ));
            }
            for (i, c) in anonymous.conditions.iter().enumerate() {
                let path = format!("anonymous.conditions[{i}].path");
                if c.path.is_empty() {
                    return Err(Error::config(path, "required"));
                }
                if anonymous
                    .conditions
                    .get(..i)
                    .is_some_and(|before| before.iter().any(|b| b.path == c.path))
                {
                    return Err(Error::config(path, format!("duplicate value {:?}", c.path)));
                }
            }
        }
        Ok(())
    }

    /// Whether a request without credentials to `path` is the anonymous user, as
    /// kube-apiserver reads `anonymous`: absent means enabled (its `--anonymous-auth`
    /// default); enabled with conditions means only on those exact paths.
    pub fn allows_anonymous(&self, path: &str) -> bool {
        match &self.anonymous {
            None => true,
            Some(a) if !a.enabled => false,
            Some(a) if a.conditions.is_empty() => true,
            Some(a) => a.conditions.iter().any(|c| c.path == path),
        }
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 64;
    budget.max_aliases = 0;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // As Kubernetes' strict decoding: a repeated key is an error, not "the last one wins".
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    options.reject_unsupported_tags = true;
    options
}

// === compiled form ===

/// A mapping compiled: a claim with its prefix, or an expression.
#[derive(Debug, Clone)]
pub(crate) enum Mapping {
    Claim { claim: String, prefix: String },
    Expression(Expression),
}

/// A claim validation rule compiled.
#[derive(Debug, Clone)]
pub(crate) enum ClaimRule {
    Required {
        claim: String,
        value: String,
    },
    Expression {
        expression: Expression,
        message: String,
    },
}

/// One issuer, validated, with its expressions compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledJwt {
    pub(crate) issuer: Issuer,
    pub(crate) username: Mapping,
    pub(crate) groups: Option<Mapping>,
    pub(crate) uid: Option<Mapping>,
    pub(crate) extra: Vec<(String, Expression)>,
    pub(crate) claim_rules: Vec<ClaimRule>,
    pub(crate) user_rules: Vec<(Expression, String)>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl JwtAuthenticatorConfig {
    /// Validates and compiles one authenticator; `path` is its place in the file.
    pub(crate) fn compile(&self, path: &str) -> Result<CompiledJwt, Error> {
        validate_issuer(&self.issuer, &format!("{path}.issuer"))?;
        let mappings = &self.claim_mappings;
        let mpath = format!("{path}.claimMappings");
        let username = prefixed(&mappings.username, &format!("{mpath}.username"), true)?
            .ok_or_else(|| {
                Error::config(
                    format!("{mpath}.username"),
                    "claim or expression is required",
                )
            })?;
        let groups = match &mappings.groups {
            Some(g) => prefixed(g, &format!("{mpath}.groups"), false)?,
            None => None,
        };
        let uid = match &mappings.uid {
            Some(u) => claim_or_expression(u, &format!("{mpath}.uid"))?,
            None => None,
        };
        let mut extra = Vec::new();
        for (i, e) in mappings.extra.iter().enumerate() {
            let epath = format!("{mpath}.extra[{i}]");
            validate_extra_key(&e.key, &format!("{epath}.key"))?;
            if extra.iter().any(|(k, _)| k == &e.key) {
                return Err(Error::config(
                    format!("{epath}.key"),
                    format!("duplicate key {:?}", e.key),
                ));
            }
            if e.value_expression.is_empty() {
                return Err(Error::config(
                    format!("{epath}.valueExpression"),
                    "required",
                ));
            }
            let expr = Expression::compile(
                &e.value_expression,
                "claims",
                &format!("{epath}.valueExpression"),
            )?;
            extra.push((e.key.clone(), expr));
        }
        let mut claim_rules = Vec::new();
        for (i, r) in self.claim_validation_rules.iter().enumerate() {
            let rpath = format!("{path}.claimValidationRules[{i}]");
            claim_rules.push(match (non_empty(&r.claim), non_empty(&r.expression)) {
                (Some(_), Some(_)) => {
                    return Err(Error::config(
                        &rpath,
                        "claim and expression can't both be set",
                    ));
                }
                (None, None) => {
                    return Err(Error::config(&rpath, "claim or expression is required"));
                }
                (Some(claim), None) => {
                    if r.message.is_some() {
                        return Err(Error::config(
                            format!("{rpath}.message"),
                            "may not be specified when claim is set",
                        ));
                    }
                    if claim_rules.iter().any(
                        |c| matches!(c, ClaimRule::Required { claim: other, .. } if other == claim),
                    ) {
                        return Err(Error::config(
                            format!("{rpath}.claim"),
                            format!("duplicate claim {claim:?}"),
                        ));
                    }
                    ClaimRule::Required {
                        claim: claim.to_owned(),
                        value: r.required_value.clone().unwrap_or_default(),
                    }
                }
                (None, Some(expression)) => {
                    if self.claim_validation_rules.get(..i).is_some_and(|before| {
                        before
                            .iter()
                            .any(|b| b.expression.as_deref() == Some(expression))
                    }) {
                        return Err(Error::config(
                            format!("{rpath}.expression"),
                            format!("duplicate expression {expression:?}"),
                        ));
                    }
                    if r.required_value.is_some() {
                        return Err(Error::config(
                            format!("{rpath}.requiredValue"),
                            "may not be specified when expression is set",
                        ));
                    }
                    ClaimRule::Expression {
                        expression: Expression::compile(
                            expression,
                            "claims",
                            &format!("{rpath}.expression"),
                        )?,
                        message: r.message.clone().unwrap_or_default(),
                    }
                }
            });
        }
        let mut user_rules = Vec::new();
        for (i, r) in self.user_validation_rules.iter().enumerate() {
            let rpath = format!("{path}.userValidationRules[{i}].expression");
            if r.expression.is_empty() {
                return Err(Error::config(rpath, "required"));
            }
            if self
                .user_validation_rules
                .get(..i)
                .is_some_and(|before| before.iter().any(|b| b.expression == r.expression))
            {
                return Err(Error::config(
                    rpath,
                    format!("duplicate expression {:?}", r.expression),
                ));
            }
            user_rules.push((
                Expression::compile(&r.expression, "user", &rpath)?,
                r.message.clone().unwrap_or_default(),
            ));
        }
        // As kube-apiserver: a username taken from claims.email by an expression must be
        // paired with a check of claims.email_verified somewhere in the authenticator.
        if let Mapping::Expression(e) = &username
            && uses_claim(e.source(), "email")
        {
            let checked = uses_claim(e.source(), "email_verified")
                || extra
                    .iter()
                    .any(|(_, x)| uses_claim(x.source(), "email_verified"))
                || claim_rules.iter().any(|r| {
                    matches!(r, ClaimRule::Expression { expression, .. }
                        if uses_claim(expression.source(), "email_verified"))
                });
            if !checked {
                return Err(Error::config(
                    format!("{mpath}.username.expression"),
                    "claims.email_verified must be used in claimMappings.username.expression or \
                     claimMappings.extra[*].valueExpression or claimValidationRules[*].expression \
                     when claims.email is used in claimMappings.username.expression",
                ));
            }
        }
        Ok(CompiledJwt {
            issuer: self.issuer.clone(),
            username,
            groups,
            uid,
            extra,
            claim_rules,
            user_rules,
        })
    }
}

/// Whether `source` reads `claims.NAME` or `claims.?NAME` (the whole identifier, not a longer
/// one), as kube-apiserver's check of the expression's select expressions.
fn uses_claim(source: &str, name: &str) -> bool {
    selects(source, &format!("claims.{name}")) || selects(source, &format!("claims.?{name}"))
}

fn selects(source: &str, needle: &str) -> bool {
    source.match_indices(needle).any(|(at, _)| {
        let before_ok = source
            .get(..at)
            .and_then(|b| b.chars().next_back())
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        let after_ok = source
            .get(at + needle.len()..)
            .and_then(|a| a.chars().next())
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        before_ok && after_ok
    })
}

fn check_url(url: &str, path: &str) -> Result<url::Url, Error> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::config(path, format!("{url:?} is not a URL: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(Error::config(
            path,
            format!("{url:?} must use the https scheme"),
        ));
    }
    if parsed.query().is_some() {
        return Err(Error::config(
            path,
            format!("{url:?} must not have a query"),
        ));
    }
    if parsed.fragment().is_some() {
        return Err(Error::config(
            path,
            format!("{url:?} must not have a fragment"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::config(
            path,
            format!("{url:?} must not have user info"),
        ));
    }
    Ok(parsed)
}

fn validate_issuer(issuer: &Issuer, path: &str) -> Result<(), Error> {
    if issuer.url.is_empty() {
        return Err(Error::config(format!("{path}.url"), "required"));
    }
    check_url(&issuer.url, &format!("{path}.url"))?;
    if let Some(discovery) = non_empty(&issuer.discovery_url) {
        check_url(discovery, &format!("{path}.discoveryURL"))?;
        if discovery.trim_end_matches('/') == issuer.url.trim_end_matches('/') {
            return Err(Error::config(
                format!("{path}.discoveryURL"),
                "discoveryURL must be different from url",
            ));
        }
    }
    let apath = format!("{path}.audiences");
    if issuer.audiences.is_empty() {
        return Err(Error::config(&apath, "at least one audience is required"));
    }
    if issuer.audiences.len() > MAX_AUDIENCES {
        return Err(Error::config(
            &apath,
            format!("more than {MAX_AUDIENCES} audiences"),
        ));
    }
    for (i, a) in issuer.audiences.iter().enumerate() {
        if a.is_empty() {
            return Err(Error::config(
                format!("{apath}[{i}]"),
                "audience can't be empty",
            ));
        }
        if issuer
            .audiences
            .get(..i)
            .is_some_and(|before| before.contains(a))
        {
            return Err(Error::config(
                format!("{apath}[{i}]"),
                format!("duplicate value {a:?}"),
            ));
        }
    }
    let ppath = format!("{path}.audienceMatchPolicy");
    match issuer.audience_match_policy.as_deref() {
        None | Some("") if issuer.audiences.len() > 1 => {
            return Err(Error::config(
                ppath,
                "audienceMatchPolicy must be MatchAny for multiple audiences",
            ));
        }
        None | Some("" | "MatchAny") => {}
        Some(other) => {
            return Err(Error::config(
                ppath,
                format!("unsupported value {other:?}: supported values: \"MatchAny\""),
            ));
        }
    }
    if let Some(ca) = non_empty(&issuer.certificate_authority) {
        use rustls_pki_types::{CertificateDer, pem::PemObject as _};
        let certs = CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::config(
                    format!("{path}.certificateAuthority"),
                    format!("not PEM: {e}"),
                )
            })?;
        if certs.is_empty() {
            return Err(Error::config(
                format!("{path}.certificateAuthority"),
                "holds no PEM certificate",
            ));
        }
    }
    match issuer.egress_selector_type.as_deref() {
        None | Some("" | "controlplane" | "cluster") => Ok(()),
        Some(other) => Err(Error::config(
            format!("{path}.egressSelectorType"),
            format!("unsupported value {other:?}: supported values: \"cluster\", \"controlplane\""),
        )),
    }
}

fn prefixed(
    m: &PrefixedClaimOrExpression,
    path: &str,
    required: bool,
) -> Result<Option<Mapping>, Error> {
    match (non_empty(&m.claim), non_empty(&m.expression)) {
        (Some(_), Some(_)) => Err(Error::config(
            path,
            "claim and expression can't both be set",
        )),
        (None, None) if required => Err(Error::config(path, "claim or expression is required")),
        (None, None) => Ok(None),
        (Some(claim), None) => {
            let prefix = m.prefix.clone().ok_or_else(|| {
                Error::config(
                    format!("{path}.prefix"),
                    "prefix is required when claim is set. It can be set to an empty string to disable prefixing",
                )
            })?;
            if prefix.starts_with("system:") {
                return Err(Error::config(
                    format!("{path}.prefix"),
                    "a prefix may not start with \"system:\": claims cannot name system users or groups",
                ));
            }
            Ok(Some(Mapping::Claim {
                claim: claim.to_owned(),
                prefix,
            }))
        }
        (None, Some(expression)) => {
            if m.prefix.is_some() {
                return Err(Error::config(
                    format!("{path}.prefix"),
                    "may not be specified when expression is set",
                ));
            }
            Ok(Some(Mapping::Expression(Expression::compile(
                expression,
                "claims",
                &format!("{path}.expression"),
            )?)))
        }
    }
}

fn claim_or_expression(m: &ClaimOrExpression, path: &str) -> Result<Option<Mapping>, Error> {
    match (non_empty(&m.claim), non_empty(&m.expression)) {
        (Some(_), Some(_)) => Err(Error::config(
            path,
            "claim and expression can't both be set",
        )),
        (None, None) => Ok(None),
        (Some(claim), None) => Ok(Some(Mapping::Claim {
            claim: claim.to_owned(),
            prefix: String::new(),
        })),
        (None, Some(expression)) => Ok(Some(Mapping::Expression(Expression::compile(
            expression,
            "claims",
            &format!("{path}.expression"),
        )?))),
    }
}

/// Extra keys, as kube-apiserver: a domain-prefixed path, lower case, outside the reserved
/// `kubernetes.io` and `k8s.io` domains.
fn validate_extra_key(key: &str, path: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::config(path, "required"));
    }
    let Some((domain, rest)) = key.split_once('/') else {
        return Err(Error::config(
            path,
            format!("{key:?} must be a domain-prefixed path (such as \"acme.io/foo\")"),
        ));
    };
    if domain.is_empty() || rest.is_empty() || !domain.contains('.') {
        return Err(Error::config(
            path,
            format!("{key:?} must be a domain-prefixed path (such as \"acme.io/foo\")"),
        ));
    }
    if key != key.to_lowercase() {
        return Err(Error::config(path, format!("{key:?} must be lowercase")));
    }
    for reserved in ["kubernetes.io", "k8s.io"] {
        if domain == reserved || domain.ends_with(&format!(".{reserved}")) {
            return Err(Error::config(
                path,
                "k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use",
            ));
        }
    }
    Ok(())
}

// === legacy flags ===

/// The legacy `--oidc-*` flags of kube-apiserver, converted to one `jwt[]` entry as
/// kube-apiserver converts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyOidcFlags {
    /// `--oidc-issuer-url`.
    pub issuer_url: String,
    /// `--oidc-client-id`: the one audience.
    pub client_id: String,
    /// `--oidc-username-claim` (default `sub`).
    pub username_claim: Option<String>,
    /// `--oidc-username-prefix`: `-` for none; unset means the issuer URL and `#` unless the
    /// claim is `email`.
    pub username_prefix: Option<String>,
    /// `--oidc-groups-claim`.
    pub groups_claim: Option<String>,
    /// `--oidc-groups-prefix`.
    pub groups_prefix: Option<String>,
    /// `--oidc-required-claim` key=value pairs.
    pub required_claims: Vec<(String, String)>,
    /// PEM of `--oidc-ca-file` (read by [`LegacyOidcFlags::from_args`]).
    pub ca_pem: Option<String>,
}

fn read_ca_file(path: &str) -> Result<String, Error> {
    let flag = "--oidc-ca-file";
    let len = std::fs::metadata(path)
        .map_err(|e| Error::config(flag, format!("{path}: {e}")))?
        .len();
    if len > MAX_FILE_BYTES as u64 {
        return Err(Error::config(
            flag,
            format!("{path} is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| Error::config(flag, format!("{path}: {e}")))
}

impl LegacyOidcFlags {
    /// Reads `--oidc-*` flags (`--flag=value` or `--flag value`), reading the file of
    /// `--oidc-ca-file`; other arguments are ignored.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unknown `--oidc-` flag, a missing value or a malformed
    /// `--oidc-required-claim`.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<LegacyOidcFlags, Error> {
        let mut flags = LegacyOidcFlags::default();
        let mut iter = args.iter().map(AsRef::as_ref);
        while let Some(arg) = iter.next() {
            let Some(flag) = arg.strip_prefix("--oidc-") else {
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, v.to_owned()),
                None => (
                    flag,
                    iter.next()
                        .ok_or_else(|| Error::config(format!("--oidc-{flag}"), "needs a value"))?
                        .to_owned(),
                ),
            };
            match name {
                "issuer-url" => flags.issuer_url = value,
                "client-id" => flags.client_id = value,
                "username-claim" => flags.username_claim = Some(value),
                "username-prefix" => flags.username_prefix = Some(value),
                "groups-claim" => flags.groups_claim = Some(value),
                "groups-prefix" => flags.groups_prefix = Some(value),
                "ca-file" => flags.ca_pem = Some(read_ca_file(&value)?),
                // A map flag: `k=v` pairs, comma-separated, repeatable.
                "required-claim" => {
                    for pair in value.split(',').filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').ok_or_else(|| {
                            Error::config(
                                "--oidc-required-claim",
                                format!("{pair:?} is not key=value"),
                            )
                        })?;
                        flags.required_claims.push((k.to_owned(), v.to_owned()));
                    }
                }
                other => {
                    return Err(Error::config(
                        format!("--oidc-{other}"),
                        "unknown flag; the flags read are --oidc-issuer-url, --oidc-client-id, \
                         --oidc-username-claim, --oidc-username-prefix, --oidc-groups-claim, \
                         --oidc-groups-prefix, --oidc-required-claim and --oidc-ca-file",
                    ));
                }
            }
        }
        Ok(flags)
    }

    /// The equivalent structured configuration, validated.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] as [`AuthenticationConfiguration::validate`], with `jwt[0]` paths.
    pub fn to_configuration(&self) -> Result<AuthenticationConfiguration, Error> {
        let username_claim = self.username_claim.clone().unwrap_or_else(|| "sub".into());
        // kube-apiserver's legacy behaviour: without a prefix every claim but email is
        // prefixed with the issuer URL and '#'; "-" disables prefixing.
        let username_prefix = match self.username_prefix.as_deref() {
            Some("-") => String::new(),
            None | Some("") if username_claim != "email" => format!("{}#", self.issuer_url),
            None | Some("") => String::new(),
            Some(p) => p.to_owned(),
        };
        let groups = self
            .groups_claim
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|claim| PrefixedClaimOrExpression {
                claim: Some(claim.clone()),
                prefix: Some(self.groups_prefix.clone().unwrap_or_default()),
                expression: None,
            });
        let config = AuthenticationConfiguration {
            api_version: API_VERSIONS[1].into(),
            kind: "AuthenticationConfiguration".into(),
            jwt: vec![JwtAuthenticatorConfig {
                issuer: Issuer {
                    url: self.issuer_url.clone(),
                    audiences: vec![self.client_id.clone()],
                    certificate_authority: self.ca_pem.clone(),
                    ..Issuer::default()
                },
                claim_validation_rules: self
                    .required_claims
                    .iter()
                    .map(|(k, v)| ClaimValidationRule {
                        claim: Some(k.clone()),
                        required_value: Some(v.clone()),
                        ..ClaimValidationRule::default()
                    })
                    .collect(),
                claim_mappings: ClaimMappings {
                    username: PrefixedClaimOrExpression {
                        claim: Some(username_claim),
                        prefix: Some(username_prefix),
                        expression: None,
                    },
                    groups,
                    ..ClaimMappings::default()
                },
                user_validation_rules: Vec::new(),
            }],
            anonymous: None,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_conditions_limit_paths() {
        let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n";
        let config = AuthenticationConfiguration::from_yaml(&format!(
            "{head}anonymous:\n  enabled: true\n  conditions: [{{path: /healthz}}]\n"
        ))
        .unwrap();
        assert!(config.allows_anonymous("/healthz"));
        assert!(!config.allows_anonymous("/api"));
        let off = AuthenticationConfiguration::from_yaml(&format!(
            "{head}anonymous: {{enabled: false}}\n"
        ))
        .unwrap();
        assert!(!off.allows_anonymous("/healthz"));
        assert!(
            AuthenticationConfiguration::from_yaml(head)
                .unwrap()
                .allows_anonymous("/api")
        );
        assert!(
            AuthenticationConfiguration::from_yaml(&format!(
                "{head}anonymous:\n  enabled: false\n  conditions: [{{path: /healthz}}]\n"
            ))
            .is_err()
        );
    }

    #[test]
    fn uses_claim_matches_whole_identifiers_only() {
        assert!(uses_claim("claims.email", "email"));
        assert!(uses_claim("'x:' + claims.email", "email"));
        assert!(!uses_claim("claims.email_verified", "email"));
        assert!(!uses_claim("claims.emails", "email"));
        assert!(!uses_claim("xclaims.email", "email"));
        assert!(uses_claim("claims.?email.orValue('')", "email"));
        assert!(uses_claim(
            "claims.email_verified == true",
            "email_verified"
        ));
    }

    #[test]
    fn legacy_flags_prefix_non_email_claims_with_the_issuer() {
        let flags = LegacyOidcFlags::from_args(&[
            "--oidc-issuer-url=https://idp.example",
            "--oidc-client-id",
            "kube",
            "--oidc-groups-claim=groups",
            "--oidc-required-claim=hd=example.com,tier=gold",
            "--unrelated=1",
        ])
        .unwrap();
        let config = flags.to_configuration().unwrap();
        let jwt = &config.jwt[0];
        assert_eq!(
            jwt.claim_mappings.username.prefix.as_deref(),
            Some("https://idp.example#")
        );
        assert_eq!(jwt.claim_mappings.username.claim.as_deref(), Some("sub"));
        assert_eq!(jwt.claim_validation_rules.len(), 2);
        assert_eq!(
            jwt.claim_mappings
                .groups
                .as_ref()
                .unwrap()
                .prefix
                .as_deref(),
            Some("")
        );
        let email = LegacyOidcFlags {
            username_claim: Some("email".into()),
            ..flags.clone()
        };
        let config = email.to_configuration().unwrap();
        assert_eq!(
            config.jwt[0].claim_mappings.username.prefix.as_deref(),
            Some("")
        );
        let none = LegacyOidcFlags {
            username_prefix: Some("-".into()),
            ..flags
        };
        let config = none.to_configuration().unwrap();
        assert_eq!(
            config.jwt[0].claim_mappings.username.prefix.as_deref(),
            Some("")
        );
        assert!(LegacyOidcFlags::from_args(&["--oidc-bogus=1"]).is_err());
        assert!(LegacyOidcFlags::from_args(&["--oidc-ca-file=/nonexistent/ca.pem"]).is_err());
    }
}
