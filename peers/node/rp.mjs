// A relying party built on openid-client (a certified OpenID Connect RP library), run by the
// portcullis tests against a running `portcullis up`. It drives every flow the library offers
// and prints one JSON object with what it saw; the Rust test asserts on it. Any failure of the
// library (a rejected ID token, a bad response) makes the script exit non-zero.
//
// Input (environment): ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_REDIRECT_URI,
// LOGIN, PASSWORD. NODE_EXTRA_CA_CERTS must name the management plane's CA certificate.

import * as oidc from 'openid-client';

import { Browser, env, form } from './browser.mjs';


const issuer = new URL(env('ISSUER'));
const redirectUri = env('REDIRECT_URI');
const config = await oidc.discovery(issuer, env('CLIENT_ID'), env('CLIENT_SECRET'));
const meta = config.serverMetadata();
const out = {
  discovery: {
    issuer: meta.issuer,
    revocation: Boolean(meta.revocation_endpoint),
    introspection: Boolean(meta.introspection_endpoint),
    endSession: Boolean(meta.end_session_endpoint),
    deviceAuthorization: Boolean(meta.device_authorization_endpoint),
  },
};

// Authorization code flow with PKCE, state and nonce.
const browser = new Browser();
const verifier = oidc.randomPKCECodeVerifier();
const state = oidc.randomState();
const nonce = oidc.randomNonce();
const authUrl = oidc.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email groups offline_access',
  code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
});
const page = await browser.get(authUrl);
if (page.status !== 200) throw new Error(`login page: ${page.status} ${page.body}`);
const login = form(page.body, '/auth/login');
const answer = await browser.post(login.action, {
  ...login.fields,
  login: env('LOGIN'),
  password: env('PASSWORD'),
});
if (answer.status !== 303) throw new Error(`login: ${answer.status} ${answer.body}`);
const tokens = await oidc.authorizationCodeGrant(config, new URL(answer.location), {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
out.code = {
  sub: claims.sub,
  email: claims.email,
  groups: claims.groups,
  hasRefreshToken: Boolean(tokens.refresh_token),
  hasSid: Boolean(claims.sid),
};

// Userinfo, with the subject check the library does.
const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
out.userinfo = { sub: info.sub, email: info.email };

// Refresh: rotated, and the new ID token validated against the first one's rules.
const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
out.refresh = {
  rotated: refreshed.refresh_token !== tokens.refresh_token,
  sub: refreshed.claims().sub,
};

// Introspection of the new access and refresh tokens.
const access = await oidc.tokenIntrospection(config, refreshed.access_token);
const refresh = await oidc.tokenIntrospection(config, refreshed.refresh_token);
out.introspection = {
  accessActive: access.active,
  accessClient: access.client_id,
  refreshActive: refresh.active,
};

// Revocation of the refresh token ends the grant: both tokens become inactive, and the
// revoked refresh token no longer refreshes.
await oidc.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
out.revocation = {
  accessActive: (await oidc.tokenIntrospection(config, refreshed.access_token)).active,
  refreshActive: (await oidc.tokenIntrospection(config, refreshed.refresh_token)).active,
};
try {
  await oidc.refreshTokenGrant(config, refreshed.refresh_token);
  out.revocation.refreshError = null;
} catch (e) {
  out.revocation.refreshError = e.error ?? String(e);
}

// RP-initiated logout with the session's own ID token as hint.
const logoutUrl = oidc.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: env('POST_LOGOUT_REDIRECT_URI'),
  state: 'bye',
});
const logout = await browser.get(logoutUrl);
out.logout = {
  status: logout.status,
  location: logout.location,
  sessionCleared: !browser.cookies.has('__Host-portcullis-session'),
};
// After logout the browser must log in again.
const again = await browser.get(
  oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid',
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: oidc.randomState(),
  }),
);
out.logout.loginShownAgain = again.status === 200 && again.body.includes('/auth/login');

console.log(JSON.stringify(out));
