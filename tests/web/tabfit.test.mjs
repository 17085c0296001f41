// Browser tests of the tabfit package: headless Chromium (/usr/bin/chromium)
// loads web/dist/index.js from a local COOP/COEP server and runs the demo model
// in the engine worker, with the threads build and the baseline build.
//
// Run: scripts/build-wasm.sh && node --test tests/web/
// Needs ../shared (golden outputs); skips, saying why, without it or without a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from './server.mjs';
import { launch, repoRoot, demoGolden, sharedDir, skipReason } from './browser.mjs';

const MODEL = '/models/tabfit-demo-8m-f16.gguf';
const MODEL_SIZE = fs.statSync(path.join(repoRoot, MODEL)).size;
const skip = skipReason();

let server, browser, page;

before(async () => {
  if (skip) return;
  server = await startServer(repoRoot);
  browser = await launch();
  page = await browser.page(`${server.origin}/tests/web/page.html`);
  assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the test page must be cross-origin isolated');
});

after(async () => {
  await browser?.close();
  await server?.close();
});

// The continuation llama.cpp produced: the golden output minus "<s> " + prompt and the tool's final newline.
function expectedContinuation(g) {
  const prefix = `<s> ${g.prompt}`;
  assert.ok(g.output.startsWith(prefix), 'golden output starts with BOS and the prompt');
  return g.output.slice(prefix.length).replace(/\n$/, '');
}

for (const build of ['threads', 'baseline', 'scalar']) {
  test(`greedy output of the demo model equals the golden text (${build} build)`, { skip, timeout: 120_000 }, async () => {
    const golden = demoGolden();
    assert.equal(golden.length, 4);
    const got = await page.evaluate(async ({ model, build, cases }) => {
      const t = await import('/web/dist/index.js');
      const engine = await t.load(model, { build, precision: 'keep', threads: 2 });
      const out = [];
      for (const c of cases) {
        const stream = engine.generate(c.prompt, { maxTokens: c.n_predict, temperature: 0 });
        const ids = [];
        let text = '';
        for await (const tok of stream) { text += tok.text; if (tok.token >= 0) ids.push(tok.token); }
        const stats = await stream.stats;
        const pieces = (await engine.tokenPieces(ids)).join('');
        out.push({ text, pieces, stats });
      }
      const info = { build: engine.build, threads: engine.info.threads };
      await engine.unload();
      return { out, info };
    }, { model: MODEL, build, cases: golden });
    assert.equal(got.info.build, build);
    assert.equal(got.info.threads, build === 'threads' ? 2 : 1);
    golden.forEach((g, i) => {
      const want = expectedContinuation(g);
      assert.equal(got.out[i].text, want, `prompt "${g.prompt}" (streamed text)`);
      assert.equal(got.out[i].pieces, want, `prompt "${g.prompt}" (token pieces)`);
      assert.equal(got.out[i].stats.generated_tokens, g.n_predict);
      assert.equal(got.out[i].stats.stop_reason, 'max_tokens');
    });
  });
}

test('load reports progress; the second load comes from storage with zero network bytes', { skip, timeout: 60_000 }, async () => {
  const before1 = server.count(MODEL);
  const first = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    await t.clearCache(model);
    const events = [];
    const engine = await t.load(model, { precision: 'keep', chunkBytes: 1 << 20, onProgress: (p) => events.push(p) });
    const r = engine.loadResult;
    await engine.unload();
    return { r, events };
  }, MODEL);
  const after1 = server.count(MODEL);
  assert.equal(after1.requests - before1.requests, 1, 'one streaming fetch of the model');
  assert.equal(after1.bytes - before1.bytes, MODEL_SIZE);
  assert.equal(first.r.fromCache, false);
  assert.equal(first.r.storage, 'opfs');
  assert.equal(first.r.networkBytes, MODEL_SIZE);
  const dl = first.events.filter((e) => e.phase === 'download');
  const ld = first.events.filter((e) => e.phase === 'load');
  assert.ok(dl.length >= 2, 'download progress events');
  assert.equal(dl.at(-1).loaded, MODEL_SIZE);
  assert.equal(dl.at(-1).total, MODEL_SIZE);
  for (let i = 1; i < dl.length; i++) assert.ok(dl[i].loaded >= dl[i - 1].loaded, 'download progress never goes back');
  assert.ok(ld.length >= 3, 'engine load progress events');
  assert.equal(ld.at(-1).loaded, ld.at(-1).total);
  const comps = new Set(ld.map((e) => e.component));
  for (const c of ['embeddings', 'layers.0', 'layers.7']) assert.ok(comps.has(c), `progress names component ${c}`);

  const second = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    const events = [];
    const engine = await t.load(model, { precision: 'keep', onProgress: (p) => events.push(p.phase) });
    const text = await engine.generate('The king said', { maxTokens: 8, temperature: 0 }).text();
    const r = engine.loadResult;
    await engine.unload();
    return { r, phases: [...new Set(events)], text };
  }, MODEL);
  const after2 = server.count(MODEL);
  assert.equal(after2.requests, after1.requests, 'no request for the model on the second load');
  assert.equal(after2.bytes, after1.bytes, 'zero network bytes on the second load');
  assert.equal(second.r.fromCache, true);
  assert.equal(second.r.networkBytes, 0);
  assert.deepEqual(second.phases, ['cache', 'load']);
  assert.ok(expectedContinuation(demoGolden()[0]).startsWith(second.text), 'the stored copy gives the same output');
});

