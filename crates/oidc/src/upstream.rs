//! Logins through an upstream OpenID provider (redirect connectors), and the upstream refresh
//! at every downstream refresh.
//!
//! The upstream leg: the pending authorization waits here while the browser goes upstream
//! with a fresh `state`, `nonce` and PKCE verifier, kept in the store under the hash of the
//! `state` and bound to the browser by its anti-forgery cookie. The callback takes the record
//! once (compare-and-swap delete), so a replayed callback finds nothing.
//!
//! The upstream refresh token is sealed in an upstream session record shared by every grant
//! of that login. Redeeming it takes a lock in that record with a compare-and-swap write, so
//! across requests and replicas one refresh runs at a time; its outcome is kept with the
//! digest of the downstream refresh token it answered, and concurrent refreshes with that
//! same token (the refresh race) wait for and reuse it instead of redeeming the upstream
//! token again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_connectors::RedirectConnector;
use portcullis_connectors::oidc::Refusal;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::authorize::{
    csrf_failed, expired_page, internal, page_params, proceed, respond_to_client, see_other,
    with_cookies,
};
use crate::connect::{Recheck, identity_of};
use crate::grants::{PENDING_LIFETIME_SECS, PendingAuthorization, random_id, random_token};
use crate::pages::error_page;
use crate::provider::Provider;
use crate::session;
use crate::state::{self, Authentication, ConnectorLogin, UPSTREAM_LOGINS, UPSTREAM_SESSIONS};

/// How long one upstream refresh may hold the lock before another may take it over.
const LOCK_SECS: u64 = 30;
/// How long a refresh waits for another one to finish.
const WAIT: Duration = Duration::from_secs(35);

/// A login waiting at the upstream provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamLogin {
    /// Handle of the pending authorization.
    request: String,
    connector: String,
    nonce: String,
    verifier: String,
    /// The browser's anti-forgery value: the callback must come from the same browser.
    csrf: String,
    pub(crate) expires_at: u64,
}

