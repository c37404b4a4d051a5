// support.mjs: the edge function's peers in tests: moto (its Cognito makes the pool, the client,
// the user and signs their tokens; it serves the pool's keys), a small identity provider
// playing the hosted UI's /oauth2/authorize, /oauth2/token and /logout (moto answers 500
// there), and CloudFront events shaped as CloudFront sends them.

import { spawn, execFileSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createServer as netServer } from 'node:net';
import { readFileSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { homedir } from 'node:os';

export const REGION = 'us-east-1';
export const HOST = 'd111111abcdef8.cloudfront.net';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** The moto_server the Makefile installs (or QUAKE_MOTO_SERVER). */
function motoBinary() {
  const bin = process.env.QUAKE_MOTO_SERVER ?? join(homedir(), '.cache/quake/venv/bin/moto_server');
  if (!existsSync(bin)) throw new Error(`no moto_server at ${bin}: run make deps`);
  return bin;
}

/**
 * moto on a free port, stopped when the process ends. With `totp`, its Cognito checks the
 * authenticator codes a user's second factor gives (with the `cryptography` package's TOTP, an
 * implementation of its own), where by default it takes any.
 */
export async function startMoto({ totp: checkCodes = false } = {}) {
  const port = await freePort();
  const bin = motoBinary();
  const env = checkCodes ? { ...process.env, MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP: 'true' } : process.env;
  const child = spawn(bin, ['-p', String(port)], { stdio: 'ignore', env });
  process.on('exit', () => child.kill());
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${url}/moto-api/`);
      if (r.status < 500) break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  // moto's own signing key, to make tokens AWS would never issue (expired, not yet valid).
  const python = join(dirname(bin), 'python');
  const motoDir = execFileSync(python, ['-c', 'import moto, os; print(os.path.dirname(moto.__file__))']).toString().trim();
  const privateJwks = JSON.parse(gunzipSync(readFileSync(join(motoDir, 'cognitoidp/resources/jwks-private.json.gz'))).toString());
  return { url, child, privateJwk: privateJwks.keys?.[0] ?? privateJwks };
}

/** One Cognito API call on moto (JSON 1.1; moto reads the region from the credential scope). */
export async function cognito(moto, action, body) {
  const r = await fetch(moto.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': `AWSCognitoIdentityProviderService.${action}`,
      authorization: `AWS4-HMAC-SHA256 Credential=test/20260101/${REGION}/cognito-idp/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: JSON.stringify(body),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${action}: ${JSON.stringify(json)}`);
  return json;
}

/**
 * An authenticator app's code (RFC 6238: HMAC-SHA-1 over 30-second steps, six digits) for a
 * base32 secret as Cognito's AssociateSoftwareToken gives it.
 */
export function totp(secret, at = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1e6).padStart(6, '0');
}

/** A code valid for at least `margin` more seconds (a step about to turn is waited out). */
export async function freshTotp(secret, margin = 8) {
  const left = 30 - ((Date.now() / 1000) % 30);
  if (left < margin) await new Promise((r) => setTimeout(r, left * 1000 + 100));
  return totp(secret);
}

/**
 * A pool with a public code-flow client (PKCE, no secret) and a user with a password. With
 * `mfa`, the pool requires a second factor (TOTP, as `finops_mfa = "on"` makes it) and the user
 * has an authenticator set up: its secret is `totpSecret`.
 */
export async function pool(moto, name, { mfa = false } = {}) {
  const { UserPool } = await cognito(moto, 'CreateUserPool', { PoolName: name });
  const { UserPoolClient } = await cognito(moto, 'CreateUserPoolClient', {
    UserPoolId: UserPool.Id,
    ClientName: `${name}-client`,
    GenerateSecret: false,
    AllowedOAuthFlows: ['code'],
    AllowedOAuthFlowsUserPoolClient: true,
    AllowedOAuthScopes: ['openid', 'email'],
    CallbackURLs: [`https://${HOST}/callback`],
    LogoutURLs: [`https://${HOST}/`],
    ExplicitAuthFlows: ['ALLOW_ADMIN_USER_PASSWORD_AUTH', 'ALLOW_REFRESH_TOKEN_AUTH'],
  });
  const username = 'finops';
  const password = 'Correct-Horse-9-Battery';
  await cognito(moto, 'AdminCreateUser', { UserPoolId: UserPool.Id, Username: username, MessageAction: 'SUPPRESS' });
  await cognito(moto, 'AdminSetUserPassword', { UserPoolId: UserPool.Id, Username: username, Password: password, Permanent: true });
  const issuer = `https://cognito-idp.${REGION}.amazonaws.com/${UserPool.Id}`;
  const jwks = await (await fetch(`${moto.url}/${UserPool.Id}/.well-known/jwks.json`)).json();
  const p = { id: UserPool.Id, clientId: UserPoolClient.ClientId, username, password, issuer, jwks };
  if (mfa) {
    await cognito(moto, 'SetUserPoolMfaConfig', { UserPoolId: p.id, SoftwareTokenMfaConfiguration: { Enabled: true }, MfaConfiguration: 'ON' });
    // The user's first sign-in sets up the authenticator: its secret, one code it shows, then
    // the preference that makes every later sign-in ask for a code.
    const { AccessToken } = await tokens(moto, p);
    const { SecretCode } = await cognito(moto, 'AssociateSoftwareToken', { AccessToken });
    await cognito(moto, 'VerifySoftwareToken', { AccessToken, UserCode: await freshTotp(SecretCode), FriendlyDeviceName: 'phone' });
    await cognito(moto, 'AdminSetUserMFAPreference', { UserPoolId: p.id, Username: username, SoftwareTokenMfaSettings: { Enabled: true, PreferredMfa: true } });
    p.totpSecret = SecretCode;
  }
  return p;
}

