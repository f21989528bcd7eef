//! An in-process HTTPS kube-apiserver double, built to the recordings of a real kube-apiserver
//! v1.28.4 in `shared/kube-apiserver-recordings/` (`exchanges.jsonl`, `kubectl-requests.jsonl`).
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), portcullis_testkit::Error> {
//! use portcullis_testkit::kube_apiserver::{Config, Double, UserInfo};
//!
//! let double = Double::start(
//!     Config::new()
//!         .token("proxy-token", UserInfo::new("proxy", &["proxies"]))
//!         .impersonator("proxy"),
//! )
//! .await?;
//! // double.url() is `https://127.0.0.1:PORT`; trust double.ca_pem(); send
//! // `Authorization: Bearer {double.admin_token()}` (user `admin`, group `system:masters`).
//! let seen = double.requests(); // every request that arrived, with its headers
//! # drop(seen);
//! # Ok(()) }
//! ```
//!
//! [`Double::start`] (called within a Tokio runtime) binds a free loopback port and serves
//! HTTP/1.1 and HTTP/2 (ALPN) over TLS with a certificate from its own throwaway CA, on the
//! runtime of the caller. Dropping
//! the [`Double`] stops it and every connection it holds. Each double has its own store,
//! resourceVersion counter and CA, so many can run in one process (scale tests of the
//! federation controller start hundreds).
//!
//! # What it serves (each as the recordings show kube-apiserver v1.28.4 does)
//!
//! - discovery: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}`, `/apis/{group}/{version}`
//!   (the recorded documents), aggregated discovery (`as=APIGroupDiscoveryList`, `v2beta1`, with
//!   `ETag`, `Vary: Accept` and 304 on `If-None-Match`), `/openapi/v3` with the recorded
//!   document of `rbac.authorization.k8s.io/v1` (what `kubectl apply` of RBAC objects needs),
//!   `/healthz`, `/readyz`, `/livez`;
//! - stored resources: `namespaces`, `configmaps`, `secrets`, `serviceaccounts`, `pods` (core v1)
//!   and `roles`, `rolebindings`, `clusterroles`, `clusterrolebindings`
//!   (`rbac.authorization.k8s.io/v1`): create, get, list (label and field selectors,
//!   `limit`/`continue`, Table and PartialObjectMetadataList answers), watch (`watch=true|1`,
//!   `resourceVersion`, `timeoutSeconds`, `allowWatchBookmarks`; an object entering or leaving a
//!   selector is ADDED or DELETED, as the watch cache does), deletecollection, update (409 on a stale
//!   resourceVersion; RBAC kinds are created by PUT), patch (merge, JSON patch, and strategic
//!   merge treated as a merge patch, which is exact for the RBAC kinds: their lists have no merge
//!   key), delete (with resourceVersion preconditions; a namespace goes `Terminating` and stays
//!   so, as no namespace controller runs, unless [`Config::namespace_controller`]), the RBAC validation errors that the recordings show,
//!   `fieldValidation` (`Warn` warnings, `Strict` 400s) and `dryRun=All`;
//! - server-side apply (`application/apply-patch+yaml`, `fieldManager`, `force`) with
//!   `managedFields`. Ownership is tracked per top-level field, and per key under
//!   `metadata.labels` and `metadata.annotations`; lists and nested objects are atomic (exact
//!   for RBAC `rules`, `subjects` and `roleRef`, coarser than the real server for pods);
//! - the bootstrap RBAC policy of v1.28 (119 objects), loaded unless
//!   [`Config::without_bootstrap_policy`], and RBAC authorization over the stored objects, as
//!   kube-apiserver's RBAC authorizer decides, with its `reason` strings; a [`Config::authorizer`]
//!   may decide first;
//! - authentication by bearer tokens ([`Config::token`]), anonymous requests as
//!   `system:anonymous`, and impersonation (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-*`)
//!   authorized with the `impersonate` verb like the real server (so RBAC or
//!   [`Config::impersonator`] decide who may);
//! - `SelfSubjectReview`, `SelfSubjectAccessReview` (JSON, or the protobuf body that
//!   `kubectl auth can-i` sends; answered in JSON), `SubjectAccessReview`,
//!   `LocalSubjectAccessReview` and `SelfSubjectRulesReview`;
//! - `pods/log` (lines given by [`Double::append_log`]; `follow=true` streams the ones appended
//!   later), and the upgrades of `pods/exec`, `pods/attach` and `pods/portforward`, answered by
//!   an echo "container":
//!   - WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io` (what kubectl 1.32 tries first for
//!     exec) and SPDY/3.1 `v4.channel.k8s.io` (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`): stdin
//!     comes back on stdout; without stdin the command's words come back as one line; then the
//!     success status on the error stream;
//!   - port-forward over WebSocket tunnelling SPDY (`SPDY/3.1+portforward.k8s.io`, KEP-4006,
//!     what kubectl 1.32 tries first) and over SPDY/3.1 (`portforward.k8s.io`): every forwarded
//!     connection gets its bytes back.
//!
//!   A pod without `spec.nodeName` is refused (400 `pod web does not have a host assigned`) as
//!   the real server does; [`Double::seed_running_pod`] makes one that answers.
//!
//! Every request is recorded before anything else happens to it ([`Double::requests`]: method,
//! path, raw query, HTTP version, every header in arrival order), so a test of a proxy can assert
//! on the `Impersonate-*` headers it set.
//!
//! # Scale
//!
//! A double is a few tasks and an in-memory map: 40 start in about a second in a debug build.
//! Each has its own CA, so a client must trust each double's [`Double::ca_pem`] (or one test can
//! build one rustls root store from all of them).
//!
//! # Limits
//!
//! Not served: protobuf request bodies other than the access review (415; clients must send
//! JSON or YAML), HTTP/2 extended CONNECT for WebSocket (upgrades are HTTP/1.1, as kubectl does them), admission
//! beyond the namespace lifecycle and the ServiceAccount check for pods, resources other than the
//! kinds above (their discovery is served as recorded, their paths answer 404), etcd compaction
//! and watch-cache eviction (the double keeps the last 10,000 events and answers an older
//! resourceVersion with the 410 ERROR event).
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::Error;

mod authz;
mod handler;
mod objects;
mod spdy;
mod streams;
pub(crate) mod tls;

pub use authz::{Attributes, Decision};

/// Who a request is, as kube-apiserver's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// `username`.
    pub username: String,
    /// `uid`, empty when unknown.
    pub uid: String,
    /// `groups`, in order.
    pub groups: Vec<String>,
    /// `extra` keys and their values.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with groups and no uid.
    pub fn new(username: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: username.to_owned(),
            uid: String::new(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: BTreeMap::new(),
        }
    }

    /// The same user with a uid.
    pub fn with_uid(mut self, uid: &str) -> UserInfo {
        self.uid = uid.to_owned();
        self
    }
}

