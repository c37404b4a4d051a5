// app.js: the live map: loads events from /api/quakes, follows /api/stream, keeps map, list,
// filters, downloads and URL in step. Text from the feed is only ever set with textContent.

import { Alerts } from './alerts.js';
import { continuous, longestStep } from './land.js';
import { Lapse } from './lapse.js';
import { VirtualList } from './list.js';

const L = window.L;
const HOUR = 3600e3;
const WINDOWS = { '1h': 1, '24h': 24, '7d': 168, '30d': 720 };
const SORTS = { newest: 'time', oldest: 'time-asc', largest: 'magnitude', smallest: 'magnitude-asc' };
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
const pick = (v, allowed, dflt) => (allowed.includes(v) ? v : dflt);
const state = {
  window: WINDOWS[params.get('window')] ? params.get('window') : '24h',
  minmag: params.get('minmag') || '',
  color: params.get('color') === 'age' ? 'age' : 'depth',
  // `mag` is what earlier links carried for "largest first".
  sort: params.get('sort') === 'mag' ? 'largest' : pick(params.get('sort'), Object.keys(SORTS), 'newest'),
  inview: params.get('inview') !== '0',
  tz: params.get('tz') === 'utc' ? 'utc' : 'local',
  view: params.get('view') === 'heat' ? 'heat' : 'symbols',
  sel: params.get('sel') || null,
  lapse: null,
};
const quakes = new Map(); // unid -> { f, marker }
let hovered = null;
let loadedOnce = false;
const alerts = new Alerts(params, () => saveUrl());

function saveUrl() {
  const p = new URLSearchParams();
  p.set('window', state.window);
  if (state.minmag) p.set('minmag', state.minmag);
  if (state.color !== 'depth') p.set('color', state.color);
  if (state.sort !== 'newest') p.set('sort', state.sort);
  if (!state.inview) p.set('inview', '0');
  if (state.tz !== 'local') p.set('tz', state.tz);
  if (state.view !== 'symbols') p.set('view', state.view);
  if (state.sel) p.set('sel', state.sel);
  if (state.lapse != null) p.set('lapse', new Date(state.lapse).toISOString());
  if ($('lapse-speed').value !== '1') p.set('speed', $('lapse-speed').value);
  alerts.toParams(p);
  const c = map.getCenter();
  p.set('at', `${c.lat.toFixed(2)},${c.lng.toFixed(2)},${map.getZoom()}`);
  history.replaceState(null, '', `?${p}`);
}

// --- times -----------------------------------------------------------------------------
/** A moment in UTC or local time, the same form everywhere on the page. */
function fmtIn(ms, tz) {
  const d = new Date(ms);
  if (tz === 'utc') return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}
/** A moment in the time zone the page is set to. */
const fmt = (ms) => fmtIn(ms, state.tz);

// --- map -------------------------------------------------------------------------------
const at = (params.get('at') || '').split(',').map(Number);
const map = L.map('map', { worldCopyJump: true, minZoom: 1, maxZoom: 12, attributionControl: true })
  .setView(at.length === 3 && at.every(Number.isFinite) ? [at[0], at[1]] : [20, 10], at.length === 3 && Number.isFinite(at[2]) ? at[2] : 2);
map.attributionControl.setPrefix(false);
map.createPane('land').style.zIndex = 200;
// The grid settles the map's size after Leaflet first measured it: follow every change.
new ResizeObserver(() => map.invalidateSize()).observe($('map'));
const quakeRenderer = L.svg({ padding: 0.5 });
const symbols = L.layerGroup();
let heat = null;
// The largest event of the window: a ring that stays on top, however many aftershocks follow.
const halo = L.circleMarker([0, 0], {
  radius: 1, interactive: false, fill: false, color: '#ff2d95', weight: 2.5, dashArray: '5 4', className: 'halo', renderer: quakeRenderer,
});
let land = null;

