// The OpenID conformance items of portcullis issue 23, seen by openid-client (a certified
// OpenID Connect relying party) against a running `portcullis up`: RS256 ID tokens for a client
// that registered no algorithm and ES256 for one that registered ES256, POST at the
// authorization endpoint, id_token_hint, revocation of another client's token, unknown scopes,
// and the userinfo access token in a form body. Prints one JSON object with what it saw; the
// Rust test asserts on it. A failure of the library where success is expected exits non-zero.
//
// Input (environment): ISSUER, RS_CLIENT_ID (no idTokenSignedResponseAlg), ES_CLIENT_ID
// (idTokenSignedResponseAlg: ES256), CLIENT_SECRET (both), REDIRECT_URI, LOGIN_A, PASSWORD_A,
// LOGIN_B, PASSWORD_B. NODE_EXTRA_CA_CERTS must name the management plane's CA certificate.

import * as oidc from 'openid-client';

import { Browser, env, form } from './browser.mjs';


const jwtHeader = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());

const issuer = new URL(env('ISSUER'));
const redirectUri = env('REDIRECT_URI');
const secret = env('CLIENT_SECRET');
// The relying parties state the algorithm they expect, so the library checks it.
const rs = await oidc.discovery(issuer, env('RS_CLIENT_ID'), {
  client_secret: secret,
  id_token_signed_response_alg: 'RS256',
});
const es = await oidc.discovery(issuer, env('ES_CLIENT_ID'), {
  client_secret: secret,
  id_token_signed_response_alg: 'ES256',
});
const out = {
  discovery: { algs: rs.serverMetadata().id_token_signing_alg_values_supported },
};

// An authorization request: its URL and what the callback needs.
async function request(config, params = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...params,
  });
  return { url, verifier, state, nonce };
}

// Answers the login form if shown; returns the redirect to the client.
async function loginIfAsked(browser, page, login, password) {
  if (page.status !== 200) return page;
  const f = form(page.body, '/auth/login');
  return browser.post(f.action, { ...f.fields, login, password });
}

async function redeem(config, req, page) {
  if (page.status !== 303) throw new Error(`expected a redirect: ${page.status} ${page.body}`);
  return oidc.authorizationCodeGrant(config, new URL(page.location), {
    pkceCodeVerifier: req.verifier,
    expectedState: req.state,
    expectedNonce: req.nonce,
    idTokenExpected: true,
  });
}

async function codeFlow(config, browser, login, password, params = {}) {
  const req = await request(config, params);
  const page = await loginIfAsked(browser, await browser.get(req.url), login, password);
  return redeem(config, req, page);
}

// The authorization error openid-client reports for a callback, or null when it succeeded.
async function callbackError(config, req, page) {
  try {
    await redeem(config, req, page);
    return null;
  } catch (e) {
    return e.error ?? String(e);
  }
}

const browserA = new Browser();
const browserB = new Browser();

// 1. RS256 by default, ES256 for the client that registered it.
const rsTokens = await codeFlow(rs, browserA, env('LOGIN_A'), env('PASSWORD_A'), {
  scope: 'openid email offline_access',
});
const esTokens = await codeFlow(es, browserA, env('LOGIN_A'), env('PASSWORD_A'));
out.algorithms = {
  rsIdToken: jwtHeader(rsTokens.id_token).alg,
  rsSub: rsTokens.claims().sub,
  esIdToken: jwtHeader(esTokens.id_token).alg,
  esSub: esTokens.claims().sub,
};

// 2. POST at the authorization endpoint, the parameters form-serialised.
{
  const browser = new Browser();
  const req = await request(rs);
  const endpoint = new URL(req.url);
  const fields = Object.fromEntries(endpoint.searchParams);
  endpoint.search = '';
  const page = await loginIfAsked(
    browser,
    await browser.post(endpoint.href, fields),
    env('LOGIN_A'),
    env('PASSWORD_A'),
  );
  const tokens = await redeem(rs, req, page);
  out.post = { sub: tokens.claims().sub };
}

// 3. id_token_hint: B's ID token while A is logged in, garbage, and A's own.
const bTokens = await codeFlow(rs, browserB, env('LOGIN_B'), env('PASSWORD_B'));
{
  const hinted = async (hint) => {
    const req = await request(rs, { prompt: 'none', id_token_hint: hint });
    return callbackError(rs, req, await browserA.get(req.url));
  };
  out.hint = {
    other: await hinted(bTokens.id_token),
    garbage: await hinted('garbage.not.atoken'),
    own: await hinted(rsTokens.id_token),
  };
}

// 4. The ES256 client revokes the RS256 client's refresh token: refused, and it still works.
try {
  await oidc.tokenRevocation(es, rsTokens.refresh_token, { token_type_hint: 'refresh_token' });
  out.revocation = { error: null };
} catch (e) {
  out.revocation = { error: e.error ?? String(e), status: e.status };
}
const refreshed = await oidc.refreshTokenGrant(rs, rsTokens.refresh_token);
out.revocation.stillRefreshes = Boolean(refreshed.access_token);

// 5. Unknown scopes are ignored and left out of the granted scope.
const scoped = await codeFlow(rs, browserA, env('LOGIN_A'), env('PASSWORD_A'), {
  scope: 'openid address phone email',
});
out.scopes = { granted: scoped.scope };

// 6. Userinfo: the access token in a form body (RFC 6750 §2.2), never in the query.
{
  const endpoint = rs.serverMetadata().userinfo_endpoint;
  const viaBody = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ access_token: scoped.access_token }).toString(),
  });
  const viaQuery = await fetch(`${endpoint}?access_token=${scoped.access_token}`);
  const badBody = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'access_token=not-a-token',
  });
  out.userinfo = {
    bodyStatus: viaBody.status,
    bodySub: (await viaBody.json()).sub,
    queryStatus: viaQuery.status,
    queryError: (await viaQuery.json()).error,
    badStatus: badBody.status,
    badChallenge: badBody.headers.get('www-authenticate'),
    badError: (await badBody.json()).error,
  };
  // And the library's own userinfo call (Authorization header) agrees on the subject.
  const info = await oidc.fetchUserInfo(rs, scoped.access_token, scoped.claims().sub);
  out.userinfo.librarySub = info.sub;
}

console.log(JSON.stringify(out));
