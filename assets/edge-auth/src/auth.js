// auth.js: the FinOps site's login at the edge: a viewer-request handler that lets a request
// through only with a valid Cognito ID token (RS256 against the pool's keys, baked in at
// deploy), runs the authorization code flow with PKCE and a signed, timestamped, browser-bound
// state, refreshes, signs out; and an origin-response handler that adds the security headers.
// Lambda@Edge has no environment: everything comes from the `config` baked into the package.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';

/** Cookie names: `__Host-` makes the browser refuse them unless Secure, Path=/ and host-only. */
export const COOKIES = {
  id: '__Host-finops-id',
  refresh: '__Host-finops-refresh',
  // The flow's own: the nonce the state must carry and the PKCE verifier, for one login.
  nonce: '__Host-finops-nonce',
  verifier: '__Host-finops-pkce',
};

/** How long a login may take from the redirect to the callback. */
const STATE_TTL_S = 600;
/** An unknown key id refetches the pool's keys at most this often (a forged `kid` cannot make
 * every request a fetch). */
const JWKS_REFETCH_S = 300;

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** The security headers every response of the site carries (origin-response). */
export const SECURITY_HEADERS = {
  'strict-transport-security': 'max-age=63072000; includeSubDomains; preload',
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'strict-origin-when-cross-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

/**
 * The path to return to after a login, or `/`: only a path on this site. Refuses what a browser
 * would read as another host (`//evil`, `/\evil`, a scheme), also once percent-decoded, and
 * control characters.
 */
export function safeReturnPath(raw) {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 2048) return '/';
  let decoded = raw;
  for (let i = 0; i < 3; i++) {
    let next;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      return '/';
    }
    if (next === decoded) break;
    decoded = next;
  }
  for (const p of [raw, decoded]) {
    if (!p.startsWith('/') || p.startsWith('//') || p.includes('\\') || /[\u0000-\u001f\u007f]/.test(p)) return '/';
  }
  const base = 'https://site.invalid';
  const url = new URL(raw, base);
  if (url.origin !== base) return '/';
  // Judged as it will be sent: resolving dot segments can make a path another host's
  // (`/.//evil.example`, `/a/..//evil.example` resolve to `//evil.example`).
  const out = url.pathname + url.search;
  if (out.startsWith('//') || out.includes('\\')) return '/';
  return out;
}

/**
 * Whether a refresh cookie has the shape of Cognito's refresh tokens (a JWE in compact form:
 * five base64url parts, its header naming `alg` and `enc`): anything else is never sent to the
 * token endpoint, so unauthenticated requests cannot spend Cognito's quota and the function's time.
 */
export function refreshShaped(raw) {
  if (typeof raw !== 'string' || raw.length < 100 || raw.length > 8192) return false;
  const parts = raw.split('.');
  if (parts.length !== 5 || parts.some((x) => !/^[A-Za-z0-9_-]+$/.test(x))) return false;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    return typeof header.alg === 'string' && typeof header.enc === 'string';
  } catch {
    return false;
  }
}

/** The cookies of a CloudFront request, by name (the first value wins). */
function cookiesOf(request) {
  const out = {};
  for (const h of request.headers.cookie ?? []) {
    for (const part of h.value.split(';')) {
      const i = part.indexOf('=');
      if (i < 0) continue;
      const name = part.slice(0, i).trim();
      if (!(name in out)) out[name] = part.slice(i + 1).trim();
    }
  }
  return out;
}

function setCookie(name, value, maxAge) {
  return `${name}=${value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${maxAge}`;
}

/** A CloudFront-generated response. */
function response(status, headers, cookies = [], body = '') {
  const h = { 'cache-control': [{ key: 'Cache-Control', value: 'no-store' }] };
  for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = [{ key: k, value: v }];
  if (cookies.length) h['set-cookie'] = cookies.map((value) => ({ key: 'Set-Cookie', value }));
  return { status: String(status), statusDescription: status === 302 ? 'Found' : 'Bad Request', headers: h, body };
}

function redirect(location, cookies = []) {
  return response(302, { Location: location }, cookies);
}

/**
 * The viewer-request handler for `config`:
 * `{ issuer, clientId, authDomain, jwks, stateKey }` (`authDomain`: the hosted UI's origin;
 * `stateKey`: base64 HMAC key made at deploy). `deps.fetch` is the HTTP client (the token
 * endpoint, a refetch of the keys), `deps.now` the clock in seconds.
 */
