// lapse.js: the time-lapse: a slider over the window (its start to now) that shows only the
// events up to the chosen moment, and a player that moves it across the window in 30 s at 1x.

const $ = (id) => document.getElementById(id);
const STEPS = 1000;
const SWEEP_MS = 30e3;
const TICK_MS = 100;

export class Lapse {
  /**
   * @param {() => number} span the window's length in ms
   * @param {(t: number | null) => void} show shows events up to `t` (null: all, live)
   * @param {(ms: number) => string} fmt formats a moment for the label
   * @param {() => void} settled called when the moment is chosen or the player stops (the URL
   *   is saved then, not at every step of the player)
   */
  constructor(span, show, fmt, settled) {
    this.span = span;
    this.show = show;
    this.fmt = fmt;
    this.settled = settled;
    this.timer = null;
    this.slider = $('lapse');
    this.slider.max = String(STEPS);
    this.slider.addEventListener('input', () => { this.stop(); this.apply(); this.settled(); });
    $('lapse-play').addEventListener('click', () => (this.timer ? this.stop() : this.play()));
    $('lapse-live').addEventListener('click', () => { this.stop(); this.slider.value = String(STEPS); this.apply(); this.settled(); });
    $('lapse-speed').addEventListener('change', () => this.settled());
  }

  /** Points the slider at moment `t` (clamped to the window) and shows it. */
  seek(t) {
    const v = ((t - (Date.now() - this.span())) / this.span()) * STEPS;
    this.slider.value = String(Math.max(0, Math.min(STEPS, v)));
    this.apply();
  }

  /** The moment the slider points at, or null at its end (live). */
  time() {
    const v = Number(this.slider.value);
    if (v >= STEPS) return null;
    const now = Date.now();
    return now - this.span() + (this.span() * v) / STEPS;
  }

  apply() {
    const t = this.time();
    $('lapse-label').textContent = t == null ? 'live' : this.fmt(t);
    this.slider.setAttribute('aria-valuetext', t == null ? 'live' : this.fmt(t));
    this.show(t);
  }

  play() {
    if (Number(this.slider.value) >= STEPS) this.slider.value = '0';
    $('lapse-play').textContent = 'Pause';
    $('lapse-play').setAttribute('aria-pressed', 'true');
    this.timer = setInterval(() => {
      const step = (STEPS * TICK_MS * Number($('lapse-speed').value)) / SWEEP_MS;
      const v = Math.min(STEPS, Number(this.slider.value) + step);
      this.slider.value = String(v);
      this.apply();
      if (v >= STEPS) this.stop();
    }, TICK_MS);
  }

  stop() {
    if (this.timer) this.settled();
    clearInterval(this.timer);
    this.timer = null;
    $('lapse-play').textContent = 'Play';
    $('lapse-play').setAttribute('aria-pressed', 'false');
  }
}
