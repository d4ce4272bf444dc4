// Makes world-110m.svg (country outlines for the live view) from the npm
// package world-atlas 2.0.2 (Natural Earth 110m, public domain), once:
//   npm pack world-atlas@2.0.2 topojson-client@3.1.0, unpack both, then
//   node make-world.mjs countries-110m.json path/to/topojson-client > world-110m.svg
// Equirectangular: x = longitude + 180, y = 90 - latitude (a 360 x 180
// box), rounded to 0.1 degree, which is finer than the 110m data; points
// that round to the one before are dropped.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const [input, client] = process.argv.slice(2);
const topojson = createRequire(import.meta.url)(client);
const topology = JSON.parse(readFileSync(input, "utf8"));
const countries = topojson.feature(topology, topology.objects.countries);
const point = ([lon, lat]) =>
  `${(lon + 180).toFixed(1)} ${(90 - lat).toFixed(1)}`.replace(/\.0\b/g, "");
// Rings that cross the antimeridian are unwrapped (their longitudes kept
// continuous), so they run past the box's edge, which clips them, instead
// of drawing a line across the whole map.
const ring = (r) => {
  let previous = null;
  const points = [];
  for (let [lon, lat] of r) {
    if (previous !== null) lon += 360 * Math.round((previous - lon) / 360);
    previous = lon;
    const p = point([lon, lat]);
    if (points[points.length - 1] !== p) points.push(p);
  }
  return "M" + points.join("L") + "Z";
};
const polygons = (g) =>
  g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
const out = [];
for (const f of countries.features) {
  if (!f.geometry) continue;
  const d = polygons(f.geometry).flatMap((p) => p.map(ring)).join("");
  const name = String(f.properties.name).replace(/[&<>"]/g, "");
  out.push(`<path data-country="${name}" d="${d}"><title>${name}</title></path>`);
}
process.stdout.write(out.join("\n") + "\n");
