// app.js: the live map: loads events from /api/quakes, follows /api/stream, keeps map, list,
// filters and URL in step. Text from the feed is only ever set with textContent.

const L = window.L;
const HOUR = 3600e3;
const WINDOWS = { '1h': 1, '24h': 24, '7d': 168, '30d': 720 };
const DEPTH = [ // viridis, colour-blind safe, shallow = bright
  [10, '#fde725', '< 10 km'], [35, '#7ad151', '10–35'], [70, '#22a884', '35–70'],
  [150, '#2a788e', '70–150'], [300, '#414487', '150–300'], [Infinity, '#440154', '≥ 300 km'],
];
const AGE = [ // cividis-like ramp, newest = bright
  [1, '#ffe945', '< 1 h'], [6, '#d3c164', '1–6 h'], [24, '#a59c74', '6–24 h'],
  [168, '#7c7b78', '1–7 d'], [Infinity, '#414d6b', '> 7 d'],
];

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  window: WINDOWS[params.get('window')] ? params.get('window') : '24h',
  minmag: params.get('minmag') || '',
  color: params.get('color') === 'age' ? 'age' : 'depth',
  sort: params.get('sort') === 'mag' ? 'mag' : 'time',
  sel: params.get('sel') || null,
};
const quakes = new Map(); // unid -> { f, marker }
let hovered = null;
let loadedOnce = false;

function saveUrl() {
  const p = new URLSearchParams();
  p.set('window', state.window);
  if (state.minmag) p.set('minmag', state.minmag);
  if (state.color !== 'depth') p.set('color', state.color);
  if (state.sort !== 'time') p.set('sort', state.sort);
  if (state.sel) p.set('sel', state.sel);
  const c = map.getCenter();
  p.set('at', `${c.lat.toFixed(2)},${c.lng.toFixed(2)},${map.getZoom()}`);
  history.replaceState(null, '', `?${p}`);
}

// --- map -------------------------------------------------------------------------------
const at = (params.get('at') || '').split(',').map(Number);
const map = L.map('map', { worldCopyJump: true, minZoom: 1, maxZoom: 12, preferCanvas: false, attributionControl: true })
  .setView(at.length === 3 && at.every(Number.isFinite) ? [at[0], at[1]] : [20, 10], at.length === 3 && Number.isFinite(at[2]) ? at[2] : 2);
map.attributionControl.setPrefix(false);
map.createPane('land').style.zIndex = 200;
const quakeRenderer = L.svg({ padding: 0.5 });

async function basemap() {
  const cfg = await fetch('api/config').then((r) => r.json()).catch(() => ({}));
  if (cfg.tiles) {
    L.tileLayer(cfg.tiles, { attribution: cfg.tiles_attribution || '' }).addTo(map);
    return;
  }
  const topo = await fetch('vendor/countries-110m.json').then((r) => r.json());
  const land = window.topojson.feature(topo, topo.objects.countries);
  L.geoJSON(land, {
    pane: 'land', interactive: false, renderer: L.canvas({ pane: 'land' }),
    style: () => ({ color: getComputedStyle(document.documentElement).getPropertyValue('--border'), weight: 0.6,
      fillColor: getComputedStyle(document.documentElement).getPropertyValue('--land'), fillOpacity: 1 }),
  }).addTo(map);
  map.attributionControl.addAttribution('Natural Earth');
}
map.attributionControl.addAttribution('Data: EMSC-CSEM (CC BY 4.0)');

// --- symbols ---------------------------------------------------------------------------
const props = (f) => f.properties;
const timeOf = (f) => Date.parse(props(f).time);
const radius = (m) => (m == null ? 3 : Math.min(28, 2.5 + 1.6 * Math.pow(Math.max(0, m), 1.35)));
function colour(f) {
  if (state.color === 'age') {
    const h = (Date.now() - timeOf(f)) / HOUR;
    return AGE.find(([lim]) => h < lim)[1];
  }
  const d = props(f).depth;
  return DEPTH.find(([lim]) => d < lim)[1];
}
const recent = (f) => Date.now() - timeOf(f) < HOUR;
function style(f, highlight) {
  const r = recent(f);
  return {
    radius: radius(props(f).mag), fillColor: colour(f), fillOpacity: 0.8,
    color: highlight ? '#ff2d95' : r ? '#d55e00' : '#000', weight: highlight ? 4 : r ? 3 : 0.6, opacity: 0.9,
  };
}

