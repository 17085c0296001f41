// Browser tests of the relaxed-SIMD builds (tabfit-mt-relaxed / tabfit-st-relaxed; see
// docs/wasm-relaxed-simd.md): the loader's detection and fallback, and that the relaxed
// Q4_0 / TF_Q4 kernels give the same greedy output as the plain builds (their integer
// sums are exact, so the logits are bit-identical).
// Run: scripts/build-wasm.sh && node --test tests/web/relaxed.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from './server.mjs';
import { launch, repoRoot, haveBuild, CHROMIUM } from './browser.mjs';

const MODEL = '/models/tabfit-demo-8m-f16.gguf';
const dist = path.join(repoRoot, 'web/dist/wasm');
const haveRelaxed = ['tabfit-mt-relaxed.mjs', 'tabfit-st-relaxed.mjs'].every((f) => fs.existsSync(path.join(dist, f)));
const skip = !haveBuild() || !haveRelaxed ? 'web/dist is not built with the relaxed variants: run scripts/build-wasm.sh'
  : !fs.existsSync(CHROMIUM) ? `no browser at ${CHROMIUM}: run scripts/setup-web.sh`
  : !fs.existsSync(path.join(repoRoot, MODEL)) ? `missing ${MODEL}` : false;

let server, browser, page, plainOnly;

before(async () => {
  if (skip) return;
  // A wasm folder without the relaxed files: the "auto" fallback must use the plain build.
  plainOnly = fs.mkdtempSync(path.join(os.tmpdir(), 'tabfit-plain-wasm-'));
  for (const f of fs.readdirSync(dist)) if (!f.includes('-relaxed')) fs.copyFileSync(path.join(dist, f), path.join(plainOnly, f));
  server = await startServer(repoRoot, { mounts: { '/plainwasm/': plainOnly } });
  browser = await launch();
  page = await browser.page(`${server.origin}/tests/web/page.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (plainOnly) fs.rmSync(plainOnly, { recursive: true, force: true });
});

async function run(opts) {
  return page.evaluate(async ({ model, opts }) => {
    const t = await import('/web/dist/index.js');
    const engine = await t.load(model, { threads: 2, ...opts });
    const stream = engine.generate('The king said', { maxTokens: 24, temperature: 0 });
    const ids = [];
    for await (const tok of stream) if (tok.token >= 0) ids.push(tok.token);
    const r = { ids, build: engine.build, relaxed: engine.relaxedSimd };
    await engine.unload();
    return r;
  }, { model: MODEL, opts });
}

test('Chromium validates the relaxed-dot probe; auto picks the relaxed build', { skip, timeout: 60_000 }, async () => {
  const caps = await page.evaluate(async () => (await import('/web/dist/index.js')).detectCapabilities());
  assert.equal(caps.wasmRelaxedSimd, true, 'Chromium 156 supports relaxed SIMD');
  const r = await run({ build: 'baseline', precision: 'q4_0' });
  assert.equal(r.relaxed, true);
  assert.equal(r.build, 'baseline');
});

for (const build of ['threads', 'baseline']) {
  for (const precision of ['q4_0', 'tf_q4']) {
    test(`relaxed and plain ${build} builds give the same greedy tokens (${precision} weights)`, { skip, timeout: 120_000 }, async () => {
      const relaxed = await run({ build, precision, relaxedSimd: true });
      const plain = await run({ build, precision, relaxedSimd: false });
      assert.equal(relaxed.relaxed, true);
      assert.equal(plain.relaxed, false);
      assert.equal(relaxed.ids.length, 24);
      assert.deepEqual(relaxed.ids, plain.ids);
    });
  }
}

test('auto falls back to the plain build when the relaxed files are missing; true then fails', { skip, timeout: 60_000 }, async () => {
  const base = `${server.origin}/plainwasm/`;
  const r = await run({ build: 'baseline', precision: 'q4_0', wasmBaseUrl: base });
  assert.equal(r.relaxed, false);
  assert.equal(r.ids.length, 24);
  const err = await page.evaluate(async ({ model, base }) => {
    const t = await import('/web/dist/index.js');
    try { await t.load(model, { build: 'baseline', relaxedSimd: true, wasmBaseUrl: base }); return null; } catch (e) { return e.type; }
  }, { model: MODEL, base });
  assert.equal(err, 'not_found');
});
