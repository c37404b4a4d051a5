// land.js: the Natural Earth basemap, with rings that cross the antimeridian made continuous.
//
// world-atlas is in spherical coordinates: Russia's and Fiji's rings jump from +180 to -180,
// and Antarctica's runs around the pole. Drawn as planar polygons (Leaflet does no antimeridian
// cutting) each jump became an edge across the whole map: the light bands over the oceans near
// 70° N and 17° S. Each ring is unwrapped so no edge is longer than 180° of longitude; a ring
// that then reaches past ±180 is drawn once more shifted by 360° so both edges of the map show
// it, and a ring around a pole is closed along that pole.

/** The longest step in longitude between consecutive points of any ring, in degrees (edges
 * along a pole, which the map never shows, aside). */
export function longestStep(geojson) {
  let max = 0;
  for (const poly of polygons(geojson)) {
    for (const ring of poly) {
      for (let i = 1; i < ring.length; i++) {
        const alongPole = Math.abs(ring[i][1]) === 90 && ring[i][1] === ring[i - 1][1];
        if (!alongPole) max = Math.max(max, Math.abs(ring[i][0] - ring[i - 1][0]));
      }
    }
  }
  return max;
}

function* polygons(geojson) {
  for (const f of geojson.features) {
    const g = f.geometry;
    if (!g) continue;
    if (g.type === 'Polygon') yield g.coordinates;
    else if (g.type === 'MultiPolygon') yield* g.coordinates;
  }
}

function unwrap(ring) {
  const out = [ring[0].slice()];
  let shift = 0;
  for (let i = 1; i < ring.length; i++) {
    const d = ring[i][0] - ring[i - 1][0];
    if (d > 180) shift -= 360;
    else if (d < -180) shift += 360;
    out.push([ring[i][0] + shift, ring[i][1]]);
  }
  return out;
}

function closeAroundPole(ring) {
  const first = ring[0];
  const last = ring[ring.length - 1];
  if (Math.abs(last[0] - first[0]) < 1e-9) return ring;
  const pole = ring.reduce((s, p) => s + p[1], 0) < 0 ? -90 : 90;
  return [...ring, [last[0], pole], [first[0], pole], first.slice()];
}

const moved = (poly, by) => poly.map((ring) => ring.map(([x, y]) => [x + by, y]));

/** The same land with every ring continuous (see the top of this file). */
export function continuous(geojson) {
  const features = geojson.features.map((f) => {
    const g = f.geometry;
    if (!g || (g.type !== 'Polygon' && g.type !== 'MultiPolygon')) return f;
    const polys = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
    const out = [];
    for (const poly of polys) {
      const rings = poly.map((r) => closeAroundPole(unwrap(r)));
      out.push(rings);
      const xs = rings[0].map((p) => p[0]);
      // A polar ring spans the whole circle already; others repeat on the other side.
      if (Math.max(...xs) - Math.min(...xs) >= 360) continue;
      if (Math.max(...xs) > 180) out.push(moved(rings, -360));
      if (Math.min(...xs) < -180) out.push(moved(rings, 360));
    }
    return { ...f, geometry: { type: 'MultiPolygon', coordinates: out } };
  });
  return { ...geojson, features };
}
