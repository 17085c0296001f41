// Headless Chromium (Debian's /usr/bin/chromium) through playwright-core; no
// browser is ever downloaded. One persistent profile per launch, in a temp dir.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
const require = createRequire(path.join(repoRoot, 'web/package.json'));
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.TABFIT_CHROMIUM ?? '/usr/bin/chromium';

export async function launch() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tabfit-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    async page(url) {
      const page = context.pages()[0] ?? await context.newPage();
      page.on('console', (m) => { if (process.env.TABFIT_TEST_VERBOSE) console.log('[page]', m.text()); });
      page.on('pageerror', (e) => console.log('[pageerror]', e.message));
      await page.goto(url);
      return page;
    },
    async close() {
      await context.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function demoGolden() {
  const lines = fs.readFileSync(path.join(sharedDir(), 'models/golden/greedy.jsonl'), 'utf8').split('\n');
  return lines.filter(Boolean).map((l) => JSON.parse(l)).filter((j) => j.model === 'tabfit-demo-8m-f16.gguf');
}

export function sharedDir() {
  return process.env.TABFIT_SHARED_DIR ?? path.resolve(repoRoot, '../shared');
}

// Why the browser tests cannot run here (false when they can): no build, no browser, no golden outputs.
export function skipReason() {
  return !haveBuild() ? 'web/dist is not built: run scripts/build-wasm.sh'
    : !fs.existsSync(CHROMIUM) ? `no browser at ${CHROMIUM}: run scripts/setup-web.sh`
    : !fs.existsSync(path.join(sharedDir(), 'models/golden/greedy.jsonl')) ? `missing ${sharedDir()}/models/golden`
    : false;
}

export function haveBuild() {
  const d = path.join(repoRoot, 'web/dist');
  return ['index.js', 'worker.js', 'wasm/tabfit-mt.mjs', 'wasm/tabfit-st.mjs', 'wasm/tabfit-scalar.mjs'].every((f) => fs.existsSync(path.join(d, f)));
}
