//! Typed configuration of the management plane. Sources, later ones winning: built-in
//! defaults, the config file (`--config`, YAML), `PORTCULLIS_*` environment variables and flags
//! (the last two through clap in the `portcullis` binary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default listen address and issuer port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Directory holding the store, the PKI and generated credentials.
    pub data_dir: PathBuf,
    /// Address the HTTPS listener binds.
    pub listen: SocketAddr,
    /// Public URL of the management plane (and OIDC issuer); derived from `listen` when empty.
    pub issuer: String,
    /// Extra names and addresses for the serving certificate.
    pub hosts: Vec<String>,
    /// Where state is kept.
    pub store: StoreConfig,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Deepest accepted JSON nesting in request bodies.
    pub max_json_depth: usize,
    /// Seconds that in-flight requests get to finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Audience (`aud`) that ID tokens presented to the management API must carry: the
    /// client id of the portcullis CLI and dashboard.
    pub api_audience: String,
    /// Store events kept so that watches can resume from an older resourceVersion (embedded
    /// stores; etcd keeps its own history until compaction).
    pub watch_history: u64,
    /// The OpenID provider's settings.
    pub oidc: OidcConfig,
    /// Most read-only API requests served at once (kube-apiserver's
    /// `--max-requests-inflight`; 0: no limit); more get 429. Watches are not counted.
    pub max_requests_in_flight: usize,
    /// Most mutating API requests served at once (`--max-mutating-requests-inflight`; 0: no
    /// limit).
    pub max_mutating_requests_in_flight: usize,
    /// Audit log of the management API (off when absent).
    pub audit: Option<AuditConfig>,
    /// Forward auth for the management plane's own web routes behind an ingress (off when
    /// absent): its endpoints are served on this listener, decided over this plane's RBAC.
    /// `issuer` and `issuerCA` default to this plane's own.
    pub forward_auth: Option<portcullis_forward_auth::Config>,
    /// How the federation plan reaches the attached clusters.
    pub delivery: DeliveryConfig,
}

/// How the federation plan reaches the attached clusters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The sink: server-side apply to each cluster (default), or GitOps files.
    pub sink: Sink,
    /// With `sink: gitops`: the directory that gets `<cluster>/` with each cluster's desired
    /// objects and a `kustomization.yaml`, for Flux or Argo CD to deliver.
    pub gitops_dir: Option<PathBuf>,
}

/// Where the plan goes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// Server-side apply to each attached cluster with its stored credentials.
    #[default]
    Kubernetes,
    /// Files under `gitopsDir`; nothing is applied.
    Gitops,
}

/// Where the management API's audit events go and at what level, as kube-apiserver's
/// `--audit-policy-file` and `--audit-log-path`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// An `audit.k8s.io/v1` `Policy` (YAML or JSON).
    pub policy_file: PathBuf,
    /// JSON lines are appended here; `-` is standard output.
    pub log_path: PathBuf,
}

/// Settings of the OpenID provider (lifetimes in seconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The signing algorithms published, each with its own keys: a list of `ES256`, `RS256`
    /// (2048-bit), `RS256-3072` and `EdDSA`, or one of them alone (the form of earlier
    /// versions). Default `[ES256, RS256]`. The first signs access tokens; each client's ID
    /// tokens use its `idTokenSignedResponseAlg` (RS256 when absent), which must be listed.
    /// A change applies at the next start through the key rotation.
    pub signing_key: SigningKeys,
    /// Seconds each signing key signs before the next takes over.
    pub key_rotation_seconds: u64,
    /// Lifetime of ID tokens.
    pub id_token_seconds: u64,
    /// Lifetime of access tokens.
    pub access_token_seconds: u64,
    /// Lifetime of a browser session after a login.
    pub session_seconds: u64,
    /// Longest life of a refresh token family.
    pub refresh_token_seconds: u64,
    /// A refresh token family unused this long ends.
    pub refresh_token_idle_seconds: u64,
    /// Grace for concurrent refreshes with one token (at most 300).
    pub refresh_reuse_grace_seconds: u64,
    /// Clients defined here rather than through the API (`Client` objects, as `apply` takes).
    pub static_clients: Vec<portcullis_model::Client>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        let d = portcullis_oidc::ProviderConfig::new("https://127.0.0.1");
        OidcConfig {
            signing_key: SigningKeys::default(),
            key_rotation_seconds: d.key_rotation_period.as_secs(),
            id_token_seconds: d.id_token_lifetime.as_secs(),
            access_token_seconds: d.access_token_lifetime.as_secs(),
            session_seconds: d.session_lifetime.as_secs(),
            refresh_token_seconds: d.refresh_token_lifetime.as_secs(),
            refresh_token_idle_seconds: d.refresh_token_idle.as_secs(),
            refresh_reuse_grace_seconds: d.refresh_reuse_grace.as_secs(),
            static_clients: Vec::new(),
        }
    }
}

