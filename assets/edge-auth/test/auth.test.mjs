// auth.test.mjs: the edge function against moto's Cognito (its tokens, its keys) and a played
// hosted UI: what passes, every token and state that must not, where a login may send the
// browser back to, cookie attributes, refresh, sign-out, the security headers, the bundle.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execFileSync } from 'node:child_process';
import { SignJWT, exportJWK } from 'jose';
import { COOKIES, SECURITY_HEADERS, originResponse, safeReturnPath, viewerRequest } from '../src/auth.js';
import { HOST, cognitoRefresh, motoSign, pool, setCookies, startIdp, startMoto, tokens, viewerEvent } from './support.mjs';

let moto, p, other, idp, config;
const stateKey = randomBytes(32).toString('base64');

before(async () => {
  moto = await startMoto();
  p = await pool(moto, 'finops');
  other = await pool(moto, 'elsewhere');
  idp = await startIdp(moto, p);
  config = { issuer: p.issuer, clientId: p.clientId, authDomain: idp.url, jwks: p.jwks, stateKey };
});

after(() => {
  idp?.server.close();
  moto?.child.kill();
});

/** The pool's keys are fetched from moto where the function would ask AWS. */
function motoFetch(counter = { n: 0 }) {
  return (url, init) => {
    const u = String(url);
    if (u.startsWith('https://cognito-idp.')) {
      counter.n++;
      return fetch(u.replace(/^https:\/\/cognito-idp\.[^/]+\.amazonaws\.com/, moto.url), init);
    }
    return fetch(u, init);
  };
}

const handler = (deps = {}) => viewerRequest(config, { fetch: motoFetch(), ...deps });
const passes = (r) => r.uri !== undefined && r.status === undefined;
const isLogin = (r) => r.status === '302' && r.headers.location[0].value.startsWith(`${idp.url}/oauth2/authorize?`);

/** A token signed with moto's own key, with these claims over a valid ID token's. */
async function signed(claims, header = {}) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { token_use: 'id', 'cognito:username': 'finops', iss: p.issuer, aud: p.clientId, iat: now - 10, exp: now + 3600, ...claims };
  return motoSign(moto.privateJwk, { alg: 'RS256', kid: moto.privateJwk.kid, ...header }, payload);
}

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

test('an ID token moto signed for this pool and client passes, and the site never sees it', async () => {
  const t = await tokens(moto, p);
  const r = await handler()(viewerEvent('/index.html', { cookies: [`${COOKIES.id}=${t.IdToken}`, 'theme=dark'] }));
  assert.ok(passes(r), JSON.stringify(r));
  assert.equal(r.headers.cookie, undefined);
});

