//! Token revocation (RFC 7009) and introspection (RFC 7662).
//!
//! Revoking either token of a grant ends the grant: its refresh token family and, at this
//! issuer's userinfo and introspection endpoints, its access tokens (RFC 7009 §2.1 allows
//! this, and it is what a user logging a client out means). Components that verify access
//! tokens offline see the revocation when the token expires.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_jose::VerifiedToken;
use portcullis_model::Client;
use serde_json::{Value, json};

use crate::authorize::single_params;
use crate::provider::Provider;
use crate::state::{self, GRANTS, GrantRecord};
use crate::token::{OAuthError, authenticate_request, no_store, oauth_error, parse_refresh_token};
use crate::{Error, registry};

/// An access token of this issuer that is valid now: signature, expiry, and its grant still
/// live with its user still able to log in. Returns the token and its grant (identity
/// refreshed).
pub(crate) async fn active_access_token(
    provider: &Provider,
    token: &str,
) -> Result<Option<(VerifiedToken, String, GrantRecord)>, Error> {
    let now = provider.now();
    let Ok(verified) = provider.verify_access_token(token, now) else {
        return Ok(None);
    };
    let Some(grant_id) = verified.claim_str("gid").map(str::to_owned) else {
        return Ok(None);
    };
    let Some(grant) = live_grant(provider, &grant_id, now).await? else {
        return Ok(None);
    };
    if verified.subject.as_deref() != Some(grant.authn.identity.subject.as_str()) {
        return Ok(None);
    }
    Ok(Some((verified, grant_id, grant)))
}

/// The grant `grant_id` if it exists, has not expired and its user can still log in.
async fn live_grant(
    provider: &Provider,
    grant_id: &str,
    now: u64,
) -> Result<Option<GrantRecord>, Error> {
    if grant_id.is_empty() || grant_id.len() > 64 || grant_id.contains('/') {
        return Ok(None);
    }
    let Some((mut grant, _)) =
        state::get::<GrantRecord>(provider.store(), &format!("{GRANTS}{grant_id}")).await?
    else {
        return Ok(None);
    };
    if grant.expires_at <= now {
        return Ok(None);
    }
    match registry::current_identity(provider, &grant.authn).await? {
        Some(identity) => {
            grant.authn.identity = identity;
            Ok(Some(grant))
        }
        None => Ok(None),
    }
}

/// The grant a refresh token belongs to, if the token is its current one (or the one rotated
/// away within the grace window) and the grant is live.
async fn refresh_grant(
    provider: &Provider,
    token: &str,
    now: u64,
) -> Result<Option<(String, GrantRecord)>, Error> {
    let Some((grant_id, secret)) = parse_refresh_token(token) else {
        return Ok(None);
    };
    let Some(grant) = live_grant(provider, grant_id, now).await? else {
        return Ok(None);
    };
    let Some(refresh) = &grant.refresh else {
        return Ok(None);
    };
    let digest = state::digest_hex(secret);
    let grace = provider.config().refresh_reuse_grace.as_secs();
    let current = state::same(&digest, &refresh.current);
    let previous = refresh
        .previous
        .as_ref()
        .is_some_and(|p| state::same(&digest, &p.digest) && now.saturating_sub(p.at) <= grace);
    if refresh.idle_expires_at <= now || !(current || previous) {
        return Ok(None);
    }
    Ok(Some((grant_id.to_owned(), grant)))
}

async fn form_params(
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Result<std::collections::HashMap<String, String>, OAuthError> {
    let Ok(Form(pairs)) = form else {
        return Err(oauth_error(
            "invalid_request",
            "the request must be an application/x-www-form-urlencoded POST",
        ));
    };
    single_params(pairs).map_err(|e| oauth_error("invalid_request", e))
}

/// `POST /token/revoke` (RFC 7009 §2.1): the client revokes one of its own tokens. The
/// answer is 200 whether or not the token was valid (§2.2), so it tells nothing.
pub(crate) async fn revoke(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let result = async {
        let params = form_params(form).await?;
        let client = authenticate_request(&provider, &headers, &params).await?;
        let token = params
            .get("token")
            .ok_or_else(|| oauth_error("invalid_request", "token is missing"))?;
        revoke_token(&provider, &client, token).await?;
        Ok::<(), OAuthError>(())
    }
    .await;
    match result {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn revoke_token(provider: &Provider, client: &Client, token: &str) -> Result<(), Error> {
    let now = provider.now();
    // The hint (§2.1) only says where to look first; both kinds are tried.
    let grant = if let Some((grant_id, grant)) = refresh_grant(provider, token, now).await? {
        Some((grant_id, grant))
    } else {
        active_access_token(provider, token)
            .await?
            .map(|(_, grant_id, grant)| (grant_id, grant))
    };
    if let Some((grant_id, grant)) = grant {
        // A client revokes only its own tokens (§2.1: "the token was issued to the client").
        if grant.client_id == client.metadata.name {
            state::remove(provider.store(), &format!("{GRANTS}{grant_id}")).await?;
            tracing::info!(
                client = %grant.client_id,
                user = %grant.authn.identity.username,
                "grant revoked"
            );
        }
    }
    Ok(())
}

/// `POST /token/introspect` (RFC 7662): a confidential client (a resource server) asks
/// whether a token is active. Refresh tokens are answered only for the client they belong to.
pub(crate) async fn introspect(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let result = async {
        let params = form_params(form).await?;
        let client = authenticate_request(&provider, &headers, &params).await?;
        // §4: the endpoint needs authorization; a public client proves nothing.
        if client.spec.public {
            return Err(oauth_error(
                "invalid_client",
                "introspection needs a confidential client",
            ));
        }
        let token = params
            .get("token")
            .ok_or_else(|| oauth_error("invalid_request", "token is missing"))?;
        Ok(introspection(&provider, &client, token).await?)
    }
    .await;
    match result {
        Ok(body) => (StatusCode::OK, no_store(), axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn introspection(provider: &Provider, client: &Client, token: &str) -> Result<Value, Error> {
    let issuer = &provider.endpoints().issuer;
    if let Some((verified, _, grant)) = active_access_token(provider, token).await? {
        let mut body = json!({
            "active": true,
            "token_type": "Bearer",
            "iss": issuer,
            "sub": verified.subject,
            "aud": verified.audiences,
            "exp": verified.expires_at,
            "iat": verified.issued_at,
            "client_id": grant.client_id,
            "username": grant.authn.identity.username,
            "scope": verified.claim_str("scope").unwrap_or_default(),
        });
        if let (Some(jti), Some(obj)) = (verified.claim_str("jti"), body.as_object_mut()) {
            obj.insert("jti".into(), json!(jti));
        }
        return Ok(body);
    }
    let now = provider.now();
    if let Some((_, grant)) = refresh_grant(provider, token, now).await?
        && grant.client_id == client.metadata.name
    {
        let idle = grant
            .refresh
            .as_ref()
            .map_or(grant.expires_at, |r| r.idle_expires_at);
        return Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "iss": issuer,
            "sub": grant.authn.identity.subject,
            "exp": idle.min(grant.expires_at),
            "iat": grant.created_at,
            "client_id": grant.client_id,
            "username": grant.authn.identity.username,
            "scope": grant.scopes.join(" "),
        }));
    }
    Ok(json!({ "active": false }))
}