impl OidcConfig {
    /// The provider configuration for `issuer`; fails on an unknown signing key or an invalid
    /// static client.
    pub fn provider_config(&self, issuer: &str) -> Result<portcullis_oidc::ProviderConfig, String> {
        use std::time::Duration;
        let signing_keys = self.signing_key.specs()?;
        for (i, client) in self.static_clients.iter().enumerate() {
            let resource = portcullis_model::Resource::from(client.clone());
            if let Err(errors) = portcullis_model::validate(&resource) {
                let detail: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                return Err(format!(
                    "oidc.staticClients[{i}] ({}): {}",
                    client.metadata.name,
                    detail.join("; ")
                ));
            }
        }
        let mut c = portcullis_oidc::ProviderConfig::new(issuer);
        c.signing_keys = signing_keys;
        c.key_rotation_period = Duration::from_secs(self.key_rotation_seconds);
        c.id_token_lifetime = Duration::from_secs(self.id_token_seconds);
        c.access_token_lifetime = Duration::from_secs(self.access_token_seconds);
        c.session_lifetime = Duration::from_secs(self.session_seconds);
        c.refresh_token_lifetime = Duration::from_secs(self.refresh_token_seconds);
        c.refresh_token_idle = Duration::from_secs(self.refresh_token_idle_seconds);
        c.refresh_reuse_grace = Duration::from_secs(self.refresh_reuse_grace_seconds);
        c.static_clients = self.static_clients.clone();
        Ok(c)
    }
}

/// `oidc.signingKey`: one algorithm (the form of earlier versions) or a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SigningKeys {
    /// One algorithm, e.g. `signingKey: ES256`.
    One(String),
    /// Several, e.g. `signingKey: [ES256, RS256]`; the first is the default.
    Several(Vec<String>),
}

impl Default for SigningKeys {
    /// ES256 (signs access tokens) and RS256 (OpenID Connect Core 1.0 §15.1: an OP must
    /// support it, and kube-apiserver accepts only RS256 unless told otherwise).
    fn default() -> Self {
        SigningKeys::Several(vec!["ES256".into(), "RS256".into()])
    }
}

impl SigningKeys {
    /// The key kinds, in order; fails on an unknown name, an empty list or an algorithm twice.
    pub fn specs(&self) -> Result<Vec<portcullis_jose::KeySpec>, String> {
        let names: &[String] = match self {
            SigningKeys::One(name) => std::slice::from_ref(name),
            SigningKeys::Several(names) => names,
        };
        if names.is_empty() {
            return Err(
                "oidc.signingKey: list at least one of ES256, RS256, RS256-3072, EdDSA".into(),
            );
        }
        let mut specs: Vec<portcullis_jose::KeySpec> = Vec::with_capacity(names.len());
        for name in names {
            let spec = match name.as_str() {
                "ES256" => portcullis_jose::KeySpec::Es256,
                "RS256" => portcullis_jose::KeySpec::Rs256Bits2048,
                "RS256-3072" => portcullis_jose::KeySpec::Rs256Bits3072,
                "EdDSA" => portcullis_jose::KeySpec::Ed25519,
                other => {
                    return Err(format!(
                        "oidc.signingKey: {other:?} is not one of ES256, RS256, RS256-3072, EdDSA"
                    ));
                }
            };
            if specs.iter().any(|s| s.algorithm() == spec.algorithm()) {
                return Err(format!(
                    "oidc.signingKey: {} is listed twice; list each algorithm once",
                    spec.algorithm()
                ));
            }
            specs.push(spec);
        }
        Ok(specs)
    }
}

/// The store backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, tag = "type")]
pub enum StoreConfig {
    /// Embedded redb file in the data directory (the default).
    Redb,
    /// In memory: lost at exit. For tests and demos.
    Memory,
    /// An etcd cluster (for HA).
    Etcd {
        /// Client URLs, e.g. `http://127.0.0.1:2379`.
        endpoints: Vec<String>,
        /// Key prefix, so that several installs can share one etcd.
        #[serde(default = "default_etcd_prefix")]
        prefix: String,
    },
}

fn default_etcd_prefix() -> String {
    "/portcullis".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("portcullis-data"),
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443))),
            issuer: String::new(),
            hosts: Vec::new(),
            store: StoreConfig::Redb,
            max_body_bytes: 3 * 1024 * 1024,
            max_json_depth: 64,
            shutdown_grace_seconds: 20,
            watch_history: 10_000,
            api_audience: "portcullis".into(),
            oidc: OidcConfig::default(),
            // kube-apiserver's defaults.
            max_requests_in_flight: 400,
            max_mutating_requests_in_flight: 200,
            audit: None,
            forward_auth: None,
            delivery: DeliveryConfig::default(),
        }
    }
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field's path.
        message: String,
    },
}

