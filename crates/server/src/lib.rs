//! The portcullis management plane: configuration, PKI, TLS serving, the management API on the
//! `authn` crate's filter chain, and the issuer, wired together by [`start`].
//!
//! The surface is what the `portcullis` binary and the tests use: [`Config`], [`start`] and
//! [`Running`], the PKI and kubeconfig helpers, the static admin's names, and
//! [`human_duration`] for tables. The API's handlers, the RBAC registry and the TLS plumbing
//! are private.
#![deny(missing_docs)]

pub mod agent;
mod api;
pub mod config;
mod connectors;
mod delivery;
mod federation;
mod kinds;
pub mod kubeconfig;
mod listen;
pub mod pki;
pub mod pull;
mod rbac;
mod secrets;
mod serve;
mod tls;

pub use api::table::human_duration;
pub use config::Config;
pub use kinds::{ADMIN_PASSWORD_FILE, STATIC_ADMIN, STATIC_ADMIN_EMAIL};
pub use serve::{Running, start};

/// For `benches/chain.rs` only (feature `bench-internals`, never in a release): the management
/// API's handlers with and without the filter chain in front, to measure what the chain costs.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_support {
    use portcullis_authn::{RequestInfo, UserInfo};

    pub use crate::listen::Served;

    /// (the API as served: metrics, the filter chain, then the handlers; the same handlers
    /// alone, the request's `RequestInfo` and an admin `UserInfo` set as the chain would set
    /// them).
    pub fn routers(running: &crate::Running) -> (Served, Served) {
        let with_chain = Served::measured(
            crate::api::app(running.state.clone()),
            &running.state.metrics,
        );
        let admin = std::sync::Arc::new(UserInfo {
            name: crate::pki::ADMIN_USER.into(),
            groups: vec![
                crate::pki::ADMINS_GROUP.into(),
                portcullis_authn::SYSTEM_AUTHENTICATED.into(),
            ],
            ..UserInfo::default()
        });
        let without =
            crate::api::protected_routes(running.state.clone()).layer(axum::middleware::from_fn(
                move |mut req: axum::extract::Request, next: axum::middleware::Next| {
                    let admin = admin.clone();
                    async move {
                        let info =
                            RequestInfo::parse(req.method(), req.uri().path(), req.uri().query())
                                .unwrap_or_default();
                        req.extensions_mut().insert(info);
                        req.extensions_mut().insert(admin);
                        next.run(req).await
                    }
                },
            ));
        (with_chain, Served::Plain(without))
    }

    /// The filter chain the management API is served with.
    pub fn chain(running: &crate::Running) -> portcullis_authn::chain::Chain {
        (*running.state.chain).clone()
    }

    /// Serves `router` over TLS with the management plane's serving certificate (from
    /// `data_dir`) and accept loop, on a free loopback port: its URL, and the sender that stops
    /// it.
    pub async fn serve(
        data_dir: &std::path::Path,
        router: Served,
    ) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
        let pki = crate::pki::load_or_create(data_dir, &["127.0.0.1".into()])?;
        let tls = crate::tls::server_config(&pki)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (stopping, _) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::listen::accept_loop(
            listener,
            tls,
            crate::listen::Routers::Shared(router),
            std::sync::Arc::new(portcullis_authn::chain::metrics::Metrics::default()),
            stopped,
            stopping,
            std::time::Duration::from_secs(1),
        ));
        Ok((format!("https://127.0.0.1:{port}"), stop))
    }
}

/// Entry points for the fuzz targets (`fuzz/`): parsers of untrusted input that are otherwise
/// private. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a protobuf access review (`SubjectAccessReview`, …) as kubectl sends it.
    pub fn access_review(kind: &str, body: &[u8]) -> bool {
        crate::api::protobuf::review_to_json(kind, body).is_ok()
    }

    /// Parses `labelSelector` and `fieldSelector` of a list request and matches an object.
    pub fn list_selectors(label: &str, field: &str) -> bool {
        let mut query = crate::api::Query::new();
        query.insert("labelSelector".into(), label.into());
        query.insert("fieldSelector".into(), field.into());
        let Ok(filter) = crate::api::selector::Filter::from_query(&query) else {
            return false;
        };
        let kv = portcullis_store::KeyValue {
            key: "/registry/portcullis.dev/workspaces/a".into(),
            value: br#"{"metadata":{"name":"a","labels":{"app":"web"}}}"#.to_vec(),
            create_revision: 1,
            mod_revision: 1,
        };
        filter.matches_kv(&kv)
    }
}
