// site.test.mjs: the FinOps dashboard in Debian's headless Chromium, served by a local harness
// as CloudFront would serve it: every request goes through the bundled edge function
// (viewer-request and origin-response events shaped as CloudFront sends them), the files come
// from the site `provisioner cost stacks/prod.toml --site` generates, sign-in goes through a
// played hosted UI whose forms moto's Cognito checks: the password, then the authenticator's
// code (TOTP, required as in prod). Measures the page's weight and first render.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:https';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { join, dirname, extname } from 'node:path';
import { tmpdir, homedir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { startMoto, pool, startIdp, totp, freshTotp } from '../../edge-auth/test/support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const work = mkdtempSync(join(tmpdir(), 'finops-site-'));
let moto, p, idp, server, origin, browser, edge;

/** The provisioner the test suite built (PROVISIONER_BIN, or the debug build in the cache). */
function provisioner() {
  const bin = process.env.PROVISIONER_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache/quake-target'), 'debug', 'provisioner');
  if (!existsSync(bin)) throw new Error(`no provisioner at ${bin}: build it (cargo build -p provisioner) or set PROVISIONER_BIN`);
  return bin;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** CloudFront's headers as Lambda@Edge sees them: lowercase name -> [{ key, value }]. */
const cf = (headers) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), (Array.isArray(v) ? v : [v]).map((value) => ({ key: k, value }))]));

function reply(res, r, body) {
  const headers = {};
  for (const [name, list] of Object.entries(r.headers ?? {})) headers[name] = name === 'set-cookie' ? list.map((h) => h.value) : list[0].value;
  res.writeHead(Number(r.status), headers);
  res.end(body ?? r.body ?? '');
}

before(async () => {
  // The site, generated from the production stack's own cost.
  const site = join(work, 'site');
  execFileSync(provisioner(), ['cost', 'stacks/prod.toml', '--site', site], { cwd: root, stdio: 'ignore' });
  // A second factor required, as prod's `finops_mfa = "on"`: moto's Cognito checks the codes.
  moto = await startMoto({ totp: true });
  p = await pool(moto, 'finops-browser', { mfa: true });
  idp = await startIdp(moto, p, { loginPage: true });
  // The edge function as deployed: the bundle and the config.json the provisioner zips beside it.
  const bundle = join(work, 'edge');
  execFileSync(process.execPath, [join(root, 'assets/edge-auth/build.mjs'), bundle]);
  writeFileSync(
    join(bundle, 'config.json'),
    JSON.stringify({ issuer: p.issuer, clientId: p.clientId, authDomain: idp.url, jwks: p.jwks, stateKey: randomBytes(32).toString('base64') }),
  );
  edge = await import(pathToFileURL(join(bundle, 'index.mjs')).href);
  // HTTPS, as CloudFront: the session cookies are `__Host-` and Secure.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem')], { stdio: 'ignore' });
  server = createServer({ key: readFileSync(join(work, 'key.pem')), cert: readFileSync(join(work, 'cert.pem')) }, async (req, res) => {
    const url = new URL(req.url, 'https://localhost');
    const request = {
      method: req.method,
      uri: url.pathname,
      querystring: url.search.slice(1),
      headers: cf({ Host: req.headers.host, ...(req.headers.cookie ? { Cookie: req.headers.cookie } : {}) }),
    };
    const viewer = await edge.handler({ Records: [{ cf: { config: { eventType: 'viewer-request' }, request } }] });
    if (viewer.status) return reply(res, viewer);
    // The origin: the bucket, its default root object, S3's cache headers as published.
    const key = viewer.uri === '/' ? 'index.html' : viewer.uri.slice(1);
    const file = join(site, key);
    if (key.includes('..') || !existsSync(file)) return reply(res, { status: '403', headers: cf({ 'Content-Type': 'application/xml' }) }, '<Error><Code>AccessDenied</Code></Error>');
    const headers = { 'Content-Type': TYPES[extname(key)] ?? 'application/octet-stream', 'Cache-Control': key === 'index.html' ? 'public, max-age=60' : 'public, max-age=31536000, immutable' };
    const shown = await edge.handler({ Records: [{ cf: { config: { eventType: 'origin-response' }, request: viewer, response: { status: '200', headers: cf(headers) } } }] });
    reply(res, shown, readFileSync(file));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  origin = `https://localhost:${server.address().port}`;
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--ignore-certificate-errors', '--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  server?.close();
  idp?.server.close();
  moto?.child.kill();
  rmSync(work, { recursive: true, force: true });
});

/** A page in a fresh browser context, with the site's console errors and failed responses. */
async function open(options = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, ...options });
  const page = await context.newPage();
  const errors = [];
  // The site's own (the played sign-in page is not under test).
  page.on('console', (m) => m.type() === 'error' && m.location().url.startsWith(origin) && errors.push(`${m.text()} (${m.location().url})`));
  page.on('response', (r) => r.url().startsWith(origin) && r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));
  page.on('pageerror', (e) => errors.push(String(e)));
  return { context, page, errors };
}

