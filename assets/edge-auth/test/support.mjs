// support.mjs: the edge function's peers in tests: moto (its Cognito makes the pool, the client,
// the user and signs their tokens; it serves the pool's keys), a small identity provider
// playing the hosted UI's /oauth2/authorize, /oauth2/token and /logout (moto answers 500
// there), and CloudFront events shaped as CloudFront sends them.

import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
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

/** moto on a free port, stopped when the process ends. */
export async function startMoto() {
  const port = await freePort();
  const bin = motoBinary();
  const child = spawn(bin, ['-p', String(port)], { stdio: 'ignore' });
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

/** A pool with a public code-flow client (PKCE, no secret) and a user with a password. */
export async function pool(moto, name) {
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
  return { id: UserPool.Id, clientId: UserPoolClient.ClientId, username, password, issuer, jwks };
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
 * back with a code (the user "signs in" at once, or, with `loginPage`, through a sign-in form), `/oauth2/token` checks the verifier, the
 * redirect URI and the client, and answers with moto-issued tokens; `refresh_token` grants too.
 */
export async function startIdp(moto, p, { loginPage = false } = {}) {
  const codes = new Map();
  const seen = { authorize: [], token: [], logout: [], revoke: [] };
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
    let q;
    if (url.pathname === '/login' && req.method === 'POST' && loginPage) {
      let body = '';
      for await (const chunk of req) body += chunk;
      const f = Object.fromEntries(new URLSearchParams(body));
      q = JSON.parse(f.q);
      try {
        await cognito(moto, 'AdminInitiateAuth', { UserPoolId: p.id, ClientId: p.clientId, AuthFlow: 'ADMIN_USER_PASSWORD_AUTH', AuthParameters: { USERNAME: f.username, PASSWORD: f.password } });
      } catch {
        return html(401, 'Incorrect username or password', '');
      }
    } else if (url.pathname === '/oauth2/authorize') {
      q = Object.fromEntries(url.searchParams);
      seen.authorize.push(q);
      if (q.client_id !== p.clientId || q.code_challenge_method !== 'S256' || !q.code_challenge) return send(400, { error: 'invalid_request' });
      if (loginPage) {
        const hidden = JSON.stringify(q).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
        return html(200, 'Sign in', `<form method="post" action="/login"><input type="hidden" name="q" value="${hidden}"><label>Username <input name="username" autocomplete="username"></label><label>Password <input name="password" type="password" autocomplete="current-password"></label><button type="submit">Sign in</button></form>`);
      }
    }
    if (q) {
      const code = `code-${codes.size + 1}`;
      codes.set(code, q);
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
        const t = await tokens(moto, p);
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