test('aborting a generation stops it; the engine stays usable', { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    const engine = await t.load(model, { precision: 'keep' });
    const ctl = new AbortController();
    const stream = engine.generate('The king said', { maxTokens: 400, temperature: 0, signal: ctl.signal });
    let n = 0, error = null;
    try {
      for await (const tok of stream) { if (++n === 5) ctl.abort(); }
    } catch (e) {
      error = { name: e.name, type: e.type, isTabfit: e instanceof t.TabfitError };
    }
    const stats = await stream.stats;
    // Leaving a for-await loop early (break) cancels too.
    const s2 = engine.generate('The king said', { maxTokens: 400, temperature: 0 });
    let m = 0;
    for await (const tok of s2) { if (++m === 3) break; }
    const stats2 = await s2.stats;
    const again = await engine.generate('The king said', { maxTokens: 16, temperature: 0 }).text();
    await engine.unload();
    return { n, error, stats, stats2, again };
  }, MODEL);
  assert.deepEqual(r.error, { name: 'TabfitError', type: 'aborted', isTabfit: true });
  assert.equal(r.stats.stop_reason, 'cancelled');
  assert.ok(r.stats.generated_tokens >= 5 && r.stats.generated_tokens < 400, `stopped early (${r.stats.generated_tokens})`);
  assert.ok(r.n < 400);
  assert.equal(r.stats2.stop_reason, 'cancelled');
  assert.ok(r.stats2.generated_tokens < 400);
  assert.ok(r.again.length > 0);
  assert.ok(expectedContinuation(demoGolden()[0]).startsWith(r.again), 'the next generation is correct');
});

test('unload() returns the ledger to zero and ends the engine', { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    const engine = await t.load(model, { precision: 'keep' });
    await engine.generate('In the beginning', { maxTokens: 4, temperature: 0 }).text();
    const before = await engine.memory();
    const after = await engine.unload();
    let afterErr = null;
    try { await engine.memory(); } catch (e) { afterErr = e.type; }
    return { before, after, afterErr };
  }, MODEL);
  const names = r.before.ledger.components.map((c) => c.name);
  for (const c of ['embeddings', 'layers.0', 'lm_head', 'kv_cache']) assert.ok(names.includes(c), `ledger has ${c}`);
  assert.ok(r.before.ledger.total_current > 16_000_000, 'weights (16.8 MB) are charged');
  assert.equal(r.before.ledger.total_current,
    r.before.ledger.components.reduce((s, c) => s + c.current_bytes, 0), 'components sum to the total');
  assert.ok(r.before.wasmHeapBytes >= r.before.ledger.total_current, 'the wasm heap holds the ledger');
  assert.ok(r.before.wasmHeapBytes < r.before.ledger.total_current + MODEL_SIZE,
    `no second copy of the model file in the wasm heap (heap ${r.before.wasmHeapBytes}, ledger ${r.before.ledger.total_current})`);
  assert.ok(r.before.jsHeap && r.before.jsHeap.jsHeapSizeLimit > 0, 'performance.memory is reported in Chromium');
  assert.equal(r.after.ledger.loaded, false);
  assert.equal(r.after.ledger.total_current, 0);
  assert.equal(r.after.ledger.total_peak, r.before.ledger.total_peak);
  for (const c of r.after.ledger.components) assert.equal(c.current_bytes, 0, `${c.name} freed`);
  assert.equal(r.afterErr, 'bad_state');
});