/** Name and password, then the authenticator's code (`code` computes it from the secret). */
async function signIn(page, code = () => freshTotp(p.totpSecret)) {
  await page.goto(`${origin}/`);
  assert.ok(page.url().startsWith(`${idp.url}/oauth2/authorize`), `a visit without a session lands on the sign-in page, not ${page.url()}`);
  await page.fill('input[name=username]', p.username);
  await page.fill('input[name=password]', p.password);
  await Promise.all([page.waitForURL(`${idp.url}/login`), page.click('button[type=submit]')]);
  assert.equal(await page.textContent('h1'), 'Authenticator code', 'the second factor is asked for');
  await page.fill('input[name=code]', await code());
  await Promise.all([page.waitForURL((u) => u.href.startsWith(origin) || u.href.startsWith(`${idp.url}/mfa`)), page.click('button[type=submit]')]);
}

test('the authenticator codes match RFC 6238 and moto', () => {
  // RFC 6238 appendix B (SHA-1, the secret "12345678901234567890"), six digits as Cognito's.
  const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
  assert.deepEqual([59, 1111111109, 1234567890, 2000000000].map((t) => totp(secret, t * 1000)), ['287082', '081804', '005924', '279037']);
  // moto checked one when the user's authenticator was set up (VerifySoftwareToken).
  assert.ok(p.totpSecret.length >= 16);
});

test('a wrong authenticator code does not sign in', async () => {
  const { context, page } = await open();
  const wrong = async () => String((Number(await freshTotp(p.totpSecret)) + 1) % 1e6).padStart(6, '0');
  await signIn(page, wrong);
  assert.equal(await page.textContent('h1'), 'Incorrect code');
  assert.ok(!page.url().startsWith(origin), page.url());
  await page.goto(`${origin}/`);
  assert.ok(page.url().startsWith(`${idp.url}/oauth2/authorize`), 'still no session');
  await context.close();
});

const drawn = (page) => page.waitForSelector('body[data-drawn="3"]', { timeout: 10000 });

