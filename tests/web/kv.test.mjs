// Browser tests of the KV cache options and operations (issue 16): the low-bit
// cache from LoadOptions.kvCache (the spec's names camelCased), get(layer,
// position), requantize / prune / truncate freeing what the engine's ledger
// shows, generation going on afterwards, and errors in the JS option names.
// Headless Chromium (/usr/bin/chromium), web/dist built.
//
// Run: scripts/build-wasm.sh && node --test --test-concurrency=1 tests/web/kv.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { launch, repoRoot, skipReason } from './browser.mjs';

const MODEL = '/models/tabfit-demo-8m-f16.gguf';
const skip = skipReason();
let server, browser, page;

before(async () => {
  if (skip) return;
  server = await startServer(repoRoot);
  browser = await launch();
  page = await browser.page(`${server.origin}/tests/web/page.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

for (const build of ['threads', 'baseline']) {
  test(`kvCache: a 4-bit cache with a 16-bit window, get(), requantize, prune and truncate free ledger bytes (${build})`,
    { skip, timeout: 120_000 }, async () => {
      const r = await page.evaluate(async ({ model, build }) => {
        const t = await import('/web/dist/index.js');
        const engine = await t.load(model, { build, precision: 'keep', threads: 1, cache: false,
          kvCache: { defaultBits: 4, recentTokenBits: 16, rollingWindow: 32,
            pruning: { strategy: 'budget', budget: 48, maxTokensToDrop: 1 } } });
        const ledger = async () => (await engine.memory()).ledger;
        const kvBytes = (l) => l.components.filter((c) => c.name === 'kv_cache').reduce((a, c) => a + c.current_bytes, 0);
        const text = await engine.generate('It is a truth universally acknowledged', { maxTokens: 100, temperature: 0 }).text();
        const info = await engine.kv();
        const first = await engine.kvGet(3, 0);
        const last = await engine.kvGet(3, info.tokens - 1);
        let missing;
        try { await engine.kvGet(3, info.tokens + 5); missing = 'resolved'; } catch (e) { missing = e.type; }
        const before = await ledger();
        const rq = await engine.requantizeKv({ defaultBits: 2, recentTokenBits: 8 });
        const afterRq = await ledger();
        const lowered = await engine.kvGet(3, 0);
        const pr = await engine.pruneKv();
        const afterPr = await ledger();
        const tr = await engine.truncateKv(20);
        const cw = await engine.setContextWindow(16);
        const cwBack = await engine.setContextWindow(512);
        const again = await engine.generate(' and', { maxTokens: 8, temperature: 0 }).text();
        let bad;
        try { await engine.configurePruning({ threshold: 2 }); bad = 'resolved'; } catch (e) { bad = { type: e.type, message: e.message }; }
        await engine.unload();
        let badLoad;
        try {
          await t.load(model, { build, precision: 'keep', threads: 1, cache: false, kvCache: { defaultBits: 5 } });
          badLoad = 'resolved';
        } catch (e) { badLoad = { type: e.type, message: e.message }; }
        return { cw, cwBack, text, info, first: { bits: first.bits, n: first.k.length, finite: first.k.every(Number.isFinite) },
          last: { bits: last.bits, n: last.v.length }, missing, rq, pr, tr, again, bad, badLoad,
          lowered: lowered.bits, kvBefore: kvBytes(before), kvAfterRq: kvBytes(afterRq), kvAfterPr: kvBytes(afterPr),
          totalBefore: before.total_current, totalAfterRq: afterRq.total_current };
      }, { model: MODEL, build });
      console.log(`# ${build}: ${r.info.tokens} tokens in ${r.info.bytes} B; requantize freed ${r.rq.bytesFreed} B, ` +
        `prune dropped ${r.pr.tokensPruned} tokens (${r.pr.bytesFreed} B), truncate to ${r.tr.tokens}`);
      assert.ok(r.text.length > 0);
      assert.ok(r.info.tokens > 100, `tokens held: ${r.info.tokens}`);
      assert.deepEqual(r.first, { bits: 4, n: 128, finite: true });  // 2 kv heads x 64 in the demo model
      assert.deepEqual(r.last, { bits: 16, n: 128 });
      assert.equal(r.missing, 'not_found');
      assert.ok(r.rq.bytesFreed > 0);
      assert.equal(r.kvAfterRq, r.kvBefore - r.rq.bytesFreed);
      assert.equal(r.totalAfterRq, r.totalBefore - r.rq.bytesFreed);
      assert.equal(r.lowered, 2);
      assert.equal(r.pr.tokens, 68);  // budget 48, but 4 sinks + the protected recent window (64) stay
      assert.equal(r.pr.tokensPruned, r.info.tokens - 68);
      assert.equal(r.kvAfterPr, r.kvAfterRq - r.pr.bytesFreed);
      assert.equal(r.tr.tokens, 24);
      assert.deepEqual([r.cw.tokens, r.cw.capacity, r.cwBack.capacity], [16, 16, 512]);
      assert.ok(r.again.length > 0);
      assert.equal(r.bad.type, 'invalid_argument');
      assert.match(r.bad.message, /threshold must be in \[0, 1\]/);
      assert.equal(r.badLoad.type, 'invalid_argument');
      assert.match(r.badLoad.message, /kvCache\.defaultBits must be 2, 3 or 4/);
    });
}
