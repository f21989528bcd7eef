//! The token endpoint (RFC 6749 §3.2, §4.1.3; OpenID Connect Core 1.0 §3.1.3).

use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_jose::Algorithm;
use portcullis_model::{Client, GrantType};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use crate::authorize::{pkce_chars, single_params};
use crate::grants::{CodeGrant, random_token};
use crate::provider::Provider;
use crate::{Error, registry};

/// `typ` of access tokens (RFC 9068 §2.1), so an ID token never passes for one.
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// An OAuth error response (RFC 6749 §5.2).
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn oauth_error(error: &'static str, description: impl Into<String>) -> OAuthError {
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

fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
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
    params: &std::collections::HashMap<String, String>,
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

/// `POST /token`.
pub(crate) async fn token(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    // RFC 6749 §3.2: a form-encoded POST; anything else is an OAuth error, not axum's text.
    let Ok(Form(pairs)) = form else {
        return oauth_error(
            "invalid_request",
            "the token request must be an application/x-www-form-urlencoded POST",
        )
        .into_response();
    };
    match token_inner(&provider, &headers, pairs).await {
        Ok(body) => (StatusCode::OK, no_store(), axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn token_inner(
    provider: &Provider,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
) -> Result<Value, OAuthError> {
    let params = single_params(pairs).map_err(|e| oauth_error("invalid_request", e))?;
    let credentials = client_credentials(headers, &params)?;
    let client = authenticate(provider, &credentials).await?;
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some(_) => {
            return Err(oauth_error(
                "unsupported_grant_type",
                "only authorization_code is supported",
            ));
        }
        None => return Err(oauth_error("invalid_request", "grant_type is missing")),
    }
    if !client.spec.allows_grant(GrantType::AuthorizationCode) {
        return Err(oauth_error(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        ));
    }
    let code = params
        .get("code")
        .ok_or_else(|| oauth_error("invalid_request", "code is missing"))?;
    let now = provider.now();
    let invalid = || {
        oauth_error(
            "invalid_grant",
            "the code is invalid, expired or already used",
        )
    };
    // Taken out whatever happens next: a code is good for one attempt.
    let grant = provider.grants().take_code(code, now).ok_or_else(invalid)?;
    if grant.request.client_id != client.metadata.name {
        return Err(invalid());
    }
    // RFC 6749 §4.1.3: the same redirect_uri as in the authorization request.
    if params.get("redirect_uri") != Some(&grant.request.redirect_uri) {
        return Err(oauth_error(
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        ));
    }
    check_pkce(&grant, params.get("code_verifier").map(String::as_str))?;
    issue(provider, &client, &grant, now)
}

/// RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) equals the challenge. A verifier without a
/// challenge is refused too (RFC 9700 §2.1.1: PKCE downgrade).
fn check_pkce(grant: &CodeGrant, verifier: Option<&str>) -> Result<(), OAuthError> {
    let failed = || oauth_error("invalid_grant", "PKCE verification failed");
    match (&grant.request.code_challenge, verifier) {
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

fn issue(
    provider: &Provider,
    client: &Client,
    grant: &CodeGrant,
    now: u64,
) -> Result<Value, OAuthError> {
    let config = provider.config();
    let issuer = &provider.endpoints().issuer;
    let identity = &grant.identity;
    let scope = grant.request.scopes.join(" ");
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
        "client_id": client.metadata.name,
        "scope": scope,
        "preferred_username": identity.username,
    });
    let (access_token, _) = provider.sign_typed(ACCESS_TOKEN_TYP, &access_claims)?;

    let mut id_claims = Map::new();
    id_claims.insert("iss".into(), json!(issuer));
    id_claims.insert("sub".into(), json!(identity.subject));
    id_claims.insert("aud".into(), json!(client.metadata.name));
    id_claims.insert(
        "exp".into(),
        json!(now + config.id_token_lifetime.as_secs()),
    );
    id_claims.insert("iat".into(), json!(now));
    id_claims.insert("auth_time".into(), json!(grant.auth_time));
    if let Some(nonce) = &grant.request.nonce {
        id_claims.insert("nonce".into(), json!(nonce));
    }
    id_claims.insert("amr".into(), json!(["pwd"]));
    scoped_claims(&mut id_claims, &grant.request.scopes, identity);
    let alg = provider.signing_algorithm();
    id_claims.insert("at_hash".into(), json!(at_hash(&access_token, alg)));
    let (id_token, signed_with) = provider.sign_typed("JWT", &Value::Object(id_claims))?;
    if signed_with != alg {
        // The active key rotated between the two signatures; at_hash would be wrong.
        return Err(Error::Config("signing key changed while issuing; retry".into()).into());
    }

    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": access_lifetime,
        "id_token": id_token,
        "scope": scope,
    }))
}