test('aborting a load rejects with an aborted TabfitError; a later load works', { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    const out = {};
    for (const cache of [false, true]) {
      const ctl = new AbortController();
      try {
        await t.load(model, { precision: 'keep', cache, chunkBytes: 1 << 20, signal: ctl.signal,
          onProgress: (p) => { if (p.loaded > 0) ctl.abort(); } });
        out[cache] = 'resolved';
      } catch (e) {
        out[cache] = e.type;
      }
    }
    const engine = await t.load(model, { precision: 'keep' });
    out.after = await engine.generate('The king said', { maxTokens: 4, temperature: 0 }).text();
    await engine.unload();
    return out;
  }, MODEL);
  assert.equal(r.false, 'aborted', 'abort during the download');
  assert.equal(r.true, 'aborted', 'abort during the engine load (cancel flag)');
  assert.ok(expectedContinuation(demoGolden()[0]).startsWith(r.after));
});

test('chunk hashes: a matching manifest loads, a wrong one fails as corrupt_data', { skip, timeout: 60_000 }, async () => {
  const { execFileSync } = await import('node:child_process');
  const good = JSON.parse(execFileSync(process.execPath, [path.join(repoRoot, 'web/tools/make-manifest.mjs'),
    path.join(repoRoot, MODEL), '--chunk', '4MiB'], { encoding: 'utf8' }));
  assert.equal(good.size, MODEL_SIZE);
  assert.equal(good.sha256.length, Math.ceil(MODEL_SIZE / (4 << 20)));
  const sha256 = good.sha256;
  const bad = { ...good, sha256: sha256.map((h, i) => (i === 2 ? '0'.repeat(64) : h)) };
  const r = await page.evaluate(async ({ model, good, bad }) => {
    const t = await import('/web/dist/index.js');
    const out = {};
    try {
      await t.load(model, { precision: 'keep', cache: false, manifest: bad });
      out.bad = 'resolved';
    } catch (e) {
      out.bad = { type: e.type, message: e.message };
    }
    const engine = await t.load(model, { precision: 'keep', cache: false, manifest: good });
    out.good = { storage: engine.loadResult.storage, held: engine.loadResult.heldChunksAfterLoad,
      text: await engine.generate('The king said',
      { maxTokens: 4, temperature: 0 }).text() };
    await engine.unload();
    return out;
  }, { model: MODEL, good, bad });
  assert.equal(r.bad.type, 'corrupt_data');
  assert.match(r.bad.message, /chunk 2 .*sha256/);
  assert.equal(r.good.storage, 'memory');
  assert.equal(r.good.held, 0, 'every JS chunk was dropped once the loader had read it');
  assert.ok(expectedContinuation(demoGolden()[0]).startsWith(r.good.text));
});

test('chat.completions.create streams OpenAI-shaped chunks (fallback format)', { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    const engine = await t.load(model, { precision: 'keep' });
    const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me of the king.' }];
    const chunks = [];
    for await (const c of await engine.chat.completions.create({ messages, stream: true, max_tokens: 12,
      temperature: 0 })) chunks.push(c);
    const whole = await engine.chat.completions.create({ messages, max_tokens: 12, temperature: 0 });
    const rendered = t.renderChat(messages, engine.info.chat_template);
    const direct = await engine.generate(rendered.prompt, { maxTokens: 12, temperature: 0, stop: rendered.stop }).text();
    await engine.unload();
    return { chunks, whole, rendered, direct };
  }, MODEL);
  assert.equal(r.rendered.format, 'fallback');
  assert.equal(r.rendered.prompt, 'You tell stories.\n\nUser: Tell me of the king.\nAssistant:');
  const first = r.chunks[0], last = r.chunks.at(-1);
  assert.equal(first.object, 'chat.completion.chunk');
  assert.deepEqual(first.choices[0].delta, { role: 'assistant' });
  assert.ok(['stop', 'length'].includes(last.choices[0].finish_reason));
  const streamed = r.chunks.map((c) => c.choices[0].delta.content ?? '').join('');
  assert.equal(streamed, r.direct);
  assert.equal(r.whole.object, 'chat.completion');
  assert.equal(r.whole.choices[0].message.content, r.direct);
  assert.equal(r.whole.usage.total_tokens, r.whole.usage.prompt_tokens + r.whole.usage.completion_tokens);
});