export function viewerRequest(config, deps = {}) {
  const fetchFn = deps.fetch ?? fetch;
  const now = deps.now ?? (() => Math.floor(Date.now() / 1000));
  const stateKey = Buffer.from(config.stateKey, 'base64');
  if (stateKey.length < 32) throw new Error('config.stateKey must be at least 32 bytes');
  let keys = createLocalJWKSet(config.jwks);
  let lastRefetch = 0;

  async function verifyId(token) {
    // jose checks the signature against the pool's keys only, RS256 only (no `none`, no HS256
    // with the public key), and exp/nbf against the clock; the rest is checked here.
    const options = { issuer: config.issuer, audience: config.clientId, algorithms: ['RS256'], currentDate: new Date(now() * 1000) };
    let result;
    try {
      result = await jwtVerify(token, keys, options);
    } catch (e) {
      if (e?.code !== 'ERR_JWKS_NO_MATCHING_KEY' || now() - lastRefetch < JWKS_REFETCH_S) throw e;
      lastRefetch = now();
      const r = await fetchFn(`${config.issuer}/.well-known/jwks.json`);
      if (!r.ok) throw e;
      keys = createLocalJWKSet(await r.json());
      result = await jwtVerify(token, keys, options);
    }
    if (result.payload.token_use !== 'id') throw new Error('not an ID token');
    return result.payload;
  }

  function sign(payload) {
    return b64url(createHmac('sha256', stateKey).update(payload).digest());
  }

  /** `{ n, t, r }` of a state this function made, or null. */
  function readState(state) {
    if (typeof state !== 'string') return null;
    const [payload, mac, extra] = state.split('.');
    if (!payload || !mac || extra !== undefined) return null;
    const want = Buffer.from(sign(payload));
    const got = Buffer.from(mac);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return null;
    try {
      const s = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
      if (typeof s.n !== 'string' || typeof s.t !== 'number' || typeof s.r !== 'string') return null;
      if (now() - s.t > STATE_TTL_S || s.t - now() > 60) return null;
      return s;
    } catch {
      return null;
    }
  }

  function login(host, returnPath, extraCookies = []) {
    const nonce = b64url(randomBytes(16));
    const verifier = b64url(randomBytes(32));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const payload = b64url(JSON.stringify({ n: nonce, t: now(), r: safeReturnPath(returnPath) }));
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: config.clientId,
      redirect_uri: `https://${host}/callback`,
      scope: 'openid email',
      state: `${payload}.${sign(payload)}`,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    return redirect(`${config.authDomain}/oauth2/authorize?${q}`, [
      setCookie(COOKIES.nonce, nonce, STATE_TTL_S),
      setCookie(COOKIES.verifier, verifier, STATE_TTL_S),
      ...extraCookies,
    ]);
  }

  async function token(form) {
    const r = await fetchFn(`${config.authDomain}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: config.clientId, ...form }).toString(),
    });
    if (!r.ok) throw new Error(`token endpoint answered ${r.status}`);
    return r.json();
  }

  const clear = (name) => setCookie(name, '', 0);
  const refused = (why) =>
    response(400, { 'Content-Type': 'text/plain; charset=utf-8' }, [clear(COOKIES.nonce), clear(COOKIES.verifier)], `Login refused: ${why}. Open the site again to sign in.`);

  async function callback(request, host, cookies) {
    const q = new URLSearchParams(request.querystring ?? '');
    const state = readState(q.get('state'));
    // Bound to this browser and used once: the nonce cookie is cleared by the answer.
    if (!state || !cookies[COOKIES.nonce] || state.n !== cookies[COOKIES.nonce]) return refused('the state is missing, forged, expired or used');
    const code = q.get('code');
    const verifier = cookies[COOKIES.verifier];
    if (!code || !verifier) return refused('no code');
    let tokens;
    try {
      tokens = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: `https://${host}/callback` });
      await verifyId(tokens.id_token);
    } catch {
      return refused('the identity provider did not confirm the login');
    }
    const cookiesOut = [setCookie(COOKIES.id, tokens.id_token, 30 * 24 * 3600), clear(COOKIES.nonce), clear(COOKIES.verifier)];
    if (tokens.refresh_token) cookiesOut.push(setCookie(COOKIES.refresh, tokens.refresh_token, 30 * 24 * 3600));
    return redirect(safeReturnPath(state.r), cookiesOut);
  }

  return async function handler(event) {
    const request = event.Records[0].cf.request;
    const host = request.headers.host?.[0]?.value;
    if (!host) return response(400, { 'Content-Type': 'text/plain' }, [], 'No host');
    const cookies = cookiesOf(request);
    const here = request.uri + (request.querystring ? `?${request.querystring}` : '');
    if (request.uri === '/callback') return callback(request, host, cookies);
    if (request.uri === '/signout') {
      // The refresh token is revoked, so a copy of the cookie stops working too (best effort:
      // the cookies are cleared whatever Cognito answers).
      const refresh = cookies[COOKIES.refresh];
      if (refreshShaped(refresh)) {
        try {
          await fetchFn(`${config.authDomain}/oauth2/revoke`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ token: refresh, client_id: config.clientId }).toString(),
          });
        } catch {
          // Cognito unreachable: the token expires on its own.
        }
      }
      const q = new URLSearchParams({ client_id: config.clientId, logout_uri: `https://${host}/` });
      return redirect(`${config.authDomain}/logout?${q}`, [clear(COOKIES.id), clear(COOKIES.refresh)]);
    }
    if (cookies[COOKIES.id]) {
      try {
        await verifyId(cookies[COOKIES.id]);
        // The site never sees the tokens.
        delete request.headers.cookie;
        return request;
      } catch {
        // Expired or not ours: refresh below, or log in again.
      }
    }
    const refresh = cookies[COOKIES.refresh];
    if (refresh !== undefined) {
      if (refreshShaped(refresh)) {
        try {
          const tokens = await token({ grant_type: 'refresh_token', refresh_token: refresh });
          await verifyId(tokens.id_token);
          return redirect(safeReturnPath(here), [setCookie(COOKIES.id, tokens.id_token, 30 * 24 * 3600)]);
        } catch {
          // The refresh token was revoked or expired.
        }
      }
      // Refused, or never a token: cleared, so the next request does not try it again.
      return login(host, here, [clear(COOKIES.refresh)]);
    }
    return login(host, here);
  };
}

/** The origin-response handler: the site's security headers on every answer. */
export async function originResponse(event) {
  const res = event.Records[0].cf.response;
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) {
    res.headers[name] = [{ key: name.replace(/(^|-)([a-z])/g, (_, d, c) => d + c.toUpperCase()), value }];
  }
  return res;
}