async function basemap() {
  const cfg = await fetch('api/config').then((r) => r.json()).catch(() => ({}));
  if (cfg.tiles) {
    L.tileLayer(cfg.tiles, { attribution: cfg.tiles_attribution || '' }).addTo(map);
    return;
  }
  const topo = await fetch('vendor/countries-110m.json').then((r) => r.json());
  land = continuous(window.topojson.feature(topo, topo.objects.countries));
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name);
  L.geoJSON(land, {
    pane: 'land', interactive: false, renderer: L.canvas({ pane: 'land' }),
    style: () => ({ color: css('--border'), weight: 0.6, fillColor: css('--land'), fillOpacity: 1 }),
  }).addTo(map);
  map.attributionControl.addAttribution('Natural Earth');
}
map.attributionControl.addAttribution('Data: EMSC-CSEM (CC BY 4.0)');

// The legend lives on the map, so it is in sight whatever the list or the screen does.
const Legend = L.Control.extend({
  options: { position: 'bottomleft' },
  onAdd() {
    const el = L.DomUtil.create('div', 'legend');
    el.id = 'legend';
    el.setAttribute('role', 'group');
    el.setAttribute('aria-label', 'Legend');
    return el;
  },
});
new Legend().addTo(map);

// --- symbols ---------------------------------------------------------------------------
const props = (f) => f.properties;
const timeOf = (f) => Date.parse(props(f).time);
const latLng = (f) => [f.geometry.coordinates[1], f.geometry.coordinates[0]];
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
const emscUrl = (unid) => `https://www.seismicportal.eu/eventdetails.html?unid=${encodeURIComponent(unid)}`;
const title = (p) => `M${p.mag ?? '?'} ${p.flynn_region ?? ''}`;

function details(f) {
  const p = props(f);
  const box = document.createElement('div');
  box.className = 'details';
  const h = document.createElement('h2');
  h.textContent = `M${p.mag ?? '?'} ${p.magtype ?? ''} · ${p.flynn_region ?? ''}`;
  box.append(h);
  const dl = document.createElement('dl');
  const t = Date.parse(p.time);
  const rows = [
    ['Origin (UTC)', fmtIn(t, 'utc')],
    ['Origin (local)', fmtIn(t, 'local')],
    ['Magnitude', `${p.mag ?? 'unknown'} ${p.magtype ?? ''}`],
    ['Depth', `${p.depth} km`],
    ['Region', p.flynn_region ?? ''],
    ['Agency', p.auth ?? ''],
    ['Revised', fmt(Date.parse(p.lastupdate))],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  }
  box.append(dl);
  const a = document.createElement('a');
  a.href = emscUrl(p.unid);
  a.rel = 'noopener'; a.target = '_blank';
  a.textContent = 'This event on EMSC';
  box.append(a);
  return box;
}

/** The start of the window, fixed for one render so the list and the downloads agree. */
let since = Date.now() - WINDOWS[state.window] * HOUR;
const refreshSince = () => { since = Date.now() - WINDOWS[state.window] * HOUR; };

function matches(f) {
  const m = props(f).mag;
  return timeOf(f) >= since && (!state.minmag || (m != null && m >= Number(state.minmag)));
}

/** Shown on the map now: in the window and, during a time-lapse, not after its moment. */
const shown = (f) => state.lapse == null || timeOf(f) <= state.lapse;

