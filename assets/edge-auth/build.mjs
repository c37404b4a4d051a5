// build.mjs: bundles the edge function and jose into one ES module (Lambda@Edge takes no
// node_modules layer and its viewer-request package may not pass 1 MB): `node build.mjs
// OUT_DIR` writes OUT_DIR/index.mjs, the same bytes for the same sources. The provisioner
// (`lambda_function`, `build`) runs it, then zips OUT_DIR with this deploy's config.json.

import { build } from 'esbuild';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [outDir] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node build.mjs OUT_DIR');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
await build({
  entryPoints: [join(here, 'src', 'index.js')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: true,
  legalComments: 'none',
  outfile: join(outDir, 'index.mjs'),
  logLevel: 'error',
});