/** Tokens for the pool's user, signed by moto's Cognito. */
export async function tokens(moto, p, clientId = p.clientId) {
  const r = await cognito(moto, 'AdminInitiateAuth', {
    UserPoolId: p.id,
    ClientId: clientId,
    AuthFlow: 'ADMIN_USER_PASSWORD_AUTH',
    AuthParameters: { USERNAME: p.username, PASSWORD: p.password },
  });
  return r.AuthenticationResult;
}

/**
 * A refresh token in Cognito's shape (a JWE in compact form) around moto's, which is a bare
 * UUID: PLAYED, so the function's shape check sees what Cognito issues. `unwrapRefresh` gives
 * moto's back.
 */
export function cognitoRefresh(motoToken) {
  const part = (n) => randomBytes(n).toString('base64url');
  const header = Buffer.from(JSON.stringify({ cty: 'JWT', enc: 'A256GCM', alg: 'RSA-OAEP' })).toString('base64url');
  return `${header}.${part(256)}.${part(12)}.${Buffer.from(motoToken).toString('base64url')}.${part(16)}`;
}

export function unwrapRefresh(token) {
  const parts = String(token).split('.');
  return parts.length === 5 ? Buffer.from(parts[3], 'base64url').toString('utf8') : token;
}


/**
 * The hosted UI, played: `/oauth2/authorize` remembers the PKCE challenge and sends the browser
 * back with a code (the user "signs in" at once, or, with `loginPage`, through a sign-in form and,
 * for a user with a second factor, a code form), `/oauth2/token` checks the verifier, the
 * redirect URI and the client, and answers with moto-issued tokens; `refresh_token` grants too.
 */