test('forged, unsigned, confused, expired, early, foreign and access tokens are refused', async () => {
  const good = (await tokens(moto, p)).IdToken;
  const [h, body, sig] = good.split('.');
  const flipped = sig.slice(0, 10) + (sig[10] === 'A' ? 'B' : 'A') + sig.slice(11);
  const claims = JSON.parse(Buffer.from(body, 'base64url'));
  // HS256 keyed with the pool's public key (PEM, as a library reading keys as text would take
  // it): the classic algorithm confusion.
  const publicPem = createPublicKey({ key: p.jwks.keys[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  const hsInput = `${b64({ alg: 'HS256', kid: p.jwks.keys[0].kid })}.${body}`;
  const hs = `${hsInput}.${createHmac('sha256', publicPem).update(hsInput).digest('base64url')}`;
  const now = Math.floor(Date.now() / 1000);
  const foreignClient = await cognito_client();
  const cases = {
    'forged signature': `${h}.${body}.${flipped}`,
    'alg none': `${b64({ alg: 'none' })}.${body}.`,
    'HS256 with the public key as secret': hs,
    'payload changed': `${h}.${b64({ ...claims, 'cognito:username': 'admin' })}.${sig}`,
    expired: await signed({ exp: now - 60 }),
    'not yet valid': await signed({ nbf: now + 600 }),
    "another pool's": (await tokens(moto, other)).IdToken,
    "another client's": (await tokens(moto, p, foreignClient)).IdToken,
    'an access token': (await tokens(moto, p)).AccessToken,
    'an ID token claiming to be an access token': await signed({ token_use: 'access' }),
    garbage: 'not-a-jwt',
  };
  for (const [what, token] of Object.entries(cases)) {
    const r = await handler()(viewerEvent('/', { cookies: [`${COOKIES.id}=${token}`] }));
    assert.ok(isLogin(r), `${what}: ${JSON.stringify(r)}`);
  }
  // The test is able to fail: the same signing path with valid claims passes.
  assert.ok(passes(await handler()(viewerEvent('/', { cookies: [`${COOKIES.id}=${await signed({})}`] }))));
});

/** A second client of the same pool. */
async function cognito_client() {
  const { cognito } = await import('./support.mjs');
  const r = await cognito(moto, 'CreateUserPoolClient', {
    UserPoolId: p.id,
    ClientName: 'another',
    ExplicitAuthFlows: ['ALLOW_ADMIN_USER_PASSWORD_AUTH', 'ALLOW_REFRESH_TOKEN_AUTH'],
  });
  return r.UserPoolClient.ClientId;
}

/** The whole login as a browser goes through it: visit, hosted UI, callback, back. */
async function login(h, uri, querystring = '') {
  const first = await h(viewerEvent(uri, { querystring }));
  assert.ok(isLogin(first), JSON.stringify(first));
  const flow = setCookies(first);
  const atIdp = await fetch(first.headers.location[0].value, { redirect: 'manual' });
  assert.equal(atIdp.status, 302);
  const back = new URL(atIdp.headers.get('location'));
  assert.equal(`${back.origin}${back.pathname}`, `https://${HOST}/callback`);
  const cookies = [`${COOKIES.nonce}=${flow[COOKIES.nonce].value}`, `${COOKIES.verifier}=${flow[COOKIES.verifier].value}`];
  const done = await h(viewerEvent('/callback', { querystring: back.search.slice(1), cookies }));
  return { first, flow, back, cookies, done };
}

test('a login runs the code flow with PKCE and a signed state, and returns to the page asked for', async () => {
  const h = handler();
  const { first, flow, done } = await login(h, '/reports/march.html', 'view=service');
  const q = new URL(first.headers.location[0].value).searchParams;
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.equal(q.get('response_type'), 'code');
  assert.equal(q.get('redirect_uri'), `https://${HOST}/callback`);
  assert.equal(first.headers['cache-control'][0].value, 'no-store');
  for (const name of [COOKIES.nonce, COOKIES.verifier]) {
    assert.deepEqual(flow[name].attrs, ['Path=/', 'Secure', 'HttpOnly', 'SameSite=Lax', 'Max-Age=600'], name);
  }
  assert.equal(done.status, '302', JSON.stringify(done));
  assert.equal(done.headers.location[0].value, '/reports/march.html?view=service');
  const set = setCookies(done);
  for (const name of [COOKIES.id, COOKIES.refresh]) {
    assert.ok(name.startsWith('__Host-'), name);
    assert.deepEqual(set[name].attrs, ['Path=/', 'Secure', 'HttpOnly', 'SameSite=Lax', `Max-Age=${30 * 24 * 3600}`], name);
  }
  // The flow's cookies are cleared: the state cannot be used twice.
  assert.equal(set[COOKIES.nonce].attrs.at(-1), 'Max-Age=0');
  assert.equal(idp.seen.token.at(-1).code_verifier, flow[COOKIES.verifier].value);
  const after = await h(viewerEvent('/reports/march.html', { cookies: [`${COOKIES.id}=${set[COOKIES.id].value}`] }));
  assert.ok(passes(after));
});

test('a missing, forged, replayed, foreign or stale state is refused', async () => {
  const h = handler();
  const { back, cookies, done } = await login(h, '/');
  assert.equal(done.status, '302');
  const state = back.searchParams.get('state');
  const code = back.searchParams.get('code');
  const call = (qs, c = cookies, hh = h) => hh(viewerEvent('/callback', { querystring: qs, cookies: c }));
  const refused = (r, what) => assert.equal(r.status, '400', `${what}: ${JSON.stringify(r)}`);
  refused(await call(`code=${code}`), 'missing');
  const [payload, mac] = state.split('.');
  const s = JSON.parse(Buffer.from(payload, 'base64url'));
  refused(await call(`code=${code}&state=${b64({ ...s, r: 'https://evil.example' })}.${mac}`), 'forged payload');
  refused(await call(`code=${code}&state=${payload}.${mac.slice(0, -2)}AA`), 'forged signature');
  // Replayed: the browser no longer holds the nonce the answer cleared.
  refused(await call(`code=${code}&state=${state}`, [cookies[1]]), 'replayed');
  // Another browser's state: its nonce is not this one's.
  const second = await login(h, '/');
  refused(await call(`code=${code}&state=${state}`, second.cookies), "another login's nonce");
  // Stale: ten minutes and more after the redirect.
  const later = viewerRequest(config, { fetch: motoFetch(), now: () => Math.floor(Date.now() / 1000) + 700 });
  refused(await call(`code=${code}&state=${state}`, cookies, later), 'expired');
});

test('after a login the browser goes back only to a path of this site', async () => {
  const evil = ['//evil.example', '//evil.example/x', '/\\evil.example', '/%2F%2Fevil.example', '/%2f/evil.example', '/%5Cevil.example', '/%252F%252Fevil.example', '/%09/evil.example',
    // Dot segments that resolve to another host.
    '/.//evil.example', '/%2e//evil.example', '/a/..//evil.example', '/./%2e//evil.example'];
  for (const uri of evil) {
    const { done } = await login(handler(), uri);
    assert.equal(done.headers.location[0].value, '/', uri);
  }
  for (const raw of [...evil, 'https://evil.example', 'HTTPS://evil.example/', 'javascript:alert(1)', '', '/ok\r\nSet-Cookie: x=1']) {
    assert.equal(safeReturnPath(raw), '/', raw);
  }
  assert.equal(safeReturnPath('/a/b.html?x=1&y=%2F'), '/a/b.html?x=1&y=%2F');
});

test('an expired ID token is renewed with the refresh token; a revoked one means a new login', async () => {
  const t = await tokens(moto, p);
  const refresh = cognitoRefresh(t.RefreshToken);
  const expired = await signed({ exp: Math.floor(Date.now() / 1000) - 5 });
  const r = await handler()(viewerEvent('/daily.html', { cookies: [`${COOKIES.id}=${expired}`, `${COOKIES.refresh}=${refresh}`] }));
  assert.equal(r.status, '302', JSON.stringify(r));
  assert.equal(r.headers.location[0].value, '/daily.html');
  const fresh = setCookies(r)[COOKIES.id].value;
  assert.ok(passes(await handler()(viewerEvent('/daily.html', { cookies: [`${COOKIES.id}=${fresh}`] }))));
  // The refresh branch returns only to this site, dot segments resolved.
  for (const uri of ['/.//evil.example', '/a/..//evil.example']) {
    const r = await handler()(viewerEvent(uri, { cookies: [`${COOKIES.id}=${expired}`, `${COOKIES.refresh}=${refresh}`] }));
    assert.equal(r.headers.location[0].value, '/', uri);
  }
  // Refused by Cognito: a new login, and the cookie cleared.
  const revoked = cognitoRefresh('00000000-0000-0000-0000-000000000000');
  const gone = await handler()(viewerEvent('/daily.html', { cookies: [`${COOKIES.id}=${expired}`, `${COOKIES.refresh}=${revoked}`] }));
  assert.ok(isLogin(gone));
  assert.equal(setCookies(gone)[COOKIES.refresh].attrs.at(-1), 'Max-Age=0');
});

test('a refresh cookie not shaped like a Cognito token never reaches the token endpoint, and is cleared', async () => {
  const before = idp.seen.token.length;
  for (const forged of ['revoked', 'a.b.c.d.e', 'x'.repeat(9000), `${'A'.repeat(60)}.${'B'.repeat(60)}.C.D.E`]) {
    const r = await handler()(viewerEvent('/daily.html', { cookies: [`${COOKIES.refresh}=${forged}`] }));
    assert.ok(isLogin(r), forged.slice(0, 20));
    assert.equal(setCookies(r)[COOKIES.refresh].attrs.at(-1), 'Max-Age=0', forged.slice(0, 20));
  }
  assert.equal(idp.seen.token.length, before, 'no call to the token endpoint');
});

test('sign-out revokes the refresh token, clears the session and ends it at Cognito', async () => {
  const refresh = cognitoRefresh((await tokens(moto, p)).RefreshToken);
  const revoked = idp.seen.revoke.length;
  const r = await handler()(viewerEvent('/signout', { cookies: [`${COOKIES.refresh}=${refresh}`] }));
  assert.deepEqual(idp.seen.revoke.slice(revoked), [{ token: refresh, client_id: p.clientId }]);
  const to = new URL(r.headers.location[0].value);
  assert.equal(`${to.origin}${to.pathname}`, `${idp.url}/logout`);
  assert.equal(to.searchParams.get('logout_uri'), `https://${HOST}/`);
  assert.equal(to.searchParams.get('client_id'), p.clientId);
  const set = setCookies(r);
  assert.equal(set[COOKIES.id].attrs.at(-1), 'Max-Age=0');
  assert.equal(set[COOKIES.refresh].attrs.at(-1), 'Max-Age=0');
});

test('the pool keys are fetched again only for an unknown key id, and not for every forged one', async () => {
  const counter = { n: 0 };
  const h = viewerRequest({ ...config, jwks: { keys: [] } }, { fetch: motoFetch(counter) });
  const t = await tokens(moto, p);
  assert.ok(passes(await h(viewerEvent('/', { cookies: [`${COOKIES.id}=${t.IdToken}`] }))));
  assert.equal(counter.n, 1);
  assert.ok(passes(await h(viewerEvent('/', { cookies: [`${COOKIES.id}=${t.IdToken}`] }))));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = await new SignJWT({ token_use: 'id' })
    .setProtectedHeader({ alg: 'RS256', kid: 'not-the-pools' })
    .setIssuer(p.issuer)
    .setAudience(p.clientId)
    .setExpirationTime('1h')
    .sign(privateKey);
  for (let i = 0; i < 3; i++) assert.ok(isLogin(await h(viewerEvent('/', { cookies: [`${COOKIES.id}=${stranger}`] }))));
  assert.equal(counter.n, 1, 'no refetch within five minutes of the last');
  assert.ok((await exportJWK(privateKey)).d, 'the stranger key is a real one');
});

test('every origin response carries the security headers', async () => {
  const res = await originResponse({ Records: [{ cf: { config: { eventType: 'origin-response' }, response: { status: '200', headers: { 'content-type': [{ key: 'Content-Type', value: 'text/html' }] } } } }] });
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers[name][0].value, value);
  assert.match(res.headers['content-security-policy'][0].value, /frame-ancestors 'none'/);
  assert.equal(res.headers['strict-transport-security'][0].key, 'Strict-Transport-Security');
  assert.equal(res.headers['content-type'][0].value, 'text/html');
});

test('the bundle is one file under the 1 MB viewer-request limit, reads the config.json beside it and serves both events', async () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const out = mkdtempSync(join(tmpdir(), 'edge-bundle-'));
  try {
    const cfg = join(out, 'config.json');
    writeFileSync(cfg, JSON.stringify(config));
    const started = process.hrtime.bigint();
    execFileSync(process.execPath, [join(here, '..', 'build.mjs'), out]);
    const buildMs = Number(process.hrtime.bigint() - started) / 1e6;
    const size = statSync(join(out, 'index.mjs')).size;
    assert.ok(size < 1024 * 1024, `${size} bytes`);
    const mod = await import(pathToFileURL(join(out, 'index.mjs')).href);
    const t = await tokens(moto, p);
    const event = viewerEvent('/', { cookies: [`${COOKIES.id}=${t.IdToken}`] });
    event.Records[0].cf.config.eventType = 'viewer-request';
    let t0 = process.hrtime.bigint();
    assert.ok(passes(await mod.handler(event)));
    const cold = Number(process.hrtime.bigint() - t0) / 1e6;
    t0 = process.hrtime.bigint();
    const n = 200;
    for (let i = 0; i < n; i++) await mod.handler(viewerEvent('/', { cookies: [`${COOKIES.id}=${t.IdToken}`] }));
    const warm = Number(process.hrtime.bigint() - t0) / 1e6 / n;
    const res = await mod.handler({ Records: [{ cf: { config: { eventType: 'origin-response' }, response: { status: '200', headers: {} } } }] });
    assert.ok(res.headers['x-content-type-options']);
    console.log(`edge-auth bundle: ${size} bytes (built in ${buildMs.toFixed(0)} ms); viewer-request with a valid token: first ${cold.toFixed(2)} ms, then ${warm.toFixed(3)} ms each`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
