// npm oidc-provider (a certified OpenID provider) set up like portcullis for the side-by-side
// benchmark: ES256 ID tokens, refresh tokens rotated on every use, one confidential client,
// one user whose password is checked against an argon2id hash with the same parameters as
// portcullis uses (m=19456, t=2, p=1), its default in-memory store.
//
// Usage: node oidc-provider-bench.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI LOGIN PASSWORD
// Prints `ready PORT` when listening. Plain http on 127.0.0.1 (the load generator talks to
// portcullis over TLS; see docs/benchmarks.md).

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { hash, verify } from '@node-rs/argon2';

const [port, clientId, clientSecret, redirectUri, login, password] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const jwk = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
jwk.alg = 'ES256';
jwk.use = 'sig';
jwk.kid = 'bench-es256';

// argon2id, Algorithm.Argon2id = 2.
const passwordHash = await hash(password, { memoryCost: 19456, timeCost: 2, parallelism: 1, algorithm: 2 });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [jwk] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true }),
  }),
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'email'],
  rotateRefreshToken: true,
  issueRefreshToken: async () => true,
  pkce: { required: () => false },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // The first-party client needs no consent screen (as portcullis's clients).
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid offline_access email');
    await grant.save();
    return grant;
  },
  ttl: {
    AccessToken: 3600,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64')] },
});
provider.proxy = false;

const escape = (s) => String(s).replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;');

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 16 * 1024) throw new Error('body too large');
    chunks.push(c);
  }
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
}

// The login interaction: a form, then an argon2id check.
async function interaction(req, res) {
  const url = new URL(req.url, issuer);
  const [, , uid, action] = url.pathname.split('/');
  if (req.method === 'GET' && !action) {
    await provider.interactionDetails(req, res);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html><form method="post" action="${issuer}/interaction/${escape(uid)}/login">
<input name="login"><input name="password" type="password"><button>Log in</button></form>`);
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    await provider.interactionDetails(req, res);
    const form = await readForm(req);
    if (form.login !== login || !(await verify(passwordHash, form.password ?? ''))) {
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end('Invalid username or password.');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: form.login } }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(404);
  res.end();
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    });
  } else {
    callback(req, res);
  }
});
server.keepAliveTimeout = 60_000;
server.listen(Number(port), '127.0.0.1', () => console.log(`ready ${port}`));