impl Config {
    /// Reads a YAML (or JSON) config file; unknown fields are errors.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The public URL: `issuer` if set, else `https://` + the listen address.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        if !self.issuer.is_empty() {
            return self.issuer.trim_end_matches('/').to_owned();
        }
        let ip = bound.ip();
        let host = if ip.is_unspecified() {
            "127.0.0.1".to_owned()
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("https://{host}:{}", bound.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn the_oidc_section_with_static_clients_parses_and_builds_a_provider_config() {
        let config = parse(
            "oidc:
  signingKey: EdDSA
  idTokenSeconds: 600
  refreshReuseGraceSeconds: 5
  staticClients:
    - apiVersion: portcullis.dev/v1alpha1
      kind: Client
      metadata: { name: kubectl }
      spec: { public: true, redirectURIs: [\"http://127.0.0.1:8000/callback\"] }
",
        )
        .unwrap();
        let provider = config
            .oidc
            .provider_config("https://mgmt.example.com")
            .unwrap();
        // The single-value form of earlier versions still loads.
        assert_eq!(provider.signing_keys, [portcullis_jose::KeySpec::Ed25519]);
        assert_eq!(provider.id_token_lifetime.as_secs(), 600);
        assert_eq!(provider.refresh_reuse_grace.as_secs(), 5);
        assert_eq!(provider.static_clients[0].metadata.name, "kubectl");
        // Unset fields keep their defaults.
        assert_eq!(provider.access_token_lifetime.as_secs(), 3600);
    }

    #[test]
    fn signing_keys_default_to_es256_and_rs256_and_take_a_list() {
        use portcullis_jose::KeySpec;
        let default = Config::default()
            .oidc
            .provider_config("https://x.example")
            .unwrap();
        assert_eq!(
            default.signing_keys,
            [KeySpec::Es256, KeySpec::Rs256Bits2048]
        );
        let config = parse("oidc: { signingKey: [RS256-3072, EdDSA] }").unwrap();
        let provider = config.oidc.provider_config("https://x.example").unwrap();
        assert_eq!(
            provider.signing_keys,
            [KeySpec::Rs256Bits3072, KeySpec::Ed25519]
        );
    }

    #[test]
    fn the_forward_auth_section_parses_and_unknown_fields_are_refused() {
        let config = parse(
            "forwardAuth:
  clientID: dashboards
  trustedProxies: [10.0.0.0/8, 127.0.0.1/32]
  hosts: [{ host: grafana.example.com, pathPrefix: /grafana }]
  allowedRedirectDomains: [.example.com]",
        )
        .unwrap();
        let fa = config.forward_auth.unwrap();
        assert_eq!(fa.client_id, "dashboards");
        assert!(
            fa.issuer.is_empty(),
            "filled in with this plane's issuer at start"
        );
        assert_eq!(fa.trusted_proxies.len(), 2);
        assert_eq!(fa.hosts[0].path_prefix, "/grafana");
        let err = parse("forwardAuth: { clientID: x, cookieSecret: y }").unwrap_err();
        assert!(err.contains("cookieSecret"), "{err}");
        assert!(parse("forwardAuth: { clientID: x, trustedProxies: [everyone] }").is_err());
    }

    #[test]
    fn bad_oidc_settings_are_refused_with_their_field() {
        let err = parse("oidc: { idTokenLifetime: 5 }").unwrap_err();
        assert!(err.contains("idTokenLifetime"), "{err}");
        for bad in [
            "oidc: { signingKey: HS256 }",
            "oidc: { signingKey: [ES256, HS256] }",
            "oidc: { signingKey: [] }",
            "oidc: { signingKey: [RS256, RS256-3072] }",
        ] {
            let config = parse(bad).unwrap();
            let err = config
                .oidc
                .provider_config("https://x.example")
                .unwrap_err();
            assert!(err.contains("oidc.signingKey"), "{bad}: {err}");
        }
        let config = parse(
            "oidc:
  staticClients:
    - apiVersion: portcullis.dev/v1alpha1
      kind: Client
      metadata: { name: web }
      spec: { redirectURIs: [\"http://evil.example/cb\"] }
",
        )
        .unwrap();
        let err = config
            .oidc
            .provider_config("https://x.example")
            .unwrap_err();
        assert!(err.contains("oidc.staticClients[0] (web)"), "{err}");
    }
}
