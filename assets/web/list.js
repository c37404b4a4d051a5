// list.js: the event list, virtualised: every row of the view is in the list (its length and
// positions are announced), but only the rows near the scroll position are in the document, so
// a 30-day view of thousands of events stays as quick as a short one. Works by keyboard alone:
// arrows, Page Up/Down, Home and End move between rows, scrolling as needed.

const OVERSCAN = 8;

export class VirtualList {
  /**
   * @param {HTMLElement} scroller the element that scrolls
   * @param {HTMLOListElement} ol the list inside it
   * @param {{rowHeight: number, row: (item: any, li: HTMLLIElement) => void}} opts
   */
  constructor(scroller, ol, { rowHeight, row }) {
    this.scroller = scroller;
    this.ol = ol;
    this.rowHeight = rowHeight;
    this.row = row;
    this.items = [];
    this.frame = 0;
    scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(scroller);
    ol.addEventListener('keydown', (e) => this.key(e));
  }

  /** Replaces the rows; the scroll position and the focused row (by key) are kept. */
  setItems(items, keyOf) {
    const focused = this.ol.contains(document.activeElement) ? document.activeElement.closest('li')?.dataset.key : null;
    this.items = items;
    this.keyOf = keyOf;
    this.ol.style.height = `${items.length * this.rowHeight}px`;
    this.render();
    if (focused) {
      const i = items.findIndex((it) => keyOf(it) === focused);
      if (i >= 0) this.focus(i);
    }
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  range() {
    const top = this.scroller.scrollTop - this.ol.offsetTop;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN);
    const shown = Math.ceil(this.scroller.clientHeight / this.rowHeight) + 2 * OVERSCAN;
    return [first, Math.min(this.items.length, first + shown)];
  }

  render() {
    const [from, to] = this.range();
    const active = document.activeElement;
    const keep = new Map();
    for (const li of this.ol.children) keep.set(li.dataset.key, li);
    let ref = this.ol.firstChild;
    for (let i = from; i < to; i++) {
      const item = this.items[i];
      const key = this.keyOf(item);
      let li = keep.get(key);
      const fresh = !li;
      if (fresh) {
        li = document.createElement('li');
        li.dataset.key = key;
      }
      keep.delete(key);
      li.dataset.index = String(i);
      li.setAttribute('aria-setsize', String(this.items.length));
      li.setAttribute('aria-posinset', String(i + 1));
      li.style.transform = `translateY(${i * this.rowHeight}px)`;
      this.row(item, li, fresh);
      // Document order follows list order (tab order, screen readers); rows in place stay put.
      if (li === ref) ref = ref.nextSibling;
      else this.ol.insertBefore(li, ref);
    }
    // Rows that left the range go; the focused one stays until focus moves (a row must not
    // vanish from under the keyboard).
    for (const li of keep.values()) if (!li.contains(active)) li.remove();
    // A focused row that had to move lost focus on the way: give it back.
    if (active && active !== document.activeElement && active.isConnected) active.focus({ preventScroll: true });
  }

  /** Back to the first row (a new order or filter starts from the top). */
  top() {
    // The focused row would otherwise be followed to its new place.
    if (this.ol.contains(document.activeElement)) document.activeElement.blur();
    this.scroller.scrollTop = 0;
  }

  /** Scrolls row `i` into view, renders it and focuses its first control. */
  focus(i) {
    const idx = Math.max(0, Math.min(this.items.length - 1, i));
    const top = this.ol.offsetTop + idx * this.rowHeight;
    if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + this.rowHeight > this.scroller.scrollTop + this.scroller.clientHeight) {
      this.scroller.scrollTop = top + this.rowHeight - this.scroller.clientHeight;
    }
    this.render();
    this.ol.querySelector(`li[data-index="${idx}"] button`)?.focus();
  }

  key(e) {
    const li = e.target.closest('li');
    if (!li || e.target.tagName !== 'BUTTON') return;
    const i = Number(li.dataset.index);
    const page = Math.max(1, Math.floor(this.scroller.clientHeight / this.rowHeight) - 1);
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, PageDown: i + page, PageUp: i - page, Home: 0, End: this.items.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    this.focus(to);
  }
}