/// The upstream refresh token of one login, and the refresh in progress or done last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamSession {
    connector: String,
    /// The upstream refresh token, sealed under this record's key.
    sealed_refresh: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lock: Option<Lock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<Outcome>,
    pub(crate) expires_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lock {
    /// Digest of the downstream refresh token being answered.
    refresh: String,
    until: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outcome {
    /// Digest of the downstream refresh token this answered.
    refresh: String,
    /// The user as re-read, or `None`: the upstream refused, the user's sessions end.
    identity: Option<portcullis_connectors::Identity>,
}

fn callback_url(provider: &Provider) -> String {
    provider.endpoints().url("/callback")
}

fn unavailable(connector: &dyn RedirectConnector, e: &portcullis_connectors::Error) -> Response {
    tracing::warn!(connector = %connector.id(), error = %e, "upstream login failed");
    error_page(
        StatusCode::BAD_GATEWAY,
        &format!(
            "{} cannot be reached; try again later or choose another sign-in method.",
            connector.display_name()
        ),
    )
}

/// Starts the upstream leg of the pending request `request` (already stored): sends the
/// browser to the upstream provider.
pub(crate) async fn redirect(
    provider: &Provider,
    request: &str,
    csrf: &str,
    connector: Arc<dyn RedirectConnector>,
) -> Response {
    let now = provider.now();
    let (Ok(state_value), Ok(nonce), Ok(verifier)) =
        (random_token(), random_token(), random_token())
    else {
        return internal(&Error::Crypto("no randomness"));
    };
    let url = match connector
        .login_url(&callback_url(provider), &state_value, &nonce, &verifier)
        .await
    {
        Ok(url) => url,
        Err(e) => return unavailable(&*connector, &e),
    };
    let record = UpstreamLogin {
        request: request.to_owned(),
        connector: connector.id().to_owned(),
        nonce,
        verifier,
        csrf: csrf.to_owned(),
        expires_at: now + PENDING_LIFETIME_SECS,
    };
    let key = format!("{UPSTREAM_LOGINS}{}", state::digest_hex(&state_value));
    if let Err(e) = state::create(provider.store(), &key, &record).await {
        return internal(&e);
    }
    see_other(&url)
}

/// Stores `pending` and starts its upstream leg (`connector_id` named the upstream).
pub(crate) async fn begin(provider: &Provider, pending: PendingAuthorization) -> Response {
    let Some(connector) = pending
        .connector_id
        .as_deref()
        .and_then(|id| provider.connectors().redirect(id).cloned())
    else {
        return expired_page();
    };
    let csrf = pending.csrf.clone();
    let request = match provider.grants().insert_pending(pending, provider.now()) {
        Ok(id) => id,
        Err(e) => return internal(&e),
    };
    redirect(provider, &request, &csrf, connector).await
}

/// `GET /callback`: the upstream provider's authorization response.
pub(crate) async fn callback(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let now = provider.now();
    let params = match page_params(pairs) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let Some(state_value) = params.get("state") else {
        return expired_page();
    };
    let key = format!("{UPSTREAM_LOGINS}{}", state::digest_hex(state_value));
    let (record, revision) = match state::get::<UpstreamLogin>(provider.store(), &key).await {
        Ok(Some(r)) => r,
        Ok(None) => return expired_page(),
        Err(e) => return internal(&e),
    };
    // Used once: a replayed callback finds nothing.
    match state::remove_at(provider.store(), &key, revision).await {
        Ok(true) => {}
        Ok(false) => return expired_page(),
        Err(e) => return internal(&e),
    }
    if record.expires_at <= now {
        return expired_page();
    }
    if !session::csrf_ok(&headers, Some(&record.csrf), None) {
        return csrf_failed();
    }
    let Some(pending) = provider.grants().pending(&record.request, now) else {
        return expired_page();
    };
    if let Some(error) = params.get("error") {
        tracing::info!(connector = %record.connector, error = %error, "the upstream provider refused the login");
        let Some(pending) = provider.grants().take_pending(&record.request, now) else {
            return expired_page();
        };
        return respond_to_client(
            &provider,
            &pending.redirect_uri,
            pending.form_post,
            pending.state.as_deref(),
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "the upstream identity provider refused the login",
                ),
            ],
        );
    }
    let Some(code) = params.get("code") else {
        return error_page(StatusCode::BAD_REQUEST, "The upstream answer has no code.");
    };
    let Some(connector) = provider.connectors().redirect(&record.connector).cloned() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in method is no longer offered; go back to the application and start again.",
        );
    };
    let upstream = match connector
        .finish(
            &callback_url(&provider),
            code,
            &record.verifier,
            &record.nonce,
        )
        .await
    {
        Ok(Ok(u)) => u,
        Ok(Err(Refusal(why))) => {
            tracing::info!(connector = %record.connector, reason = %why, "upstream login refused");
            return error_page(
                StatusCode::FORBIDDEN,
                &format!(
                    "{} signed you in, but you may not sign in here: {why}.",
                    connector.display_name()
                ),
            );
        }
        Err(e) => return unavailable(&*connector, &e),
    };
    // The upstream refresh token, sealed in its own record: what refresh re-checks with.
    let session_id = match &upstream.refresh_token {
        None => None,
        Some(token) => match new_session(&provider, &record.connector, token, now).await {
            Ok(id) => Some(id),
            Err(e) => return internal(&e),
        },
    };
    let authn = match authentication(
        &provider,
        &record.connector,
        upstream.identity,
        session_id,
        now,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return internal(&e),
    };
    if let Err(e) = session::end(&provider, &headers).await {
        return internal(&e);
    }
    let cookie = match session::start(&provider, &authn, now).await {
        Ok(c) => c,
        Err(e) => return internal(&e),
    };
    tracing::info!(user = %authn.identity.username, connector = %record.connector, client = %pending.client_id, "login");
    let response = proceed(&provider, &record.request, pending, &authn, now).await;
    with_cookies(response, [cookie])
}

async fn authentication(
    provider: &Provider,
    connector: &str,
    user: portcullis_connectors::Identity,
    upstream: Option<String>,
    now: u64,
) -> Result<Authentication, Error> {
    Ok(Authentication {
        identity: crate::groups::with_portcullis_groups(provider, identity_of(connector, &user))
            .await?,
        credential: format!("connector:{connector}"),
        sid: Some(random_token()?),
        auth_time: now,
        amr: Vec::new(),
        connector: Some(Box::new(ConnectorLogin {
            id: connector.to_owned(),
            identity: user,
            upstream,
        })),
    })
}

fn seal(provider: &Provider, key: &str, token: &SecretString) -> Result<String, Error> {
    String::from_utf8(provider.seal(key, token.expose_secret().as_bytes())?)
        .map_err(|_| Error::Crypto("sealed value is not text"))
}

async fn new_session(
    provider: &Provider,
    connector: &str,
    token: &SecretString,
    now: u64,
) -> Result<String, Error> {
    let id = random_id()?;
    let key = format!("{UPSTREAM_SESSIONS}{id}");
    let record = UpstreamSession {
        connector: connector.to_owned(),
        sealed_refresh: seal(provider, &key, token)?,
        lock: None,
        last: None,
        expires_at: now + provider.config().refresh_token_lifetime.as_secs(),
    };
    state::create(provider.store(), &key, &record).await?;
    Ok(id)
}