function upsert(f) {
  const unid = props(f).unid;
  const known = quakes.get(unid);
  if (!matches(f)) {
    if (known) { symbols.removeLayer(known.marker); quakes.delete(unid); }
    return false;
  }
  if (known) {
    known.f = f;
    known.marker.setLatLng(latLng(f)).setStyle(style(f, unid === state.sel || unid === hovered));
    if (known.marker.isPopupOpen()) known.marker.setPopupContent(details(f));
    place(known);
    return true;
  }
  const marker = L.circleMarker(latLng(f), { ...style(f, false), renderer: quakeRenderer, className: 'quake' });
  marker.bindPopup(() => details(quakes.get(unid).f));
  marker.on('click', () => select(unid, false));
  marker.on('mouseover', () => hover(unid));
  marker.on('mouseout', () => hover(null));
  marker.on('popupclose', () => { if (state.sel === unid) { state.sel = null; saveUrl(); renderList(); } });
  marker.on('add', () => marker.getElement()?.setAttribute('data-unid', unid));
  const q = { f, marker };
  quakes.set(unid, q);
  place(q);
  return true;
}

/** Puts a symbol on the map or takes it off, as the time-lapse says. */
function place(q) {
  const on = symbols.hasLayer(q.marker);
  if (shown(q.f) && !on) symbols.addLayer(q.marker);
  else if (!shown(q.f) && on) symbols.removeLayer(q.marker);
}

/// Drops what the moving window left behind: a page open for hours must not keep showing
/// events older than the window it says it shows.
function expire() {
  refreshSince();
  let gone = false;
  for (const [unid, q] of quakes) {
    if (!matches(q.f)) { symbols.removeLayer(q.marker); quakes.delete(unid); gone = true; }
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
    if (q) { q.marker.setStyle(style(q.f, u === state.sel || u === hovered)); if (u === hovered && symbols.hasLayer(q.marker)) q.marker.bringToFront(); }
    const b = u && document.querySelector(`#list button[data-unid="${CSS.escape(u)}"]`);
    if (b) b.classList.toggle('hl', u === hovered || u === state.sel);
  }
}

function select(unid, pan) {
  state.sel = unid;
  saveUrl();
  const q = quakes.get(unid);
  if (!q) return;
  if (pan) map.panTo(q.marker.getLatLng());
  if (map.hasLayer(q.marker)) q.marker.openPopup();
  else L.popup().setLatLng(q.marker.getLatLng()).setContent(details(q.f)).openOn(map);
  restyle();
  renderList();
}

// --- the view --------------------------------------------------------------------------
const wrap = (lon) => ((((lon + 180) % 360) + 360) % 360) - 180;

/** What the map shows as query bounds: latitudes clamped, longitudes in [-180, 180] (west above
 * east for a view across the antimeridian), none when the whole world is in view. */
function viewBox() {
  const b = map.getBounds();
  const box = { minlat: Math.max(-90, b.getSouth()), maxlat: Math.min(90, b.getNorth()) };
  if (b.getEast() - b.getWest() < 360) Object.assign(box, { minlon: wrap(b.getWest()), maxlon: wrap(b.getEast()) });
  for (const k of Object.keys(box)) box[k] = Number(box[k].toFixed(4));
  return box;
}

function inBox(box, [lat, lon]) {
  if (lat < box.minlat || lat > box.maxlat) return false;
  if (box.minlon == null) return true;
  return box.minlon <= box.maxlon ? lon >= box.minlon && lon <= box.maxlon : lon >= box.minlon || lon <= box.maxlon;
}

const mag = (q) => props(q.f).mag;
// Ties as the API breaks them (time, then unid, newest first), so a download keeps the list's order.
const unidDesc = (a, b) => (props(a.f).unid < props(b.f).unid ? 1 : props(a.f).unid > props(b.f).unid ? -1 : 0);
const newest = (a, b) => timeOf(b.f) - timeOf(a.f) || unidDesc(a, b);
const ORDER = {
  newest,
  oldest: (a, b) => newest(b, a),
  largest: (a, b) => (mag(b) ?? -Infinity) - (mag(a) ?? -Infinity) || newest(a, b),
  smallest: (a, b) => (mag(a) ?? -Infinity) - (mag(b) ?? -Infinity) || newest(a, b),
};