/// A custom authorization decision: `Some` decides, `None` leaves the decision to RBAC over the
/// stored objects.
pub type Authorizer = Arc<dyn Fn(&Attributes) -> Option<Decision> + Send + Sync>;

/// How a [`Double`] is set up.
#[derive(Clone)]
pub struct Config {
    admin_token: String,
    tokens: Vec<(String, UserInfo)>,
    impersonators: Vec<String>,
    authorizer: Option<Authorizer>,
    bootstrap_policy: bool,
    pub(crate) namespace_controller: bool,
    bookmark_interval: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "users",
                &self
                    .tokens
                    .iter()
                    .map(|(_, u)| &u.username)
                    .collect::<Vec<_>>(),
            )
            .field("impersonators", &self.impersonators)
            .field("authorizer", &self.authorizer.is_some())
            .field("bootstrap_policy", &self.bootstrap_policy)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// A random admin token for user `admin` (uid `admin-uid`, group `system:masters`, as in the
    /// recordings), the bootstrap policy, no other users.
    pub fn new() -> Config {
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let admin = UserInfo::new("admin", &["system:masters"]).with_uid("admin-uid");
        Config {
            tokens: vec![(admin_token.clone(), admin)],
            admin_token,
            impersonators: Vec::new(),
            authorizer: None,
            bootstrap_policy: true,
            namespace_controller: false,
            bookmark_interval: Duration::from_secs(2),
        }
    }

    /// Accepts `Authorization: Bearer {token}` as `user` (`system:authenticated` is added to its
    /// groups, as the real token authenticator does).
    pub fn token(mut self, token: &str, user: UserInfo) -> Config {
        self.tokens.push((token.to_owned(), user));
        self
    }

    /// Lets `username` impersonate any user, group, uid and extra (as if bound to a ClusterRole
    /// with `impersonate` on all of them), e.g. the service account of a proxy under test.
    pub fn impersonator(mut self, username: &str) -> Config {
        self.impersonators.push(username.to_owned());
        self
    }

    /// Decides authorization before RBAC: `Some(decision)` is final, `None` falls through to
    /// RBAC over the stored objects.
    pub fn authorizer(
        mut self,
        f: impl Fn(&Attributes) -> Option<Decision> + Send + Sync + 'static,
    ) -> Config {
        self.authorizer = Some(Arc::new(f));
        self
    }

    /// Starts without the bootstrap RBAC policy: then only [`Config::authorizer`] and the
    /// objects the test creates grant anything (the admin token still holds `system:masters`,
    /// which is then allowed everything as the real server's `system:masters` short cut does).
    pub fn without_bootstrap_policy(mut self) -> Config {
        self.bootstrap_policy = false;
        self
    }

    /// Finishes namespace deletion as a cluster's namespace controller does: the objects in the
    /// namespace and then the namespace go away right after the DELETE (answered, as always, with
    /// the namespace `Terminating`). Without it the namespace stays `Terminating`, as in the
    /// recordings, where no controller ran.
    pub fn namespace_controller(mut self) -> Config {
        self.namespace_controller = true;
        self
    }

    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (2 s by default; the
    /// recording saw two in a 5 s watch).
    pub fn bookmark_interval(mut self, every: Duration) -> Config {
        self.bookmark_interval = every;
        self
    }
}