/// Re-checks a user of redirect connector `connector`. With `refresh` (the digest of the
/// downstream refresh token presented), redeems the upstream refresh token once for it;
/// without (a browser session answering an authorization), checks only that the upstream
/// session has not ended.
pub(crate) async fn recheck(
    provider: &Provider,
    authn: &Authentication,
    login: &ConnectorLogin,
    connector: &Arc<dyn RedirectConnector>,
    refresh: Option<&str>,
) -> Result<Recheck, Error> {
    let Some(id) = &login.upstream else {
        // No upstream refresh token: nothing to re-check with at a refresh.
        return Ok(match refresh {
            None => Recheck::Current(authn.clone()),
            Some(_) => Recheck::Gone,
        });
    };
    let key = format!("{UPSTREAM_SESSIONS}{id}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let current = |user: portcullis_connectors::Identity| async move {
        Ok::<_, Error>(Recheck::Current(
            authentication_now(provider, authn, &login.id, user, login.upstream.clone()).await?,
        ))
    };
    loop {
        let Some((mut record, revision)) =
            state::get::<UpstreamSession>(provider.store(), &key).await?
        else {
            return Ok(Recheck::Gone);
        };
        let Some(presented) = refresh else {
            let ended = record.last.as_ref().is_some_and(|o| o.identity.is_none());
            return Ok(if ended {
                Recheck::Gone
            } else {
                Recheck::Current(authn.clone())
            });
        };
        if let Some(last) = record
            .last
            .as_ref()
            .filter(|l| state::same(&l.refresh, presented))
        {
            // This downstream refresh was answered already (a concurrent request with the same
            // token): the same answer, without redeeming again.
            return match last.identity.clone() {
                Some(user) => current(user).await,
                None => Ok(Recheck::Gone),
            };
        }
        if record.last.as_ref().is_some_and(|o| o.identity.is_none()) {
            return Ok(Recheck::Gone);
        }
        let now = provider.now();
        if record.lock.as_ref().is_some_and(|l| l.until > now) {
            if tokio::time::Instant::now() >= deadline {
                return Ok(Recheck::Unavailable(
                    "another refresh of this upstream session is still running".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        }
        record.lock = Some(Lock {
            refresh: presented.to_owned(),
            until: now + LOCK_SECS,
        });
        let Some(revision) = state::replace_at(provider.store(), &key, &record, revision).await?
        else {
            // Another request took the lock first.
            continue;
        };
        // The lock is ours: the one redemption of the upstream token for this refresh.
        let token = provider.unseal(&key, record.sealed_refresh.as_bytes())?;
        let token = SecretString::from(
            String::from_utf8(token).map_err(|_| Error::Crypto("sealed token is not text"))?,
        );
        let result = connector.refresh(&login.identity, &token).await;
        record.lock = None;
        let answer = match result {
            Ok(Ok(upstream)) => {
                if let Some(next) = &upstream.refresh_token {
                    record.sealed_refresh = seal(provider, &key, next)?;
                }
                record.expires_at =
                    provider.now() + provider.config().refresh_token_lifetime.as_secs();
                record.last = Some(Outcome {
                    refresh: presented.to_owned(),
                    identity: Some(upstream.identity.clone()),
                });
                Ok(upstream.identity)
            }
            Ok(Err(Refusal(why))) => {
                tracing::info!(connector = %login.id, reason = %why, "the upstream refresh was refused");
                record.last = Some(Outcome {
                    refresh: presented.to_owned(),
                    identity: None,
                });
                Err(None)
            }
            Err(e) => Err(Some(e.to_string())),
        };
        if state::replace_at(provider.store(), &key, &record, revision)
            .await?
            .is_none()
        {
            // The lock expired and another request took over: its answer stands.
            tracing::warn!(connector = %login.id, "an upstream refresh outlived its lock");
            return Ok(Recheck::Unavailable(
                "the upstream refresh took too long".into(),
            ));
        }
        return match answer {
            Ok(user) => current(user).await,
            Err(None) => Ok(Recheck::Gone),
            Err(Some(why)) => Ok(Recheck::Unavailable(why)),
        };
    }
}

async fn authentication_now(
    provider: &Provider,
    authn: &Authentication,
    connector: &str,
    user: portcullis_connectors::Identity,
    upstream: Option<String>,
) -> Result<Authentication, Error> {
    Ok(Authentication {
        identity: crate::groups::with_portcullis_groups(provider, identity_of(connector, &user))
            .await?,
        connector: Some(Box::new(ConnectorLogin {
            id: connector.to_owned(),
            identity: user,
            upstream,
        })),
        ..authn.clone()
    })
}