/** The events the list holds, in its order. */
function listed() {
  const box = viewBox();
  const rows = [...quakes.values()].filter((q) => matches(q.f) && shown(q.f) && (!state.inview || inBox(box, latLng(q.f))));
  return rows.sort(ORDER[state.sort]);
}

// --- list ------------------------------------------------------------------------------
const list = new VirtualList($('list-scroll'), $('list'), {
  rowHeight: 52,
  row(q, li, fresh) {
    const p = props(q.f);
    li.className = recent(q.f) ? 'recent' : '';
    if (fresh) {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.unid = p.unid;
      b.append(...['mag', 'where', 'when'].map((c) => Object.assign(document.createElement('span'), { className: c })));
      b.addEventListener('click', () => select(b.dataset.unid, true));
      b.addEventListener('mouseenter', () => hover(b.dataset.unid));
      b.addEventListener('mouseleave', () => hover(null));
      b.addEventListener('focus', () => hover(b.dataset.unid));
      const a = document.createElement('a');
      a.className = 'emsc';
      a.rel = 'noopener'; a.target = '_blank';
      a.textContent = 'EMSC';
      li.append(b, a);
    }
    const [b, a] = li.children;
    b.classList.toggle('hl', p.unid === state.sel || p.unid === hovered);
    b.children[0].textContent = p.mag ?? '?';
    b.children[1].textContent = p.flynn_region ?? '';
    b.children[2].textContent = `${fmt(timeOf(q.f))} · ${p.depth} km`;
    a.href = emscUrl(p.unid);
    a.setAttribute('aria-label', `${title(p)} on EMSC`);
  },
});

function renderList() {
  refreshSince();
  const rows = listed();
  list.setItems(rows, (q) => props(q.f).unid);
  $('count').textContent = String(quakes.size);
  $('count').dataset.count = String(quakes.size);
  $('listed').textContent = `${rows.length} listed`;
  largest();
  downloads();
  if (heat) heat.setLatLngs(heatPoints());
}

/** The largest event of the window (whatever the view): named above the list, ringed on the map. */
function largest() {
  let best = null;
  for (const q of quakes.values()) {
    if (shown(q.f) && mag(q) != null && (!best || mag(q) > mag(best))) best = q;
  }
  const el = $('largest');
  el.hidden = !best;
  if (!best) { halo.remove(); return; }
  const p = props(best.f);
  el.dataset.unid = p.unid;
  el.textContent = `Largest: ${title(p)} · ${fmt(timeOf(best.f))}`;
  halo.setLatLng(best.marker.getLatLng()).setRadius(radius(p.mag) + 5);
  if (!map.hasLayer(halo)) halo.addTo(map);
  halo.bringToFront();
}

/** The download links: the list's window, filter, view and order, as GeoJSON, CSV, QuakeML. */
function downloads() {
  const q = new URLSearchParams({ starttime: new Date(since).toISOString() });
  if (state.lapse != null) q.set('endtime', new Date(state.lapse).toISOString());
  if (state.minmag) q.set('minmagnitude', state.minmag);
  if (state.inview) for (const [k, v] of Object.entries(viewBox())) q.set(k.replace(/(lat|lon)$/, (m) => (m === 'lat' ? 'latitude' : 'longitude')), String(v));
  q.set('orderby', SORTS[state.sort]);
  $('dl-geojson').href = `api/quakes?${q}&format=geojson`;
  $('dl-csv').href = `api/quakes?${q}&format=csv`;
  $('dl-quakeml').href = `fdsnws/event/1/query?${q}&format=xml`;
}

function legend() {
  const el = $('legend');
  el.replaceChildren();
  const t = document.createElement('strong');
  t.textContent = state.color === 'age' ? 'Age' : 'Depth';
  el.append(t);
  for (const [, c, label] of state.color === 'age' ? AGE : DEPTH) {
    const s = document.createElement('span'); s.className = 'swatch'; s.style.background = c;
    el.append(s, document.createTextNode(label));
  }
  const size = document.createElement('div');
  size.textContent = state.view === 'heat'
    ? 'Heat: where events cluster, weighted by magnitude'
    : 'Size: magnitude · orange ring: last hour · dashed ring: largest';
  el.append(size);
}

