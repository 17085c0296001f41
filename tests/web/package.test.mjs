// Browser tests of tabfit packages (src/model/package: manifest.json + chunk
// files whose concatenation is a GGUF): the worker fetches each chunk file,
// checks its sha256, stores it; a reload fetches nothing; a damaged chunk is
// named. The package is written by the native CLI (`tabfit convert`), found at
// $TABFIT_BIN or build/tabfit; the test skips, saying so, without one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from './server.mjs';
import { launch, repoRoot, demoGolden, sharedDir, haveBuild, CHROMIUM } from './browser.mjs';

const MODEL = path.join(repoRoot, 'models/tabfit-demo-8m-f16.gguf');

function findTabfit() {
  for (const bin of [process.env.TABFIT_BIN, path.join(repoRoot, 'build/tabfit')]) {
    if (!bin || !fs.existsSync(bin)) continue;
    try {
      if (execFileSync(bin, ['--help'], { encoding: 'utf8' }).includes('convert')) return bin;
    } catch { /* not runnable */ }
  }
  return null;
}

const tabfit = findTabfit();
const skip = !haveBuild() ? 'web/dist is not built: run scripts/build-wasm.sh'
  : !fs.existsSync(CHROMIUM) ? `no browser at ${CHROMIUM}`
  : !fs.existsSync(path.join(sharedDir(), 'models/golden/greedy.jsonl')) ? 'missing ../shared golden outputs'
  : !tabfit ? 'no tabfit CLI with `convert` (set TABFIT_BIN or build the CLI into build/tabfit)'
  : false;

let server, browser, page, dir;

before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tabfit-web-pkg-'));
  execFileSync(tabfit, ['convert', MODEL, path.join(dir, 'good'), '--max-chunk', '4MiB', '-q']);
  // convert's default chunk size: the demo model's one 16.8 MB chunk is larger than the
  // loader's 16 MiB download unit but well inside every profile's max buffer.
  execFileSync(tabfit, ['convert', MODEL, path.join(dir, 'default'), '-q']);
  // A copy with one flipped byte in data-002.bin.
  fs.cpSync(path.join(dir, 'good'), path.join(dir, 'bad'), { recursive: true });
  const f = path.join(dir, 'bad/data-002.bin');
  const b = fs.readFileSync(f);
  b[1000] ^= 0xff;
  fs.writeFileSync(f, b);
  server = await startServer(repoRoot, { mounts: { '/pkg/': dir } });
  browser = await launch();
  page = await browser.page(`${server.origin}/tests/web/page.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a tabfit package loads chunk by chunk, verified, and reloads from storage', { skip, timeout: 90_000 }, async () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'good/manifest.json'), 'utf8'));
  const golden = demoGolden()[0];
  const want = golden.output.slice(`<s> ${golden.prompt}`.length);
  const requests = () => [...server.stats.entries()].filter(([p]) => p.startsWith('/pkg/good/'))
    .reduce((n, [, s]) => n + s.requests, 0);
  const r1 = await page.evaluate(async (url) => {
    const t = await import('/web/dist/index.js');
    await t.clearCache(url);
    const comps = new Set();
    const out = {};
    for (const cache of [false, true]) {
      const e = await t.load(url, { precision: 'keep', cache, onProgress: (p) => comps.add(p.component) });
      out[cache] = { text: await e.generate('The king said', { maxTokens: 16, temperature: 0 }).text(),
        r: e.loadResult, info: e.info };
      await e.unload();
    }
    out.components = [...comps];
    return out;
  }, '/pkg/good/manifest.json');
  // Each load: the manifest + every chunk file once.
  assert.equal(requests(), 2 * (1 + manifest.chunks.length));
  for (const cache of ['false', 'true']) {
    assert.ok(want.startsWith(r1[cache].text), `package output (cache ${cache}) matches the golden text`);
    assert.equal(r1[cache].r.networkBytes, manifest.gguf.size);
  }
  assert.equal(r1.false.r.storage, 'memory');
  assert.equal(r1.false.r.heldChunksAfterLoad, 0, 'memory chunks are dropped as the loader reads them, in any order');
  assert.equal(r1.true.r.storage, 'opfs');
  assert.equal(r1.true.info.name, 'tabfit-demo-8m');
  assert.ok(r1.components.includes('embeddings,layers.0,output_norm'), 'download progress names the chunk components');

  const before2 = requests();
  const r2 = await page.evaluate(async (url) => {
    const t = await import('/web/dist/index.js');
    const e = await t.load(url, { precision: 'keep' });
    const out = { text: await e.generate('The king said', { maxTokens: 16, temperature: 0 }).text(), r: e.loadResult };
    await e.unload();
    return out;
  }, '/pkg/good/manifest.json');
  assert.equal(requests(), before2, 'the reload makes no request at all');
  assert.equal(r2.r.fromCache, true);
  assert.equal(r2.text, r1.true.text);
});

test('a damaged package chunk fails as corrupt_data naming the chunk file', { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (url) => {
    const t = await import('/web/dist/index.js');
    const out = {};
    for (const cache of [false, true]) {
      try {
        await t.load(url, { precision: 'keep', cache });
        out[cache] = 'resolved';
      } catch (e) {
        out[cache] = { type: e.type, message: e.message };
      }
    }
    return out;
  }, '/pkg/bad/manifest.json');
  for (const v of [r.false, r.true]) {
    assert.equal(v.type, 'corrupt_data');
    assert.match(v.message, /data-002\.bin: sha256 is [0-9a-f]{64}, the manifest says/);
  }
});

test('package chunks are limited by the profile max buffer, not the download unit', { skip, timeout: 60_000 }, async () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'default/manifest.json'), 'utf8'));
  assert.ok(manifest.chunks.some((c) => c.size > 16 * 1024 * 1024), 'the default package has a chunk over 16 MiB');
  const r = await page.evaluate(async (url) => {
    const t = await import('/web/dist/index.js');
    const e = await t.load(url, { precision: 'keep', cache: false });
    const out = { text: await e.generate('The king said', { maxTokens: 4, temperature: 0 }).text() };
    await e.unload();
    const small = { ...t.resolveProfile('chrome').profile, max_buffer_bytes: 8 * 1024 * 1024 };
    try {
      await t.load(url, { precision: 'keep', cache: false, profile: small });
      out.small = 'resolved';
    } catch (err) {
      out.small = { type: err.type, message: err.message };
    }
    return out;
  }, '/pkg/default/manifest.json');
  assert.ok(r.text.length > 0, 'the default package loads and generates');
  assert.equal(r.small.type, 'buffer_limit');
  assert.match(r.small.message, /more than the profile's max buffer \(8388608\); rewrite the package with tabfit convert --max-chunk 8388608/);
});