function details(f) {
  const p = props(f);
  const box = document.createElement('div');
  box.className = 'details';
  const h = document.createElement('h2');
  h.textContent = `M${p.mag ?? '?'} ${p.magtype ?? ''} · ${p.flynn_region ?? ''}`;
  box.append(h);
  const dl = document.createElement('dl');
  const t = new Date(p.time);
  const rows = [
    ['Origin (UTC)', t.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')],
    ['Origin (local)', t.toLocaleString()],
    ['Magnitude', `${p.mag ?? 'unknown'} ${p.magtype ?? ''}`],
    ['Depth', `${p.depth} km`],
    ['Region', p.flynn_region ?? ''],
    ['Agency', p.auth ?? ''],
    ['Revised', new Date(p.lastupdate).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  }
  box.append(dl);
  const a = document.createElement('a');
  a.href = `https://www.seismicportal.eu/eventdetails.html?unid=${encodeURIComponent(p.unid)}`;
  a.rel = 'noopener'; a.target = '_blank';
  a.textContent = 'This event on EMSC';
  box.append(a);
  return box;
}

function matches(f) {
  const since = Date.now() - WINDOWS[state.window] * HOUR;
  const m = props(f).mag;
  return timeOf(f) >= since && (!state.minmag || (m != null && m >= Number(state.minmag)));
}

function upsert(f) {
  const unid = props(f).unid;
  const known = quakes.get(unid);
  if (!matches(f)) {
    if (known) { known.marker.remove(); quakes.delete(unid); }
    return false;
  }
  const [lon, lat] = f.geometry.coordinates;
  if (known) {
    known.f = f;
    known.marker.setLatLng([lat, lon]).setStyle(style(f, unid === state.sel || unid === hovered));
    if (known.marker.isPopupOpen()) known.marker.setPopupContent(details(f));
    return true;
  }
  const marker = L.circleMarker([lat, lon], { ...style(f, false), renderer: quakeRenderer, className: 'quake' });
  marker.bindPopup(() => details(quakes.get(unid).f));
  marker.on('click', () => select(unid, false));
  marker.on('mouseover', () => hover(unid));
  marker.on('mouseout', () => hover(null));
  marker.on('popupclose', () => { if (state.sel === unid) { state.sel = null; saveUrl(); renderList(); } });
  marker.addTo(map);
  marker.getElement()?.setAttribute('data-unid', unid);
  quakes.set(unid, { f, marker });
  return true;
}

/// Drops what the moving window left behind: a page open for hours must not keep showing
/// events older than the window it says it shows.
function expire() {
  let gone = false;
  for (const [unid, q] of quakes) {
    if (!matches(q.f)) { q.marker.remove(); quakes.delete(unid); gone = true; }
  }
  if (gone) renderList();
}

function restyle() {
  for (const [unid, q] of quakes) q.marker.setStyle(style(q.f, unid === state.sel || unid === hovered));
  legend();
}

function hover(unid) {
  const prev = hovered;
  hovered = unid;
  for (const u of [prev, unid]) {
    const q = u && quakes.get(u);
    if (q) { q.marker.setStyle(style(q.f, u === state.sel || u === hovered)); if (u === hovered) q.marker.bringToFront(); }
    const li = u && document.querySelector(`#list button[data-unid="${CSS.escape(u)}"]`);
    if (li) li.classList.toggle('hl', u === hovered || u === state.sel);
  }
}

function select(unid, pan) {
  state.sel = unid;
  saveUrl();
  const q = quakes.get(unid);
  if (!q) return;
  if (pan) map.panTo(q.marker.getLatLng());
  q.marker.openPopup();
  restyle();
  renderList();
}

// --- list ------------------------------------------------------------------------------
function renderList() {
  const bounds = map.getBounds();
  const rows = [...quakes.values()].filter((q) => bounds.contains(q.marker.getLatLng()));
  rows.sort(state.sort === 'mag'
    ? (a, b) => (props(b.f).mag ?? -9) - (props(a.f).mag ?? -9)
    : (a, b) => timeOf(b.f) - timeOf(a.f));
  const list = $('list');
  const frag = document.createDocumentFragment();
  for (const q of rows.slice(0, 500)) {
    const p = props(q.f);
    const li = document.createElement('li');
    if (recent(q.f)) li.className = 'recent';
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.unid = p.unid;
    if (p.unid === state.sel) b.classList.add('hl');
    const mag = document.createElement('span'); mag.className = 'mag'; mag.textContent = p.mag ?? '?';
    const where = document.createElement('span'); where.className = 'where'; where.textContent = p.flynn_region ?? '';
    const when = document.createElement('span'); when.className = 'when';
    when.textContent = `${new Date(p.time).toLocaleString()} · ${p.depth} km`;
    b.append(mag, where, when);
    b.addEventListener('click', () => select(p.unid, true));
    b.addEventListener('mouseenter', () => hover(p.unid));
    b.addEventListener('mouseleave', () => hover(null));
    b.addEventListener('focus', () => hover(p.unid));
    b.addEventListener('keydown', (e) => {
      const sib = e.key === 'ArrowDown' ? li.nextElementSibling : e.key === 'ArrowUp' ? li.previousElementSibling : null;
      if (sib) { e.preventDefault(); sib.querySelector('button').focus(); }
    });
    li.append(b);
    frag.append(li);
  }
  list.replaceChildren(frag);
  $('count').textContent = String(quakes.size);
  $('count').dataset.count = String(quakes.size);
}

function legend() {
  const el = $('legend');
  el.replaceChildren();
  const title = document.createElement('strong');
  title.textContent = state.color === 'age' ? 'Age' : 'Depth';
  el.append(title);
  for (const [, c, label] of state.color === 'age' ? AGE : DEPTH) {
    const s = document.createElement('span'); s.className = 'swatch'; s.style.background = c;
    el.append(s, document.createTextNode(label));
  }
  const size = document.createElement('div');
  size.textContent = 'Size: magnitude · orange ring: last hour';
  el.append(size);
}

// --- data ------------------------------------------------------------------------------
// Live changes that arrive while a list is being fetched are held and applied after it: the
// list may have been answered before them, and must not overwrite them. Only the newest of
// overlapping loads is applied, so a slow answer to an old filter never replaces a newer one.
let held = [];
let loadSeq = 0;

async function load() {
  const seq = ++loadSeq;
  held = held ?? [];
  const apply = (features) => {
    if (seq !== loadSeq) return;
    const live = held;
    held = null;
    if (features) {
      for (const { marker } of quakes.values()) marker.remove();
      quakes.clear();
      for (const f of features) upsert(f);
    }
    for (const f of live) upsert(f);
  };
  const q = new URLSearchParams({ window: state.window });
  if (state.minmag) q.set('minmagnitude', state.minmag);
  let fc;
  try {
    // no-cache: revalidate (a 304 when unchanged) instead of reusing a copy up to max-age old.
    const res = await fetch(`api/quakes?${q}`, { cache: 'no-cache' });
    if (!res.ok) throw new Error(`api/quakes: HTTP ${res.status}`);
    fc = await res.json();
  } catch (e) {
    apply(null);
    throw e;
  }
  if (seq !== loadSeq) return;
  apply(fc.features);
  loadedOnce = true;
  renderList();
  if (state.sel && quakes.has(state.sel)) select(state.sel, false);
  document.body.dataset.loaded = 'true';
}

function alertFor(f) {
  if (!$('alert-on').checked) return;
  const m = props(f).mag;
  if (m == null || m < Number($('alert-mag').value)) return;
  const text = `M${m} ${props(f).flynn_region ?? ''}`;
  if ($('alert-sound').checked) beep();
  if ($('alert-desktop').checked && 'Notification' in window && Notification.permission === 'granted') {
    new Notification('Earthquake', { body: text });
  }
}

function beep() {
  try {
    const ctx = new AudioContext();
    const o = ctx.createOscillator();
    const g = ctx.createGain();
    o.frequency.value = 880; g.gain.value = 0.1;
    o.connect(g).connect(ctx.destination);
    o.start(); o.stop(ctx.currentTime + 0.25);
  } catch { /* no audio: nothing to do */ }
}

/// Opens the stream; resolves on its first `hello`, when the server is subscribed and every
/// later change will come through it.
function connect() {
  const es = new EventSource('api/stream');
  const conn = $('conn');
  const set = (s, text) => { conn.dataset.state = s; conn.textContent = text; };
  const subscribed = new Promise((resolve) => es.addEventListener('hello', resolve, { once: true }));
  es.addEventListener('open', () => set('live', 'live'));
  es.addEventListener('error', () => set(es.readyState === EventSource.CLOSED ? 'offline' : 'connecting', es.readyState === EventSource.CLOSED ? 'offline' : 'reconnecting…'));
  const onChange = (kind) => (e) => {
    const f = JSON.parse(e.data);
    // A resuming stream repeats a few changes: only an event never seen before alerts.
    const isNew = !quakes.has(props(f).unid) && !(held ?? []).some((h) => props(h).unid === props(f).unid);
    if (held) {
      held.push(f);
      if (kind === 'created' && loadedOnce && isNew && matches(f)) alertFor(f);
      return;
    }
    const shown = upsert(f);
    if (shown && kind === 'created' && loadedOnce && isNew) alertFor(f);
    scheduleList();
  };
  es.addEventListener('created', onChange('created'));
  es.addEventListener('updated', onChange('updated'));
  // Too far behind to be told what was missed: reload the list.
  es.addEventListener('reset', () => load().catch(console.error));
  setInterval(() => { if (es.readyState === EventSource.CLOSED) { es.close(); connect(); } }, 10e3);
  return subscribed;
}

let listTimer = null;
function scheduleList() {
  if (listTimer) return;
  listTimer = setTimeout(() => { listTimer = null; renderList(); }, 150);
}

// --- controls --------------------------------------------------------------------------
function bindControls() {
  $('window').value = state.window;
  $('minmag').value = state.minmag;
  $('color').value = state.color;
  const sortButtons = () => {
    $('sort-time').setAttribute('aria-pressed', String(state.sort === 'time'));
    $('sort-mag').setAttribute('aria-pressed', String(state.sort === 'mag'));
  };
  sortButtons();
  $('window').addEventListener('change', (e) => { state.window = e.target.value; saveUrl(); load(); });
  $('minmag').addEventListener('change', (e) => { state.minmag = e.target.value; saveUrl(); load(); });
  $('color').addEventListener('change', (e) => { state.color = e.target.value; saveUrl(); restyle(); });
  $('sort-time').addEventListener('click', () => { state.sort = 'time'; sortButtons(); saveUrl(); renderList(); });
  $('sort-mag').addEventListener('click', () => { state.sort = 'mag'; sortButtons(); saveUrl(); renderList(); });
  $('alert-desktop').addEventListener('change', (e) => {
    if (e.target.checked && 'Notification' in window && Notification.permission === 'default') Notification.requestPermission();
  });
  map.on('moveend', () => { saveUrl(); renderList(); });
  // Ages and "last hour" rings drift with the clock, and the window moves with it.
  setInterval(() => { expire(); restyle(); }, 60e3);
}

bindControls();
legend();
basemap().catch(console.error);
// The list is fetched once the stream is subscribed (changes from then on are held until the
// list is in), or after 3 s without it, so a missing stream never leaves the map empty.
Promise.race([connect(), new Promise((r) => setTimeout(r, 3000))])
  .then(load)
  .catch((e) => { $('conn').textContent = String(e); });
window.quakeMap = { map, quakes, state, expire };