// --- heat map --------------------------------------------------------------------------
const heatPoints = () => [...quakes.values()].filter((q) => shown(q.f))
  .map((q) => [...latLng(q.f), Math.min(1, Math.max(0.15, ((mag(q) ?? 1) + 1) / 8))]);

function applyView() {
  if (state.view === 'heat') {
    symbols.remove();
    heat = heat ?? L.heatLayer([], { radius: 18, blur: 14, maxZoom: 8 });
    heat.setLatLngs(heatPoints());
    heat.addTo(map);
  } else {
    heat?.remove();
    heat = null;
    symbols.addTo(map);
  }
  legend();
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
  refreshSince();
  const apply = (features) => {
    if (seq !== loadSeq) return;
    const live = held;
    held = null;
    if (features) {
      symbols.clearLayers();
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
  // A link to a moment of the time-lapse opens at that moment (once: later loads keep the slider).
  const moment = !loadedOnce && Date.parse(params.get('lapse') ?? '');
  loadedOnce = true;
  if (Number.isFinite(moment)) lapse.seek(moment);
  renderList();
  if (state.sel && quakes.has(state.sel)) select(state.sel, false);
  document.body.dataset.loaded = 'true';
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
    const alert = () => alerts.check(f, props(f).flynn_region ?? '');
    if (held) {
      held.push(f);
      if (kind === 'created' && loadedOnce && isNew && matches(f)) alert();
      return;
    }
    const fits = upsert(f);
    if (fits && kind === 'created' && loadedOnce && isNew) alert();
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
const lapse = new Lapse(() => WINDOWS[state.window] * HOUR, (t) => {
  state.lapse = t;
  for (const q of quakes.values()) place(q);
  renderList();
}, (ms) => fmt(ms), () => saveUrl());

function bindControls() {
  const controls = { window: 'window', minmag: 'minmag', color: 'color', sort: 'sort', tz: 'tz', view: 'view' };
  for (const [key, id] of Object.entries(controls)) $(id).value = state[key];
  $('inview').checked = state.inview;
  if (['1', '2', '4', '8'].includes(params.get('speed'))) $('lapse-speed').value = params.get('speed');
  const on = (id, then) => $(id).addEventListener('change', (e) => {
    state[id] = e.target.type === 'checkbox' ? e.target.checked : e.target.value;
    saveUrl();
    then();
  });
  on('window', () => { list.top(); lapse.stop(); lapse.slider.value = lapse.slider.max; state.lapse = null; lapse.apply(); load(); });
  on('minmag', () => { list.top(); load(); });
  on('color', () => restyle());
  on('sort', () => { list.top(); renderList(); });
  on('inview', () => { list.top(); renderList(); });
  on('tz', () => { renderList(); lapse.apply(); });
  on('view', () => applyView());
  $('largest').addEventListener('click', (e) => select(e.target.dataset.unid, true));
  map.on('moveend', () => { saveUrl(); renderList(); });
  // Ages and "last hour" rings drift with the clock, and the window moves with it.
  setInterval(() => { expire(); restyle(); }, 60e3);
}

bindControls();
applyView();
basemap().catch(console.error);
// The list is fetched once the stream is subscribed (changes from then on are held until the
// list is in), or after 3 s without it, so a missing stream never leaves the map empty.
Promise.race([connect(), new Promise((r) => setTimeout(r, 3000))])
  .then(load)
  .catch((e) => { $('conn').textContent = String(e); });
window.quakeMap = {
  map, quakes, state, expire, alerts, lapse,
  since: () => since,
  listed: () => listed().map((q) => props(q.f).unid),
  landStep: () => (land ? longestStep(land) : null),
};
