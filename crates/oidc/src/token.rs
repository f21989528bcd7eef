//! The token endpoint (RFC 6749 §3.2, §4.1.3; OpenID Connect Core 1.0 §3.1.3).

use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_jose::Algorithm;
use std::collections::HashMap;

use portcullis_model::{Client, GrantType};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use crate::authorize::{pkce_chars, single_params};
use crate::connect::Recheck;
use crate::grants::{random_id, random_token};
use crate::provider::Provider;
use crate::state::{
    self, Authentication, CODES, CodeRecord, GRANTS, GrantRecord, RefreshState, Rotation,
};
use crate::{Error, registry};

/// `typ` of access tokens (RFC 9068 §2.1), so an ID token never passes for one.
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// An OAuth error response (RFC 6749 §5.2).
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

pub(crate) fn oauth_error(error: &'static str, description: impl Into<String>) -> OAuthError {
    let status = if error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    OAuthError {
        status,
        error,
        description: description.into(),
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        tracing::warn!(error = %e, "token request failed");
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "the token service failed; try again later".into(),
        }
    }
}

pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({
            "error": self.error,
            "error_description": self.description,
        }));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: invalid_client answers with an authentication challenge.
            (
                self.status,
                no_store(),
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"token\""),
                )],
                body,
            )
                .into_response()
        } else {
            (self.status, no_store(), body).into_response()
        }
    }
}

/// How the client presented itself.
struct ClientCredentials {
    client_id: String,
    secret: Option<String>,
}

/// Reads client authentication: `client_secret_basic` (RFC 6749 §2.3.1, id and secret
/// form-urlencoded inside Basic), `client_secret_post`, or none (a public client sends only
/// `client_id`). Using two methods at once is an error (§2.3).
fn client_credentials(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<ClientCredentials, OAuthError> {
    let body_id = params.get("client_id").cloned();
    let body_secret = params.get("client_secret").cloned();
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let bad = || oauth_error("invalid_client", "malformed Authorization header");
            let value = value.to_str().map_err(|_| bad())?;
            let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(bad());
            }
            let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
            let unescape = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((unescape(id), unescape(secret)))
        }
    };
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(oauth_error(
            "invalid_request",
            "use one client authentication method, not several",
        )),
        (Some((id, secret)), None) => {
            if body_id.as_deref().is_some_and(|b| b != id) {
                return Err(oauth_error("invalid_client", "client_id does not match"));
            }
            Ok(ClientCredentials {
                client_id: id,
                secret: Some(secret),
            })
        }
        (None, secret) => Ok(ClientCredentials {
            client_id: body_id
                .ok_or_else(|| oauth_error("invalid_client", "client authentication is missing"))?,
            secret,
        }),
    }
}

