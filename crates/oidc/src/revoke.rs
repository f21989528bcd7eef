//! Token revocation (RFC 7009) and introspection (RFC 7662).
//!
//! Revoking either token of a grant ends the grant: its refresh token family and, at this
//! issuer's userinfo and introspection endpoints, its access tokens (RFC 7009 §2.1 allows
//! this, and it is what a user logging a client out means). Components that verify access
//! tokens offline see the revocation when the token expires.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use portcullis_jose::VerifiedToken;
use portcullis_model::Client;
use serde_json::{Value, json};

use crate::provider::Provider;
use crate::state::{self, GRANTS, GrantRecord};
use crate::token::{
    OAuthError, OAuthForm, answer, client_request, oauth_error, parse_refresh_token,
};
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

/// `POST /token/revoke` (RFC 7009 §2.1): the client revokes one of its own tokens. The
/// answer is 200 for an invalid, expired or already revoked token (§2.2), and
/// `unauthorized_client` for a live token issued to another client, which is not revoked
/// (§2.1: the client is informed when the token was not issued to it).
pub(crate) async fn revoke(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Response {
    let result = async {
        let (params, client) = client_request(&provider, &headers, form).await?;
        if !revoke_token(&provider, &client, token_param(&params)?).await? {
            return Err(oauth_error(
                "unauthorized_client",
                "the token was not issued to this client; a client revokes only its own tokens",
            ));
        }
        Ok(None)
    };
    answer(result.await)
}

fn token_param(params: &std::collections::HashMap<String, String>) -> Result<&str, OAuthError> {
    params
        .get("token")
        .map(String::as_str)
        .ok_or_else(|| oauth_error("invalid_request", "token is missing"))
}

/// Revokes `token`'s grant if it is `client`'s. Returns false for a live token of another
/// client (left alone), true otherwise (revoked, or not a live token at all).
async fn revoke_token(provider: &Provider, client: &Client, token: &str) -> Result<bool, Error> {
    let now = provider.now();
    // The hint (§2.1) only says where to look first; both kinds are tried.
    let grant = if let Some((grant_id, grant)) = refresh_grant(provider, token, now).await? {
        Some((grant_id, grant))
    } else {
        active_access_token(provider, token)
            .await?
            .map(|(_, grant_id, grant)| (grant_id, grant))
    };
    let Some((grant_id, grant)) = grant else {
        return Ok(true);
    };
    // A client revokes only its own tokens (§2.1: "the token was issued to the client").
    if grant.client_id != client.metadata.name {
        tracing::info!(
            client = %client.metadata.name,
            owner = %grant.client_id,
            "revocation of another client's token refused"
        );
        return Ok(false);
    }
    state::remove(provider.store(), &format!("{GRANTS}{grant_id}")).await?;
    tracing::info!(
        client = %grant.client_id,
        user = %grant.authn.identity.username,
        "grant revoked"
    );
    Ok(true)
}

/// `POST /token/introspect` (RFC 7662): a confidential client (a resource server) asks
/// whether a token is active. Refresh tokens are answered only for the client they belong to.
pub(crate) async fn introspect(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Response {
    let result = async {
        let (params, client) = client_request(&provider, &headers, form).await?;
        // §4: the endpoint needs authorization; a public client proves nothing.
        if client.spec.public {
            return Err(oauth_error(
                "invalid_client",
                "introspection needs a confidential client",
            ));
        }
        let body = introspection(&provider, &client, token_param(&params)?).await?;
        Ok(Some(body))
    };
    answer(result.await)
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