export async function startIdp(moto, p, { loginPage = false } = {}) {
  const codes = new Map();
  const seen = { authorize: [], token: [], logout: [], revoke: [], mfa: [] };
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://idp');
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    const html = (status, title, inner) =>
      send(status, `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${inner}</body></html>`, { 'content-type': 'text/html; charset=utf-8' });
    // With `loginPage`, the hosted UI's sign-in form: the user's name and password, checked
    // by moto's Cognito, then the code.
    // A user with a second factor gets the code form next, its answer checked by moto's Cognito
    // (a challenge and its response, as the hosted UI makes them).
    let q;
    let signedIn;
    const hidden = (v) => String(v).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
    const form = async () => {
      let body = '';
      for await (const chunk of req) body += chunk;
      return Object.fromEntries(new URLSearchParams(body));
    };
    if (url.pathname === '/login' && req.method === 'POST' && loginPage) {
      const f = await form();
      q = JSON.parse(f.q);
      let r;
      try {
        r = await cognito(moto, 'AdminInitiateAuth', { UserPoolId: p.id, ClientId: p.clientId, AuthFlow: 'ADMIN_USER_PASSWORD_AUTH', AuthParameters: { USERNAME: f.username, PASSWORD: f.password } });
      } catch {
        return html(401, 'Incorrect username or password', '');
      }
      if (r.ChallengeName === 'SOFTWARE_TOKEN_MFA') {
        seen.mfa.push({ challenge: r.ChallengeName });
        return html(200, 'Authenticator code', `<form method="post" action="/mfa"><input type="hidden" name="q" value="${hidden(f.q)}"><input type="hidden" name="username" value="${hidden(f.username)}"><input type="hidden" name="session" value="${hidden(r.Session)}"><label>Code <input name="code" inputmode="numeric" autocomplete="one-time-code"></label><button type="submit">Sign in</button></form>`);
      }
      signedIn = r.AuthenticationResult;
    } else if (url.pathname === '/mfa' && req.method === 'POST' && loginPage) {
      const f = await form();
      q = JSON.parse(f.q);
      try {
        const r = await cognito(moto, 'AdminRespondToAuthChallenge', {
          UserPoolId: p.id,
          ClientId: p.clientId,
          ChallengeName: 'SOFTWARE_TOKEN_MFA',
          Session: f.session,
          ChallengeResponses: { USERNAME: f.username, SOFTWARE_TOKEN_MFA_CODE: f.code },
        });
        signedIn = r.AuthenticationResult;
        seen.mfa.push({ code: 'accepted' });
      } catch {
        seen.mfa.push({ code: 'refused' });
        return html(401, 'Incorrect code', '');
      }
    } else if (url.pathname === '/oauth2/authorize') {
      q = Object.fromEntries(url.searchParams);
      seen.authorize.push(q);
      if (q.client_id !== p.clientId || q.code_challenge_method !== 'S256' || !q.code_challenge) return send(400, { error: 'invalid_request' });
      if (loginPage) {
        return html(200, 'Sign in', `<form method="post" action="/login"><input type="hidden" name="q" value="${hidden(JSON.stringify(q))}"><label>Username <input name="username" autocomplete="username"></label><label>Password <input name="password" type="password" autocomplete="current-password"></label><button type="submit">Sign in</button></form>`);
      }
    }
    if (q) {
      const code = `code-${codes.size + 1}`;
      codes.set(code, { ...q, signedIn });
      const back = new URL(q.redirect_uri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.state);
      return send(302, '', { location: back.toString() });
    }
    if (url.pathname === '/oauth2/token' && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const f = Object.fromEntries(new URLSearchParams(body));
      seen.token.push(f);
      if (f.client_id !== p.clientId) return send(400, { error: 'invalid_client' });
      if (f.grant_type === 'authorization_code') {
        const grant = codes.get(f.code);
        codes.delete(f.code);
        const challenge = f.code_verifier && createHash('sha256').update(f.code_verifier).digest('base64url');
        if (!grant || grant.redirect_uri !== f.redirect_uri || challenge !== grant.code_challenge) return send(400, { error: 'invalid_grant' });
        // The tokens of the sign-in the code stands for (with its second factor), or, without
        // the sign-in page, the user's.
        const t = grant.signedIn ?? (await tokens(moto, p));
        return send(200, { id_token: t.IdToken, access_token: t.AccessToken, refresh_token: cognitoRefresh(t.RefreshToken), token_type: 'Bearer', expires_in: 3600 });
      }
      if (f.grant_type === 'refresh_token') {
        try {
          const r = await cognito(moto, 'AdminInitiateAuth', {
            UserPoolId: p.id,
            ClientId: p.clientId,
            AuthFlow: 'REFRESH_TOKEN_AUTH',
            AuthParameters: { REFRESH_TOKEN: unwrapRefresh(f.refresh_token) },
          });
          return send(200, { id_token: r.AuthenticationResult.IdToken, access_token: r.AuthenticationResult.AccessToken, token_type: 'Bearer' });
        } catch {
          return send(400, { error: 'invalid_grant' });
        }
      }
      return send(400, { error: 'unsupported_grant_type' });
    }
    // Revocation (RFC 7009 as Cognito serves it): the client's refresh token stops working.
    if (url.pathname === '/oauth2/revoke' && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const f = Object.fromEntries(new URLSearchParams(body));
      seen.revoke.push(f);
      return f.client_id === p.clientId ? send(200, '') : send(400, { error: 'invalid_client' });
    }
    if (url.pathname === '/logout') {
      seen.logout.push(Object.fromEntries(url.searchParams));
      return send(302, '', { location: url.searchParams.get('logout_uri') });
    }
    send(404, { error: 'not found' });
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}`, server, seen };
}

/** A viewer-request event as CloudFront sends it. */
export function viewerEvent(uri, { querystring = '', cookies = [] } = {}) {
  const headers = { host: [{ key: 'Host', value: HOST }] };
  if (cookies.length) headers.cookie = [{ key: 'Cookie', value: cookies.join('; ') }];
  return {
    Records: [{ cf: { config: { distributionDomainName: HOST, eventType: 'viewer-request', requestId: 'test' }, request: { clientIp: '203.0.113.9', method: 'GET', uri, querystring, headers } } }],
  };
}

/** The `name=value` pairs a response sets, and each cookie's attributes as written. */
export function setCookies(res) {
  const out = {};
  for (const { value } of res.headers?.['set-cookie'] ?? []) {
    const [pair, ...attrs] = value.split(';').map((s) => s.trim());
    const i = pair.indexOf('=');
    out[pair.slice(0, i)] = { value: pair.slice(i + 1), attrs };
  }
  return out;
}

/**
 * An RS256 JWT signed with moto's Cognito key. moto ships only n, e and d (no CRT primes, which
 * WebCrypto and OpenSSL need to import a private key), so this signs as RFC 8017 defines it:
 * PKCS #1 v1.5 padding of the SHA-256 DigestInfo, raised to d modulo n.
 */
export function motoSign(jwk, header, payload) {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const int = (b64) => BigInt(`0x${Buffer.from(b64, 'base64url').toString('hex')}`);
  const [n, d] = [int(jwk.n), int(jwk.d)];
  const k = Buffer.from(jwk.n, 'base64url').length;
  const digestInfo = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), createHash('sha256').update(input).digest()]);
  const em = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(k - digestInfo.length - 3, 0xff), Buffer.from([0]), digestInfo]);
  let base = BigInt(`0x${em.toString('hex')}`) % n;
  let exp = d;
  let s = 1n;
  while (exp > 0n) {
    if (exp & 1n) s = (s * base) % n;
    base = (base * base) % n;
    exp >>= 1n;
  }
  const sig = Buffer.from(s.toString(16).padStart(k * 2, '0'), 'hex');
  return `${input}.${sig.toString('base64url')}`;
}
