// alerts.js: notices for new events as they arrive: anywhere from a magnitude, and near me
// (opt-in: the browser's location, asked only when switched on) within a radius and from a
// magnitude, with a tone of its own so a nearby event is told apart without looking.

const $ = (id) => document.getElementById(id);

/** Great-circle distance in km (haversine, mean Earth radius). */
export function distanceKm(lat1, lon1, lat2, lon2) {
  const r = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * r) / 2) ** 2
    + Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin(((lon2 - lon1) * r) / 2) ** 2;
  return 2 * 6371.0088 * Math.asin(Math.min(1, Math.sqrt(a)));
}

export class Alerts {
  /** @param {() => void} changed called when a setting changes (to save the URL) */
  constructor(params, changed) {
    this.changed = changed;
    this.position = null;
    /** Every alert raised, newest last: `{ unid, kind: 'near' | 'anywhere', km }`. */
    this.log = [];
    const anywhere = params.get('alert');
    if (anywhere) { $('alert-on').checked = true; $('alert-mag').value = anywhere; }
    const near = (params.get('near') || '').split(',');
    if (near.length === 2 && near.every((x) => x !== '' && Number.isFinite(Number(x)))) {
      $('near-on').checked = true;
      [$('near-km').value, $('near-mag').value] = near;
      this.locate();
    }
    for (const id of ['alert-on', 'alert-mag', 'near-km', 'near-mag']) $(id).addEventListener('change', () => changed());
    $('near-on').addEventListener('change', (e) => {
      if (e.target.checked) this.locate(); else { this.position = null; this.say('near-status', ''); }
      changed();
    });
    $('alert-desktop').addEventListener('change', (e) => {
      if (e.target.checked && 'Notification' in window && Notification.permission === 'default') Notification.requestPermission();
    });
  }

  say(id, text) { $(id).textContent = text; }

  locate() {
    if (!('geolocation' in navigator)) { this.say('near-status', 'This browser cannot tell its location.'); return; }
    this.say('near-status', 'Asking for your location…');
    navigator.geolocation.getCurrentPosition(
      (p) => {
        this.position = { lat: p.coords.latitude, lon: p.coords.longitude };
        this.say('near-status', `Your location: ${this.position.lat.toFixed(2)}, ${this.position.lon.toFixed(2)}`);
      },
      (e) => { this.position = null; this.say('near-status', `No location: ${e.message || 'refused'}.`); },
      { maximumAge: 600e3, timeout: 20e3 },
    );
  }

  /** The URL parameters of the settings that are on. */
  toParams(p) {
    if ($('alert-on').checked) p.set('alert', $('alert-mag').value);
    if ($('near-on').checked) p.set('near', `${$('near-km').value},${$('near-mag').value}`);
  }

  /** Called for each event seen for the first time while the page is live. */
  check(f, where) {
    const p = f.properties;
    const m = p.mag;
    if (m == null) return;
    let kind = null;
    let km = null;
    if ($('near-on').checked && this.position) {
      const [lon, lat] = f.geometry.coordinates;
      km = distanceKm(this.position.lat, this.position.lon, lat, lon);
      if (km <= Number($('near-km').value) && m >= Number($('near-mag').value)) kind = 'near';
    }
    if (!kind && $('alert-on').checked && m >= Number($('alert-mag').value)) kind = 'anywhere';
    if (!kind) return;
    this.log.push({ unid: p.unid, kind, km });
    const text = kind === 'near'
      ? `Near you: M${m} ${where}, ${Math.round(km)} km away`
      : `M${m} ${where}`;
    this.say('alert-banner', text);
    if ($('alert-sound').checked) tone(kind === 'near' ? [660, 880, 1100] : [880]);
    if ($('alert-desktop').checked && 'Notification' in window && Notification.permission === 'granted') {
      new Notification(kind === 'near' ? 'Earthquake near you' : 'Earthquake', { body: text });
    }
  }
}

/** Short beeps at the given pitches, one after the other. */
function tone(freqs) {
  try {
    const ctx = new AudioContext();
    freqs.forEach((hz, i) => {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = hz; g.gain.value = 0.1;
      o.connect(g).connect(ctx.destination);
      o.start(ctx.currentTime + i * 0.18); o.stop(ctx.currentTime + i * 0.18 + 0.15);
    });
  } catch { /* no audio: the banner still says it */ }
}
