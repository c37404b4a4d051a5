// build.mjs: bundles the edge function and jose into one ES module (Lambda@Edge takes no
// node_modules layer and its viewer-request package may not pass 1 MB): `node build.mjs
// CONFIG.json OUT_DIR` writes OUT_DIR/index.mjs with CONFIG inside, the same bytes for the
// same inputs.

import { build } from 'esbuild';
import { copyFileSync, mkdtempSync, rmSync, cpSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const [configPath, outDir] = process.argv.slice(2);
if (!configPath || !outDir) {
  console.error('usage: node build.mjs CONFIG.json OUT_DIR');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
// The sources with this deploy's config beside them, bundled from a scratch copy.
const work = mkdtempSync(join(tmpdir(), 'edge-auth-'));
try {
  cpSync(join(here, 'src'), work, { recursive: true });
  copyFileSync(configPath, join(work, 'config.json'));
  await build({
    entryPoints: [join(work, 'index.js')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    legalComments: 'none',
    nodePaths: [join(here, 'node_modules')],
    outfile: join(outDir, 'index.mjs'),
    logLevel: 'error',
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}