/// Authenticates the client of a token, revocation, introspection or device request.
pub(crate) async fn authenticate_request(
    provider: &Provider,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Client, OAuthError> {
    let credentials = client_credentials(headers, params)?;
    authenticate(provider, &credentials).await
}

async fn authenticate(
    provider: &Provider,
    credentials: &ClientCredentials,
) -> Result<Client, OAuthError> {
    let failed = || oauth_error("invalid_client", "client authentication failed");
    let client = registry::client(provider, &credentials.client_id)
        .await?
        .ok_or_else(failed)?;
    match (&credentials.secret, client.spec.public) {
        // A public client has no secret; one that sends a secret is refused rather than ignored.
        (None, true) => Ok(client),
        (Some(secret), false) if client.spec.verify_secret(secret) => Ok(client),
        _ => Err(failed()),
    }
}

/// The body of an OAuth endpoint request, as axum extracts it.
pub(crate) type OAuthForm =
    Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>;

/// Reads an OAuth endpoint request: a form-encoded POST (RFC 6749 §3.2; anything else is an
/// OAuth error, not axum's text) with single-valued parameters, from an authenticated client.
pub(crate) async fn client_request(
    provider: &Provider,
    headers: &HeaderMap,
    form: OAuthForm,
) -> Result<(HashMap<String, String>, Client), OAuthError> {
    let Ok(Form(pairs)) = form else {
        return Err(oauth_error(
            "invalid_request",
            "the request must be an application/x-www-form-urlencoded POST",
        ));
    };
    let params = single_params(pairs).map_err(|e| oauth_error("invalid_request", e))?;
    let client = authenticate_request(provider, headers, &params).await?;
    Ok((params, client))
}

/// The answer of an OAuth endpoint: 200 with the JSON body (or none), never cached, or the
/// OAuth error.
pub(crate) fn answer(result: Result<Option<Value>, OAuthError>) -> Response {
    match result {
        Ok(Some(body)) => (StatusCode::OK, no_store(), axum::Json(body)).into_response(),
        Ok(None) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /token`.
pub(crate) async fn token(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Response {
    let result = async {
        let (params, client) = client_request(&provider, &headers, form).await?;
        grant(&provider, &client, &params).await.map(Some)
    };
    answer(result.await)
}

async fn grant(
    provider: &Provider,
    client: &Client,
    params: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let grant_type = match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => GrantType::AuthorizationCode,
        Some("refresh_token") => GrantType::RefreshToken,
        Some("urn:ietf:params:oauth:grant-type:device_code") => GrantType::DeviceCode,
        Some(_) => {
            return Err(oauth_error(
                "unsupported_grant_type",
                "supported grant types: authorization_code, refresh_token, urn:ietf:params:oauth:grant-type:device_code",
            ));
        }
        None => return Err(oauth_error("invalid_request", "grant_type is missing")),
    };
    if !client.spec.allows_grant(grant_type) {
        return Err(oauth_error(
            "unauthorized_client",
            format!("the client may not use the {} grant", grant_type.as_str()),
        ));
    }
    // Before a code or refresh token is used up: a client whose ID tokens cannot be signed now
    // gets nothing.
    id_token_algorithm(provider, client)?;
    let param = |name: &'static str| {
        params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| oauth_error("invalid_request", format!("{name} is missing")))
    };
    match grant_type {
        GrantType::AuthorizationCode => {
            redeem_code(
                provider,
                client,
                param("code")?,
                params.get("redirect_uri").map(String::as_str),
                params.get("code_verifier").map(String::as_str),
            )
            .await
        }
        GrantType::RefreshToken => {
            refresh(
                provider,
                client,
                param("refresh_token")?,
                params.get("scope").map(String::as_str),
            )
            .await
        }
        GrantType::DeviceCode => {
            let now = provider.now();
            let (device, authn, grant_id) =
                crate::device::poll(provider, client, param("device_code")?, now).await?;
            let (grant, refresh_token) = new_grant(
                provider,
                client,
                &grant_id,
                authn,
                device.scopes,
                device.audiences,
                now,
            )
            .await?;
            mint(
                provider,
                client,
                &grant_id,
                &grant,
                None,
                None,
                refresh_token.as_deref(),
                now,
            )
        }
    }
}

/// Redeems an authorization code (RFC 6749 §4.1.3). A code works once: it is marked redeemed
/// before anything else is checked, and if it comes back, the grant it created is revoked
/// (§4.1.2: the code was stolen or leaked).
async fn redeem_code(
    provider: &Provider,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<Value, OAuthError> {
    let now = provider.now();
    let invalid = || {
        oauth_error(
            "invalid_grant",
            "the code is invalid, expired or already used",
        )
    };
    let key = format!("{CODES}{}", state::digest_hex(code));
    let Some((mut record, revision)) = state::get::<CodeRecord>(provider.store(), &key).await?
    else {
        return Err(invalid());
    };
    if let Some(grant_id) = &record.redeemed {
        tracing::warn!(
            client = %record.request.client_id,
            "authorization code presented twice; revoking the tokens issued for it"
        );
        state::remove(provider.store(), &format!("{GRANTS}{grant_id}")).await?;
        return Err(invalid());
    }
    if record.expires_at <= now {
        return Err(invalid());
    }
    let grant_id = random_id()?;
    record.redeemed = Some(grant_id.clone());
    if !state::replace(provider.store(), &key, &record, revision).await? {
        // Redeemed concurrently by another request.
        return Err(invalid());
    }
    if record.request.client_id != client.metadata.name {
        return Err(invalid());
    }
    // RFC 6749 §4.1.3: the same redirect_uri as in the authorization request.
    if redirect_uri != Some(record.request.redirect_uri.as_str()) {
        return Err(oauth_error(
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        ));
    }
    check_pkce(record.request.code_challenge.as_deref(), verifier)?;
    let request = record.request;
    let (grant, refresh_token) = new_grant(
        provider,
        client,
        &grant_id,
        record.authn,
        request.scopes,
        request.audiences,
        now,
    )
    .await?;
    mint(
        provider,
        client,
        &grant_id,
        &grant,
        None,
        request.nonce.as_deref(),
        refresh_token.as_deref(),
        now,
    )
}

/// RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) equals the challenge. A verifier without a
/// challenge is refused too (RFC 9700 §2.1.1: PKCE downgrade).
fn check_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    let failed = || oauth_error("invalid_grant", "PKCE verification failed");
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (Some(challenge), Some(verifier)) => {
            if !(43..=128).contains(&verifier.len()) || !pkce_chars(verifier) {
                return Err(failed());
            }
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
            let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
            if bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                Ok(())
            } else {
                Err(failed())
            }
        }
        _ => Err(failed()),
    }
}

/// A refresh token: the grant id, a dot, and the secret.
fn refresh_token_for(grant_id: &str, secret: &str) -> String {
    format!("{grant_id}.{secret}")
}

/// Splits a refresh token into grant id and secret, if it has the shape of one.
pub(crate) fn parse_refresh_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (ok(id, 22) && ok(secret, 43)).then_some((id, secret))
}

/// Creates the grant for a completed authorization; with `offline_access` (and a client
/// allowed the refresh grant) it holds a refresh token family, returned here.
async fn new_grant(
    provider: &Provider,
    client: &Client,
    grant_id: &str,
    authn: Authentication,
    scopes: Vec<String>,
    audiences: Vec<String>,
    now: u64,
) -> Result<(GrantRecord, Option<String>), OAuthError> {
    let config = provider.config();
    let offline = scopes.iter().any(|s| s == "offline_access")
        && client.spec.allows_grant(GrantType::RefreshToken);
    let (refresh, token, expires_at) = if offline {
        let secret = random_token()?;
        let expires_at = now + config.refresh_token_lifetime.as_secs();
        let state = RefreshState {
            current: state::digest_hex(&secret),
            previous: None,
            idle_expires_at: (now + config.refresh_token_idle.as_secs()).min(expires_at),
        };
        (
            Some(state),
            Some(refresh_token_for(grant_id, &secret)),
            expires_at,
        )
    } else {
        (None, None, now + config.access_token_lifetime.as_secs())
    };
    let grant = GrantRecord {
        client_id: client.metadata.name.clone(),
        authn,
        scopes,
        audiences,
        created_at: now,
        expires_at,
        refresh,
    };
    state::create(provider.store(), &format!("{GRANTS}{grant_id}"), &grant).await?;
    Ok((grant, token))
}

/// The refresh token grant (RFC 6749 §6), with rotation on every use and reuse detection
/// (RFC 9700 §4.14.2): the presented token must be the family's current one, or the one
/// just rotated away within the grace window (concurrent refreshes by one client get the
/// same new token); any other token of the family revokes the whole family.
async fn refresh(
    provider: &Provider,
    client: &Client,
    token: &str,
    scope: Option<&str>,
) -> Result<Value, OAuthError> {
    let invalid = |why: &str| oauth_error("invalid_grant", format!("the refresh token {why}"));
    let (grant_id, secret) = parse_refresh_token(token).ok_or_else(|| invalid("is not valid"))?;
    let key = format!("{GRANTS}{grant_id}");
    let presented = state::digest_hex(secret);
    let config = provider.config();
    let now = provider.now();
    for _ in 0..8 {
        let Some((mut grant, revision)) = state::get::<GrantRecord>(provider.store(), &key).await?
        else {
            return Err(invalid("is not valid or was revoked"));
        };
        if grant.client_id != client.metadata.name {
            return Err(invalid("was issued to another client"));
        }
        let Some(refresh) = grant.refresh.clone() else {
            return Err(invalid("is not valid"));
        };
        if grant.expires_at <= now || refresh.idle_expires_at <= now {
            state::remove(provider.store(), &key).await?;
            return Err(invalid("has expired"));
        }
        // A narrower scope may be asked for (§6); never a wider one.
        let scopes = match scope {
            None => grant.scopes.clone(),
            Some(s) => {
                let asked: Vec<String> = s
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if asked.iter().any(|s| !grant.scopes.contains(s)) {
                    return Err(oauth_error(
                        "invalid_scope",
                        "the scope exceeds what was granted",
                    ));
                }
                asked
            }
        };
        let is_current = state::same(&presented, &refresh.current);
        let in_grace = refresh.previous.as_ref().filter(|p| {
            state::same(&presented, &p.digest)
                && now.saturating_sub(p.at) <= config.refresh_reuse_grace.as_secs()
        });
        if !is_current && in_grace.is_none() {
            tracing::warn!(
                client = %grant.client_id,
                user = %grant.authn.identity.username,
                "a rotated refresh token was presented again; revoking its family"
            );
            state::remove(provider.store(), &key).await?;
            return Err(invalid("was already used; its session is revoked"));
        }
        // Group and profile changes reach the user here; a user removed or disabled at their
        // source, or whose password changed, is logged out and the family revoked.
        match crate::connect::recheck(provider, &grant.authn, Some(&presented)).await? {
            Recheck::Current(authn) => grant.authn = authn,
            Recheck::Gone => {
                tracing::info!(
                    client = %grant.client_id,
                    user = %grant.authn.identity.username,
                    "the user can no longer log in at their source; revoking the refresh token family"
                );
                state::remove(provider.store(), &key).await?;
                return Err(invalid("belongs to a user who can no longer log in"));
            }
            Recheck::Unavailable(why) => {
                tracing::warn!(error = %why, "re-checking a user at refresh failed");
                return Err(OAuthError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    error: "temporarily_unavailable",
                    description: "the user's identity source cannot be reached; try again later"
                        .into(),
                });
            }
        }
        if let Some(previous) = in_grace {
            // The refresh race: another request with this token rotated it a moment ago.
            let next = provider.unseal(&key, previous.sealed_next.as_bytes())?;
            let next = String::from_utf8(next)
                .map_err(|_| Error::Crypto("sealed refresh token is not text"))?;
            return mint(
                provider,
                client,
                grant_id,
                &grant,
                Some(&scopes),
                None,
                Some(&next),
                now,
            );
        }
        let new_secret = random_token()?;
        let next = refresh_token_for(grant_id, &new_secret);
        let sealed = provider.seal(&key, next.as_bytes())?;
        let sealed =
            String::from_utf8(sealed).map_err(|_| Error::Crypto("sealed value is not text"))?;
        grant.refresh = Some(RefreshState {
            current: state::digest_hex(&new_secret),
            previous: Some(Rotation {
                digest: refresh.current,
                at: now,
                sealed_next: sealed,
            }),
            idle_expires_at: (now + config.refresh_token_idle.as_secs()).min(grant.expires_at),
        });
        if state::replace(provider.store(), &key, &grant, revision).await? {
            return mint(
                provider,
                client,
                grant_id,
                &grant,
                Some(&scopes),
                None,
                Some(&next),
                now,
            );
        }
        // Someone refreshed concurrently: read again (the grace window applies now).
    }
    Err(OAuthError::from(Error::Busy))
}

/// Why a client's ID tokens cannot be signed now.
pub(crate) enum IdTokenAlgError {
    /// The client registered an algorithm the issuer does not publish.
    NotPublished(String),
    /// The client's algorithm was just added to the configuration: its first key is
    /// published before it signs (until the given Unix time), so that verifiers caching the
    /// JWKS hold it by then.
    NotYet(Algorithm, u64),
}

impl IdTokenAlgError {
    pub(crate) fn description(&self) -> String {
        match self {
            IdTokenAlgError::NotPublished(why) => why.clone(),
            IdTokenAlgError::NotYet(alg, from) => format!(
                "no {alg} key signs yet: its first key is published until Unix time {from} \
                 before it signs; try again then"
            ),
        }
    }
}

impl From<IdTokenAlgError> for OAuthError {
    fn from(e: IdTokenAlgError) -> Self {
        match e {
            IdTokenAlgError::NotPublished(_) => oauth_error("unauthorized_client", e.description()),
            IdTokenAlgError::NotYet(..) => OAuthError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "server_error",
                description: e.description(),
            },
        }
    }
}

/// The algorithm that signs `client`'s ID tokens now: its `idTokenSignedResponseAlg`, which
/// the issuer must publish (never replaced by another); for a client that registered none,
/// RS256 (OpenID Connect Dynamic Client Registration 1.0 §2), or the issuer's default while
/// RS256 does not sign here (an operator listed only other algorithms in `oidc.signingKey`,
/// or just added RS256, whose first key is still only published: such a client keeps the
/// tokens it got before).
pub(crate) fn id_token_algorithm(
    provider: &Provider,
    client: &Client,
) -> Result<Algorithm, IdTokenAlgError> {
    let Some(registered) = client.spec.id_token_signed_response_alg else {
        if provider.can_sign(Algorithm::RS256) {
            return Ok(Algorithm::RS256);
        }
        return provider
            .default_signing_algorithm()
            .map_err(|_| IdTokenAlgError::NotPublished("the issuer has no signing key".into()));
    };
    let published = provider.signing_algorithms();
    let Some(alg) = published
        .iter()
        .copied()
        .find(|a| a.as_str() == registered.as_str())
    else {
        let published: Vec<&str> = published.iter().map(|a| a.as_str()).collect();
        return Err(IdTokenAlgError::NotPublished(format!(
            "the client's ID tokens are to be signed with {} (idTokenSignedResponseAlg), which \
             this issuer does not publish; it publishes {} (oidc.signingKey)",
            registered.as_str(),
            published.join(", ")
        )));
    };
    match provider.signs_from(alg) {
        Some(from) => Err(IdTokenAlgError::NotYet(alg, from)),
        None => Ok(alg),
    }
}

/// `at_hash` (OpenID Connect Core 1.0 §3.1.3.6): the left half of the hash of the access
/// token, with the hash of the ID token's algorithm (SHA-512 for Ed25519).
fn at_hash(access_token: &str, alg: Algorithm) -> String {
    let (hash, half) = match alg {
        Algorithm::ES256 | Algorithm::RS256 => (&aws_lc_rs::digest::SHA256, 16),
        Algorithm::EdDSA => (&aws_lc_rs::digest::SHA512, 32),
    };
    let digest = aws_lc_rs::digest::digest(hash, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref().get(..half).unwrap_or_default())
}

/// The identity claims the scopes allow (OpenID Connect Core 1.0 §5.4).
pub(crate) fn scoped_claims(
    claims: &mut Map<String, Value>,
    scopes: &[String],
    identity: &crate::grants::Identity,
) {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if has("profile") {
        claims.insert("preferred_username".into(), json!(identity.username));
        if !identity.name.is_empty() {
            claims.insert("name".into(), json!(identity.name));
        }
    }
    if has("email") && !identity.email.is_empty() {
        claims.insert("email".into(), json!(identity.email));
        claims.insert("email_verified".into(), json!(identity.email_verified));
    }
    if has("groups") {
        claims.insert("groups".into(), json!(identity.groups));
    }
}

/// Signs the access token and ID token of a grant (and returns the refresh token given).
/// `scopes` narrows the grant's scopes for this response.
#[allow(clippy::too_many_arguments)]
fn mint(
    provider: &Provider,
    client: &Client,
    grant_id: &str,
    grant: &GrantRecord,
    scopes: Option<&[String]>,
    nonce: Option<&str>,
    refresh_token: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let config = provider.config();
    let issuer = &provider.endpoints().issuer;
    let identity = &grant.authn.identity;
    let scopes = scopes.unwrap_or(&grant.scopes);
    let scope = scopes.join(" ");
    let access_lifetime = config.access_token_lifetime.as_secs();

    let access_claims = json!({
        "iss": issuer,
        "sub": identity.subject,
        // The userinfo endpoint of this issuer is the resource (RFC 9068 §3); a relying party
        // expecting its client_id as audience never accepts it in place of an ID token.
        "aud": issuer,
        "exp": now + access_lifetime,
        "iat": now,
        "jti": random_token()?,
        "client_id": grant.client_id,
        "scope": scope,
        "gid": grant_id,
        "preferred_username": identity.username,
    });
    let access_token = provider.sign_typed(ACCESS_TOKEN_TYP, &access_claims)?;

    let mut id_claims = Map::new();
    id_claims.insert("iss".into(), json!(issuer));
    id_claims.insert("sub".into(), json!(identity.subject));
    if grant.audiences.is_empty() {
        id_claims.insert("aud".into(), json!(grant.client_id));
    } else {
        // Cross-client audience: the peers asked for, and the client itself (whose libraries
        // check that aud contains it); azp names who the token was issued to.
        let mut audiences = grant.audiences.clone();
        if !audiences.contains(&grant.client_id) {
            audiences.push(grant.client_id.clone());
        }
        id_claims.insert("aud".into(), json!(audiences));
        id_claims.insert("azp".into(), json!(grant.client_id));
    }
    id_claims.insert(
        "exp".into(),
        json!(now + config.id_token_lifetime.as_secs()),
    );
    id_claims.insert("iat".into(), json!(now));
    id_claims.insert("auth_time".into(), json!(grant.authn.auth_time));
    if let Some(nonce) = nonce {
        id_claims.insert("nonce".into(), json!(nonce));
    }
    if !grant.authn.amr.is_empty() {
        id_claims.insert("amr".into(), json!(grant.authn.amr));
    }
    if let Some(sid) = &grant.authn.sid {
        id_claims.insert("sid".into(), json!(sid));
    }
    scoped_claims(&mut id_claims, scopes, identity);
    let alg = id_token_algorithm(provider, client)?;
    id_claims.insert("at_hash".into(), json!(at_hash(&access_token, alg)));
    let Some(id_token) = provider.sign_with(alg, &Value::Object(id_claims))? else {
        // The key set changed between the choice and the signature (another replica).
        return Err(Error::Config(format!("no {alg} key signs; retry")).into());
    };

    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": access_lifetime,
        "id_token": id_token,
        "scope": scope,
    });
    if let (Some(token), Some(obj)) = (refresh_token, body.as_object_mut()) {
        obj.insert("refresh_token".into(), json!(token));
    }
    Ok(body)
}
