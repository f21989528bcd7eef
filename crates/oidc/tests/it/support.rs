//! A provider served on a loopback port, and an `openidconnect` HTTP client over reqwest.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openidconnect::core::CoreProviderMetadata;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse, IssuerUrl};
use portcullis_oidc::{Provider, ProviderConfig};
use portcullis_store::Store;
use portcullis_store::memory::MemoryStore;

pub const ENCRYPTION_KEY: [u8; 32] = [42; 32];

/// `openidconnect`'s async HTTP client, over reqwest (rustls with aws-lc-rs), redirects off
/// as the openidconnect docs advise (SSRF).
pub struct Http(reqwest::Client);

impl Http {
    pub fn new() -> Self {
        Http(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        )
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(request.try_into()?).await?;
            let mut out = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let body = response.bytes().await?.to_vec();
            Ok(out.body(body).unwrap())
        })
    }
}

/// A provider serving its router on a free loopback port, issuer path `path` (`""` or `/dex`).
pub struct Served {
    pub issuer: String,
    pub provider: Provider,
    pub store: Arc<dyn Store>,
    server: tokio::task::JoinHandle<()>,
}

impl Served {
    pub async fn start(path: &str, store: Arc<dyn Store>) -> Served {
        Self::start_with(path, store, |c| c).await
    }

    pub async fn start_with(
        path: &str,
        store: Arc<dyn Store>,
        configure: impl FnOnce(ProviderConfig) -> ProviderConfig,
    ) -> Served {
        Self::start_full(path, store, configure, Arc::new(portcullis_jose::unix_now)).await
    }

    pub async fn start_full(
        path: &str,
        store: Arc<dyn Store>,
        configure: impl FnOnce(ProviderConfig) -> ProviderConfig,
        clock: portcullis_oidc::Clock,
    ) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}{path}", listener.local_addr().unwrap());
        let config = configure(ProviderConfig::new(issuer.clone()));
        let provider = Provider::with_clock(config, Arc::clone(&store), ENCRYPTION_KEY, clock)
            .await
            .unwrap();
        // Mounted under the issuer's path, as the server does.
        let app = if provider.issuer_path().is_empty() {
            provider.router()
        } else {
            axum::Router::new().nest(provider.issuer_path(), provider.router())
        };
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Served {
            issuer,
            provider,
            store,
            server,
        }
    }

    pub async fn discover(&self) -> CoreProviderMetadata {
        CoreProviderMetadata::discover_async(
            IssuerUrl::new(self.issuer.clone()).unwrap(),
            &Http::new(),
        )
        .await
        .unwrap()
    }

    /// Stops serving and waits until the server task (and its provider clone) is gone.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }
}

pub fn memory_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}