test("a profile's max_context caps the context; precision converts weights", { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    const profile = { ...t.PROFILES.custom, max_context: 128, weight_precision: 'q8_0', memory_budget_bytes: 0 };
    const e = await t.load(model, { profile });
    const out = { n_ctx: e.info.n_ctx, weight_bytes: e.info.weight_bytes, profile: e.profile.name };
    await e.unload();
    return out;
  }, MODEL);
  assert.equal(r.n_ctx, 128);
  assert.ok(r.weight_bytes < 10_000_000, `q8_0 weights are about half of f16 (${r.weight_bytes})`);
});

test('Blob and ArrayBuffer sources; two engines side by side', { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (model) => {
    const t = await import('/web/dist/index.js');
    const bytes = await (await fetch(model)).arrayBuffer();
    const blob = new Blob([bytes]);
    const a = await t.load(blob, { precision: 'keep', build: 'baseline' });
    const b = await t.load(bytes, { precision: 'keep' });
    const [ta, tb] = await Promise.all([
      a.generate('In the beginning', { maxTokens: 12, temperature: 0 }).text(),
      b.generate('In the beginning', { maxTokens: 12, temperature: 0 }).text(),
    ]);
    const out = { ta, tb, sa: a.loadResult.storage, sb: b.loadResult.storage, stillHave: bytes.byteLength };
    await a.unload();
    await b.unload();
    return out;
  }, MODEL);
  const want = expectedContinuation(demoGolden()[2]);
  assert.ok(r.ta.length > 0 && want.startsWith(r.ta), `Blob source output: ${r.ta}`);
  assert.equal(r.tb, r.ta);
  assert.equal(r.stillHave, MODEL_SIZE, "the caller's ArrayBuffer is copied, not detached");
});

test('errors are TabfitErrors naming cause and remedy', { skip, timeout: 60_000 }, async () => {
  const r = await page.evaluate(async () => {
    const t = await import('/web/dist/index.js');
    const out = {};
    for (const [k, f] of [
      ['missing', () => t.load('/models/nope.gguf', { cache: false })],
      ['profile', () => t.load('/models/tabfit-demo-8m-f16.gguf', { profile: 'netscape' })],
      ['notGguf', () => t.load('/tests/web/page.html', { cache: false })],
      ['precision', () => t.load('/models/tabfit-demo-8m-f16.gguf', { precision: 'q9_9' })],
      ['budget', () => t.load('/models/tabfit-demo-8m-f16.gguf', { precision: 'keep', budgetBytes: 4e6 })],
    ]) {
      try { await f(); out[k] = 'resolved'; } catch (e) { out[k] = { type: e.type, message: e.message, tf: e instanceof t.TabfitError }; }
    }
    return out;
  });
  assert.equal(r.missing.type, 'not_found');
  assert.match(r.missing.message, /nope\.gguf: HTTP 404/);
  assert.equal(r.profile.type, 'not_found');
  assert.match(r.profile.message, /unknown profile "netscape"/);
  assert.equal(r.notGguf.type, 'corrupt_data');
  assert.equal(r.precision.type, 'invalid_argument');
  assert.match(r.precision.message, /q9_9/);
  assert.equal(r.budget.type, 'out_of_memory');
  assert.match(r.budget.message, /budget/);
  for (const v of Object.values(r)) assert.equal(v.tf, true);
});

test('without cross-origin isolation, auto picks the baseline build; threads is refused', { skip, timeout: 60_000 }, async () => {
  const plain = await startServer(repoRoot, { isolate: false });
  const p2 = await browser.context.newPage();
  try {
    await p2.goto(`${plain.origin}/tests/web/page.html`);
    const r = await p2.evaluate(async (model) => {
      const t = await import('/web/dist/index.js');
      const out = { coi: crossOriginIsolated, detected: t.detectBuild() };
      const e = await t.load(model, { precision: 'keep' });
      out.build = e.build;
      out.threads = e.info.threads;
      out.text = await e.generate('The king said', { maxTokens: 8, temperature: 0 }).text();
      await e.unload();
      try { await t.load(model, { build: 'threads' }); out.forced = 'resolved'; } catch (err) { out.forced = err.type; }
      return out;
    }, MODEL);
    assert.equal(r.coi, false);
    assert.equal(r.detected, 'baseline');
    assert.equal(r.build, 'baseline');
    assert.equal(r.threads, 1);
    assert.ok(expectedContinuation(demoGolden()[0]).startsWith(r.text));
    assert.equal(r.forced, 'unsupported');
  } finally {
    await p2.close();
    await plain.close();
  }
});
