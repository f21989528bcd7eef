//! The relying-party side: the issuer's discovery document, the token endpoint (authorization
//! code with PKCE, RFC 7636; refresh, RFC 6749 §6), revocation (RFC 7009).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::Error;

/// Largest answer read from the issuer.
const MAX_ANSWER: usize = 64 * 1024;

/// The endpoints this endpoint uses, from the issuer's discovery document.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Endpoints {
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    #[serde(default)]
    pub(crate) end_session_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) revocation_endpoint: Option<String>,
}

/// What the token endpoint answered.
#[derive(Deserialize)]
pub(crate) struct Tokens {
    pub(crate) id_token: Option<String>,
    pub(crate) refresh_token: Option<String>,
}

pub(crate) struct IssuerClient {
    issuer: String,
    client_id: String,
    client_secret: Option<SecretString>,
    http: reqwest::Client,
    endpoints: OnceCell<Endpoints>,
}

impl IssuerClient {
    pub(crate) fn new(
        issuer: &str,
        ca_pem: Option<&str>,
        client_id: &str,
        client_secret: Option<SecretString>,
    ) -> Result<IssuerClient, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|e| Error::Config(format!("issuerCA: {e}")))?;
            builder = builder.tls_certs_only(certs);
        }
        Ok(IssuerClient {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            http: builder
                .build()
                .map_err(|e| Error::Config(format!("the HTTP client for the issuer: {e}")))?,
            endpoints: OnceCell::new(),
        })
    }

    /// The endpoints, fetched once (OpenID Connect Discovery 1.0 §4).
    pub(crate) async fn endpoints(&self) -> Result<&Endpoints, Error> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let body = self.read(self.http.get(&url)).await?;
                serde_json::from_slice::<Endpoints>(&body).map_err(|e| {
                    Error::Issuer(format!("the discovery document at {url} is not valid: {e}"))
                })
            })
            .await
    }

    async fn read(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, Error> {
        let mut response = request.send().await.map_err(|e| {
            Error::Issuer(format!("the issuer {} cannot be reached: {e}", self.issuer))
        })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::Issuer(format!("reading the issuer's answer: {e}")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(Error::Issuer("the issuer's answer is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(Error::Issuer(format!(
                "the issuer answered {status} {error}"
            )));
        }
        Ok(body)
    }

    fn token_request<'a>(
        &'a self,
        url: &str,
        mut form: Vec<(&'a str, &'a str)>,
    ) -> reqwest::RequestBuilder {
        form.push(("client_id", &self.client_id));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .http
            .post(url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        match &self.client_secret {
            // RFC 6749 §2.3.1: client_secret_basic.
            Some(secret) => request.basic_auth(&self.client_id, Some(secret.expose_secret())),
            None => request,
        }
    }

    /// Redeems an authorization code.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Tokens, Error> {
        let endpoints = self.endpoints().await?;
        let body = self
            .read(self.token_request(
                &endpoints.token_endpoint,
                vec![
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", verifier),
                ],
            ))
            .await?;
        serde_json::from_slice(&body)
            .map_err(|_| Error::Issuer("the token endpoint's answer is not valid JSON".into()))
    }

    /// Uses a refresh token.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<Tokens, Error> {
        let endpoints = self.endpoints().await?;
        let body = self
            .read(self.token_request(
                &endpoints.token_endpoint,
                vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            ))
            .await?;
        serde_json::from_slice(&body)
            .map_err(|_| Error::Issuer("the token endpoint's answer is not valid JSON".into()))
    }

    /// Revokes a refresh token (best effort: the store record is gone either way).
    pub(crate) async fn revoke(&self, refresh_token: &str) -> Result<(), Error> {
        let endpoints = self.endpoints().await?;
        let Some(url) = &endpoints.revocation_endpoint else {
            return Ok(());
        };
        self.read(self.token_request(
            url,
            vec![
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
            ],
        ))
        .await
        .map(|_| ())
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }
}
