// Browser tests of the relaxed-SIMD builds (tabfit-mt-relaxed / tabfit-st-relaxed; see
// docs/wasm-relaxed-simd.md): the loader's detection and fallback, and that the relaxed
// Q4_0 / TF_Q4 kernels give the same greedy output as the plain builds (their integer
// sums are exact, so the logits are bit-identical); likewise Q8_0 / TF_Q8 and the
// wasm-relaxed-patch tool itself.
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
  for (const precision of ['q4_0', 'tf_q4', 'q8_0', 'tf_q8']) {
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

// ---- scripts/wasm-relaxed-patch.mjs on hand-made modules (Node; the result runs in Chromium) ----
import { execFileSync } from 'node:child_process';
import { patchWasm } from '../../scripts/wasm-relaxed-patch.mjs';

const vec = (items) => [items.length, ...items.flat()];
const sec = (id, b) => [id, ...uleb(b.length), ...b];
function uleb(v) { const o = []; do { let b = v & 0x7f; v >>>= 7; if (v) b |= 0x80; o.push(b); } while (v); return o; }
const str = (s) => vec([...s].map((c) => [c.charCodeAt(0)]));
const A = Array.from({ length: 16 }, (_, i) => (i * 37 - 100) & 0xff);   // i8 operand (negative values too)
const B = Array.from({ length: 16 }, (_, i) => (i * 11 + 3) & 0x7f);     // i7 operand
const C = [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0];              // i32x4 accumulator
// func 1 (i32 lane) -> i32: lane of dot(A, B, C) via a call of import 0, inside a block, between
// instructions with immediates (v128.const, memarg, shuffle, lane index, br_table) the decoder must step over.
function testModule({ exportImport = false, badOpcode = false } = {}) {
  const shuffleId = Array.from({ length: 16 }, (_, i) => i);
  const code = [1, 1, 0x7b,                                   // locals: 1 x v128 (local 1)
    0x02, 0x40,                                               // block
    0xfd, 0x0c, ...A, 0xfd, 0x0c, ...B, 0xfd, 0x0c, ...C,     // 3 x v128.const
    0x10, 0x00,                                               // call $tabfit_relaxed_dot_add
    0x21, 1,                                                  // local.set 1
    0x41, 0, 0xfd, 0x00, 4, 0, 0x1a,                          // i32.const 0; v128.load align=16; drop
    0x41, 0, 0x0e, 1, 0, 0,                                   // i32.const 0; br_table 0 0
    0x0b,                                                     // end
    ...(badOpcode ? [0xff] : []),
    0x20, 1, 0x20, 1, 0xfd, 0x0d, ...shuffleId, 0x21, 1,      // local 1 = i8x16.shuffle(identity)
    // lane `arg` of local 1: a chain of select(prev, lane_i, arg != i)
    0x20, 1, 0xfd, 0x1b, 0,
    ...[1, 2, 3].flatMap((i) => [0x20, 1, 0xfd, 0x1b, i, 0x20, 0, 0x41, i, 0x47, 0x1b]),
    0x0b];
  const exports = [[...str('lane'), 0, 1], ...(exportImport ? [[...str('imp'), 0, 0]] : [])];
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...sec(1, vec([[0x60, 3, 0x7b, 0x7b, 0x7b, 1, 0x7b], [0x60, 1, 0x7f, 1, 0x7f]])),
    ...sec(2, vec([[...str('env'), ...str('tabfit_relaxed_dot_add'), 0, 0]])),
    ...sec(3, vec([[1]])),
    ...sec(5, vec([[0, 1]])),
    ...sec(7, vec(exports)),
    ...sec(10, vec([[...uleb(code.length), ...code]]))]);
}
function expectedLanes() {
  const s8 = (x) => (x << 24) >> 24;
  return [0, 1, 2, 3].map((i) => [0, 1, 2, 3].reduce((acc, k) => acc + s8(A[4 * i + k]) * B[4 * i + k], C[4 * i]));
}

test('wasm-relaxed-patch rewrites the call into the relaxed dot; the result computes the dot in Chromium', { timeout: 60_000 }, async (t) => {
  const orig = testModule();
  assert.ok(WebAssembly.validate(orig), 'the hand-made module is valid');
  const res = patchWasm(orig);
  assert.equal(res.patched, 1);
  assert.equal(res.bytes.length, orig.length + 1, 'call 0 (2 bytes) became 0xfd 0x93 0x02 (3 bytes)');
  const again = patchWasm(res.bytes);
  assert.equal(again.patched, 0);
  assert.equal(again.existing, 1, 'the decoder finds the relaxed dot it wrote');
  const ok = execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', '-e',
    `process.stdout.write(String(WebAssembly.validate(Buffer.from('${Buffer.from(res.bytes).toString('hex')}', 'hex'))))`]).toString();
  assert.equal(ok, 'true', 'the patched module validates (Node 20 with --experimental-wasm-relaxed-simd)');
  if (skip) { t.diagnostic(`no Chromium run: ${skip}`); return; }
  const lanes = await page.evaluate(async (bytes) => {
    const inst = await WebAssembly.instantiate(new Uint8Array(bytes), { env: { tabfit_relaxed_dot_add: () => { throw new Error('unpatched'); } } });
    return [0, 1, 2, 3].map((l) => inst.instance.exports.lane(l));
  }, [...res.bytes]);
  assert.deepEqual(lanes, expectedLanes());
});

test('wasm-relaxed-patch refuses an exported import and an unknown opcode', () => {
  assert.throws(() => patchWasm(testModule({ exportImport: true })), /export "imp"/);
  assert.throws(() => patchWasm(testModule({ badOpcode: true })), /unknown opcode 0xff/);
});