/// One request as it arrived, before anything was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, not decoded.
    pub path: String,
    /// The raw query string, empty when none.
    pub query: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Every header in arrival order, names lower-cased; repeated names appear repeatedly.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: Mutex<objects::Store>,
    pub(crate) events: broadcast::Sender<objects::Event>,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) logs: Mutex<BTreeMap<(String, String), Vec<String>>>,
    pub(crate) log_events: broadcast::Sender<(String, String, String)>,
    /// Watches, log followers and upgraded sessions: aborted when the double is dropped.
    pub(crate) tasks: Mutex<tokio::task::JoinSet<()>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running kube-apiserver double; stopped when dropped.
pub struct Double {
    url: String,
    addr: SocketAddr,
    ca_pem: String,
    admin_token: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Double {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Double").field("url", &self.url).finish()
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        // The accept loop owns every connection task in a JoinSet: aborting it ends them all;
        // streams and upgraded sessions are tracked apart.
        self.task.abort();
        lock(&self.shared.tasks).abort_all();
    }
}

impl Double {
    /// Starts a double on a free loopback port on the current Tokio runtime.
    pub async fn start(config: Config) -> Result<Double, Error> {
        let tls = tls::ServingTls::generate()?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error(format!("binding a loopback port for the double: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error(format!("reading the double's address: {e}")))?;
        let mut store = objects::Store::new();
        for ns in objects::system_namespaces() {
            store.seed(ns)?;
        }
        if config.bootstrap_policy {
            for obj in objects::bootstrap_policy()? {
                store.seed(obj)?;
            }
        }
        let (events, _) = broadcast::channel(4096);
        let (log_events, _) = broadcast::channel(1024);
        let admin_token = config.admin_token.clone();
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(store),
            events,
            requests: Mutex::new(Vec::new()),
            logs: Mutex::new(BTreeMap::new()),
            log_events,
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        });
        let task = tokio::spawn(handler::serve(
            listener,
            tls.acceptor.clone(),
            shared.clone(),
        ));
        Ok(Double {
            url: format!("https://{addr}"),
            addr,
            ca_pem: tls.ca_pem,
            admin_token,
            shared,
            task,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that signed the serving certificate (SAN IP 127.0.0.1, DNS localhost).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token of user `admin` (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A rustls client configuration (aws-lc-rs) that trusts this double's CA and offers no
    /// ALPN protocol (set `alpn_protocols` for HTTP/2).
    pub fn client_tls_config(&self) -> Result<rustls::ClientConfig, Error> {
        use rustls_pki_types::{CertificateDer, pem::PemObject};
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| Error(format!("the double's CA: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca)
            .map_err(|e| Error(format!("the double's CA: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    /// A kubeconfig (YAML) for this double with `token`, namespace `namespace`.
    pub fn kubeconfig(&self, token: &str, namespace: &str) -> String {
        crate::kubectl::kubeconfig(&self.url, &self.ca_pem, token, namespace)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Stores `object` (any served kind, JSON as `kubectl get -o json` prints it) directly,
    /// without authorization or admission, as a controller would have made it: e.g. a Running
    /// pod with `spec.nodeName` for exec tests. Returns the stored object.
    pub fn seed(&self, object: Value) -> Result<Value, Error> {
        let (stored, event) = lock(&self.shared.store).seed(object)?;
        let _ = self.shared.events.send(event);
        Ok(stored)
    }

    /// The stored object, if any (`namespace` empty for cluster-scoped kinds).
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.shared.store).get_by_resource(resource, namespace, name)
    }

    /// The current resourceVersion of the store.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).revision()
    }

    /// Appends a line to the log of `namespace/pod` (served by `pods/log`, streamed to
    /// followers).
    pub fn append_log(&self, namespace: &str, pod: &str, line: &str) {
        lock(&self.shared.logs)
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_default()
            .push(line.to_owned());
        let _ =
            self.shared
                .log_events
                .send((namespace.to_owned(), pod.to_owned(), line.to_owned()));
    }

    /// A Running pod `namespace/name` with one container named `name` on node `double-node`,
    /// seeded (see [`Double::seed`]); exec, attach and logs answer for it.
    pub fn seed_running_pod(&self, namespace: &str, name: &str) -> Result<Value, Error> {
        self.seed(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": "double-node",
                "containers": [{"name": name, "image": "double"}],
            },
            "status": {"phase": "Running", "podIP": "10.0.0.10", "hostIP": "127.0.0.1",
                "containerStatuses": [{"name": name, "ready": true, "restartCount": 0,
                    "image": "double", "imageID": "", "started": true,
                    "state": {"running": {"startedAt": objects::now()}}}]},
        }))
    }
}