test('a visit without a session signs in with its second factor, returns to the dashboard with its charts drawn, and signs out', async () => {
  const { context, page, errors } = await open();
  const asked = idp.seen.mfa.length;
  await signIn(page);
  assert.equal(page.url(), `${origin}/`);
  assert.deepEqual(idp.seen.mfa.slice(asked), [{ challenge: 'SOFTWARE_TOKEN_MFA' }, { code: 'accepted' }], 'moto asked for the code and took it');
  await drawn(page);
  const charts = await page.evaluate(() => window.charts.map((c) => ({ type: c.config.type, points: c.data.datasets[0].data.length })));
  assert.deepEqual(charts.map((c) => c.type), ['doughnut', 'bar', 'line']);
  assert.ok(charts.every((c) => c.points > 0), JSON.stringify(charts));
  // Pixels on the canvases, not only chart objects.
  const inked = await page.evaluate(() =>
    [...document.querySelectorAll('canvas')].map((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n;
    }),
  );
  assert.ok(inked.every((n) => n > 500), `every chart painted: ${inked}`);
  const monthly = await page.textContent('#monthly');
  assert.match(monthly, /^\$\d/);
  const rows = await page.locator('#resources tbody tr').count();
  assert.ok(rows > 10, `${rows} resources listed`);
  // The headers the origin-response function adds, and a CSP the page keeps to.
  const res = await page.goto(`${origin}/`);
  assert.match(res.headers()['content-security-policy'], /frame-ancestors 'none'/);
  await drawn(page);
  assert.deepEqual(errors, [], 'no console error (a CSP violation would be one)');
  // Sign-out clears the session: the next visit is the sign-in page again.
  await Promise.all([page.waitForURL((u) => u.href.startsWith(`${idp.url}/oauth2/authorize`)), page.click('a.signout')]);
  assert.equal(idp.seen.logout.length, 1);
  await page.goto(`${origin}/`);
  assert.ok(page.url().startsWith(`${idp.url}/oauth2/authorize`), page.url());
  await context.close();
});

test('a forged session cookie gets the sign-in page', async () => {
  const { context, page } = await open();
  const forged = ['eyJhbGciOiJSUzI1NiIsImtpZCI6ImR1bW15In0', Buffer.from(JSON.stringify({ sub: 'x', token_use: 'id', iss: p.issuer, aud: p.clientId, exp: 4e9 })).toString('base64url'), 'c2ln'].join('.');
  await context.addCookies([{ name: '__Host-finops-id', value: forged, url: `${origin}/`, secure: true, httpOnly: true }]);
  await page.goto(`${origin}/`);
  assert.ok(page.url().startsWith(`${idp.url}/oauth2/authorize`), page.url());
  await context.close();
});

test('dark mode and a phone: dark colours, one column, nothing wider than the screen', async () => {
  const { context, page } = await open({ colorScheme: 'dark', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await signIn(page);
  await drawn(page);
  const look = await page.evaluate(() => {
    const bg = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
    const cards = [...document.querySelectorAll('.card')].map((c) => c.getBoundingClientRect().left);
    return { bg, overflow: document.documentElement.scrollWidth - window.innerWidth, columns: new Set(cards.map(Math.round)).size };
  });
  assert.ok(look.bg.slice(0, 3).every((c) => c < 60), `dark background ${look.bg}`);
  assert.equal(look.overflow, 0, 'no horizontal scrolling');
  assert.equal(look.columns, 1, 'one column');
  await context.close();
});

test('page weight and first render, measured', async () => {
  const { context, page } = await open();
  await signIn(page);
  await drawn(page);
  // A fresh load of the dashboard, signed in: every response's body, and paint timings.
  const bodies = new Map();
  page.on('response', async (r) => {
    try {
      bodies.set(r.url(), await r.body());
    } catch {
      // A redirect has no body.
    }
  });
  const t0 = Date.now();
  await page.reload();
  await drawn(page);
  const charted = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 200));
  const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
  const raw = [...bodies.values()].reduce((a, b) => a + b.length, 0);
  // What CloudFront sends with compression on (gzip; Brotli is smaller still).
  const gz = [...bodies.values()].reduce((a, b) => a + gzipSync(b).length, 0);
  assert.ok(gz > 0 && gz < 150 * 1024, `${gz} bytes compressed`);
  assert.ok(fcp > 0, 'a first contentful paint');
  console.log(`finops dashboard: ${bodies.size} requests, ${raw} bytes (${gz} gzipped); first contentful paint ${fcp.toFixed(0)} ms, charts drawn ${charted} ms after the reload`);
  await context.close();
});
