// Browser tests of progressive loading and layer residency (issue 15): a model
// larger than the engine's budget runs from the origin private file system
// (layers stream from the stored copy through a FileSystemSyncAccessHandle the
// worker keeps open), component events reach onProgress, and
// components() / loadComponents() / unloadComponents() / swap() work on a
// loaded engine. Headless Chromium (/usr/bin/chromium), web/dist built.
//
// Run: scripts/build-wasm.sh && node --test --test-concurrency=1 tests/web/residency.test.mjs
// Needs ../shared (golden outputs); skips, saying why, without it or without a build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from './server.mjs';
import { launch, repoRoot, demoGolden, sharedDir, skipReason } from './browser.mjs';

const MODEL = '/models/tabfit-demo-8m-f16.gguf';
const MODEL_SIZE = fs.statSync(path.join(repoRoot, MODEL)).size;
const BIG_FILE = path.join(sharedDir(), 'models/tabfit-test-30m-f16.gguf');
const BIG = '/shared-models/tabfit-test-30m-f16.gguf';
const TOKENS = 24;
const skip = skipReason();

let server, browser, page;

before(async () => {
  if (skip) return;
  server = await startServer(repoRoot, { mounts: { '/shared-models/': path.join(sharedDir(), 'models') + '/' } });
  browser = await launch();
  page = await browser.page(`${server.origin}/tests/web/page.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

function golden(model, prompt) {
  const lines = fs.readFileSync(path.join(sharedDir(), 'models/golden/greedy.jsonl'), 'utf8').split('\n');
  const g = lines.filter(Boolean).map((l) => JSON.parse(l)).find((j) => j.model === model && j.prompt === prompt);
  assert.ok(g, `a golden output for ${model} / ${prompt}`);
  const prefix = `<s> ${g.prompt}`;
  assert.ok(g.output.startsWith(prefix));
  return g.output.slice(prefix.length).replace(/\n$/, '');
}

// The engine's error for a budget too small to stream says the minimum (1 ring slot) and the
// minimum with the default 2 slots, in MiB with one decimal: round up past the rounding.
// `probe`: a budget that holds the KV cache and activations but not the weights.
async function streamingMinimum(model, build, probe = 4e6) {
  const msg = await page.evaluate(async ({ model, build, probe }) => {
    const t = await import('/web/dist/index.js');
    try {
      await t.load(model, { build, precision: 'keep', threads: 1, budgetBytes: probe });
      return 'resolved';
    } catch (e) {
      return `${e.type}: ${e.message}`;
    }
  }, { model, build, probe });
  const m = /^out_of_memory: .*too small even to stream the layers.*the minimum is ([\d.]+) MiB \(([\d.]+) MiB to read the next layer/.exec(msg);
  assert.ok(m, `the engine says the minimum budget: ${msg}`);
  const up = (mib) => Math.ceil((Number(mib) + 0.05) * 1048576);
  return { oneSlot: up(m[1]), twoSlots: up(m[2]) };
}

// In the page: load, generate greedily, report components, ledger, heap, events; check that the stored
// copy is locked (its access handle open) while the engine runs; unload.
async function runInPage({ model, build, options, prompt, tokens }) {
  return page.evaluate(async ({ model, build, options, prompt, tokens }) => {
    const t = await import('/web/dist/index.js');
    const events = [];
    const engine = await t.load(model, { build, precision: 'keep', threads: 1, chunkBytes: 1 << 20, ...options,
      onProgress: (p) => events.push(p) });
    const stream = engine.generate(prompt, { maxTokens: tokens, temperature: 0 });
    const ids = [];
    let text = '';
    for await (const tok of stream) { text += tok.text; if (tok.token >= 0) ids.push(tok.token); }
    const stats = await stream.stats;
    const components = await engine.components();
    const mem = await engine.memory();
    const url = new URL(model, location.href).toString();
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url));
    const key = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('').slice(0, 32);
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('tabfit-models');
    let locked, clearing;
    try { await t.clearCache(model); clearing = 'resolved'; } catch (e) { clearing = { type: e.type, message: e.message }; }
    const recordKept = await dir.getFileHandle(`${key}.json`).then(() => true, () => false);
    try { await dir.removeEntry(`${key}.bin`); locked = 'removed'; } catch (e) { locked = e.name; }
    let grow = null;
    if (options.budgetBytes) {
      // Keeping every layer does not fit the budget: refused, and the engine still runs within it.
      try { await engine.loadComponents(['layers']); grow = 'resolved'; } catch (e) { grow = { type: e.type, message: e.message }; }
      const again = await engine.generate(prompt, { maxTokens: 4, temperature: 0 }).text();
      grow = { ...grow, again, peak: (await engine.memory()).ledger.total_peak };
    }
    const unloaded = await engine.unload();
    // The access handle is closed on unload: the stored copy can be removed now.
    const removed = await t.clearCache(model);
    let gone;
    try { await dir.getFileHandle(`${key}.bin`); gone = false; } catch (e) { gone = e.name === 'NotFoundError'; }
    return { ids, text, stats, components, ledger: mem.ledger, heap: mem.wasmHeapBytes, lr: engine.loadResult,
      events, locked, clearing, recordKept, grow, unloadedTotal: unloaded.ledger.total_current, removed, gone };
  }, { model, build, options, prompt, tokens });
}

for (const build of ['threads', 'baseline']) {
  test(`a model over the budget streams its layers from OPFS: same tokens as resident and as the golden (${build} build)`,
    { skip, timeout: 120_000 }, async () => {
      const min = await streamingMinimum(MODEL, build);
      const prompt = 'The king said';
      const want = golden('tabfit-demo-8m-f16.gguf', prompt);
      // Each run downloads afresh (runInPage removes the stored copy after unload): the worker writes OPFS
      // chunk by chunk, reopens the copy read-only and keeps it open while the engine runs. Streamed first.
      await page.evaluate(async (m) => (await import('/web/dist/index.js')).clearCache(m), MODEL);
      const streamed = await runInPage({ model: MODEL, build, prompt, tokens: TOKENS,
        options: { budgetBytes: min.twoSlots } });
      const resident = await runInPage({ model: MODEL, build, prompt, tokens: TOKENS, options: {} });
      const runs = { streamed, resident };
      if (build === 'baseline') {
        runs.oneSlot = await runInPage({ model: MODEL, build, prompt, tokens: TOKENS,
          options: { budgetBytes: min.oneSlot, ringSlots: 1 } });
      }
      console.log(`# ${build}: streaming minimum ${min.oneSlot} B (1 slot), ${min.twoSlots} B (2 slots); ` +
        Object.entries(runs).map(([k, r]) => `${k}: ledger peak ${r.ledger.total_peak} / budget ${r.ledger.budget_bytes}, ` +
          `heap ${r.heap}, streamed ${r.stats.streamed_bytes} B, ${r.components.summary}`).join('; '));

      assert.equal(resident.ids.length, TOKENS);
      assert.equal(resident.lr.streaming, false);
      assert.equal(resident.components.streamed_layers, 0);
      assert.equal(resident.stats.streamed_bytes, 0);
      assert.ok(want.startsWith(resident.text) && resident.text.length > 40, `resident text is the golden's start: ${resident.text}`);
      for (const [name, r] of Object.entries(runs)) {
        if (name === 'resident') continue;
        const budget = name === 'oneSlot' ? min.oneSlot : min.twoSlots;
        assert.deepEqual(r.ids, resident.ids, `${name}: the same ${TOKENS} greedy tokens as the resident run`);
        assert.equal(r.text, resident.text);
        assert.equal(r.lr.storage, 'opfs');
        assert.equal(r.lr.sourceKept, true, 'the worker keeps the stored copy open');
        assert.equal(r.lr.streaming, true);
        const c = r.components;
        assert.equal(c.streaming, true);
        assert.ok(c.streamed_layers > 0, `${name}: layers stream (${c.summary})`);
        const layers = c.components.filter((x) => /^layers\.\d+$/.test(x.name));
        assert.equal(layers.length, 8);
        assert.equal(layers.filter((x) => !x.pinned).length, c.streamed_layers, 'components() lists the streamed layers');
        for (const x of layers.filter((l) => !l.pinned)) {
          assert.ok(x.loads >= TOKENS, `${x.name} was read for every forward pass (${x.loads})`);
        }
        assert.ok(c.streamed_bytes_per_pass > 0);
        assert.ok(r.stats.streamed_bytes >= (r.stats.generated_tokens - 1) * c.streamed_bytes_per_pass,
          `layers were read from OPFS during generation (${r.stats.streamed_bytes} B)`);
        assert.equal(r.ledger.budget_bytes, budget);
        assert.ok(r.ledger.total_peak <= budget, `${name}: ledger peak ${r.ledger.total_peak} <= budget ${budget}`);
        assert.ok(r.ledger.total_peak < resident.ledger.total_peak - MODEL_SIZE / 2,
          `${name}: the weights are not all in memory (${r.ledger.total_peak} vs ${resident.ledger.total_peak})`);
        assert.equal(r.grow.type, 'out_of_memory', `keeping every layer does not fit: ${JSON.stringify(r.grow)}`);
        assert.ok(resident.text.startsWith(r.grow.again), 'the engine still generates after the refused load');
        assert.ok(r.grow.peak <= budget, 'the ledger never passed the budget');
      }
      for (const [name, r] of Object.entries(runs)) {
        assert.equal(r.locked, 'NoModificationAllowedError', `${name}: the stored copy is open while the engine runs`);
        assert.equal(r.clearing.type, 'io', `${name}: clearCache refuses a copy in use`);
        assert.match(r.clearing.message, /open in a running engine/);
        assert.equal(r.recordKept, true, `${name}: and keeps its record`);
        assert.equal(r.unloadedTotal, 0);
        assert.equal(r.removed, 1, `${name}: after unload the stored copy can be removed`);
        assert.equal(r.gone, true, `${name}: the access handle was closed on unload`);
      }
      // The fresh download went to OPFS in 1 MiB chunks (the file is never whole in JS or in the heap).
      const dl = streamed.events.filter((e) => e.phase === 'download');
      assert.ok(dl.length >= 2 && dl.at(-1).loaded === MODEL_SIZE && streamed.lr.networkBytes === MODEL_SIZE);
    });
}

test('onProgress gets download and component events: embeddings and layers become resident', { skip, timeout: 60_000 }, async () => {
  const min = await streamingMinimum(MODEL, 'baseline');
  const r = await page.evaluate(async ({ model, budget }) => {
    const t = await import('/web/dist/index.js');
    await t.clearCache(model);
    const out = {};
    for (const [k, opts] of [['resident', {}], ['streamed', { budgetBytes: budget }],
      ['priority', { priorityComponents: ['lm_head', 'layers.5'] }]]) {
      const events = [];
      const e = await t.load(model, { build: 'baseline', precision: 'keep', chunkBytes: 1 << 20, ...opts,
        onProgress: (p) => events.push(p) });
      // Later component loads report to the same onProgress.
      const before = events.length;
      await e.unloadComponents(['layers.3']);
      await e.loadComponents(['layers.3']);
      out[k] = { events: events.slice(0, before), later: events.slice(before) };
      await e.unload();
    }
    return out;
  }, { model: MODEL, budget: min.twoSlots });
  const names = ['embeddings', 'output_norm', 'lm_head', ...Array.from({ length: 8 }, (_, i) => `layers.${i}`)];
  const res = r.resident.events;
  const dl = res.filter((e) => e.phase === 'download');
  assert.ok(dl.length >= 2, 'download events');
  for (const e of dl) { assert.equal(e.component, 'network'); assert.equal(e.state, undefined); }
  const ld = res.filter((e) => e.phase === 'load');
  for (const e of ld) assert.ok(['loading', 'resident'].includes(e.state), `load event state ${e.state}`);
  const residentOf = (evs) => evs.filter((e) => e.phase === 'load' && e.state === 'resident').map((e) => e.component);
  assert.deepEqual([...residentOf(res)].sort(), [...names].sort(), 'every component becomes resident once');
  assert.deepEqual(residentOf(res).slice(0, 3), ['embeddings', 'layers.0', 'lm_head'], 'the default priority order');
  const lastLoad = ld.filter((e) => e.state === 'resident').at(-1);
  assert.equal(lastLoad.loaded, lastLoad.total, 'the last event has every pinned byte loaded');
  assert.ok(lastLoad.total > 16_000_000 && lastLoad.total < MODEL_SIZE, `pinned bytes ${lastLoad.total}`);
  for (let i = 1; i < ld.length; i++) assert.ok(ld[i].loaded >= ld[i - 1].loaded, 'load bytes never go back');
  assert.deepEqual(residentOf(r.resident.later), ['layers.3'], 'loadComponents reports to onProgress');

  // Streaming: only the pinned components load (and report); their total excludes the streamed layers.
  const st = r.streamed.events.filter((e) => e.phase === 'load');
  assert.ok(r.streamed.events.some((e) => e.phase === 'cache' && e.component === 'storage'));
  const stRes = residentOf(st);
  for (const c of ['embeddings', 'lm_head', 'output_norm']) assert.ok(stRes.includes(c), `${c} resident`);
  assert.ok(stRes.filter((c) => c.startsWith('layers.')).length < 8, 'streamed layers are not loaded up front');
  assert.ok(st.at(-1).total < lastLoad.total / 2, `pinned bytes when streaming: ${st.at(-1).total}`);
  assert.deepEqual(residentOf(r.streamed.later), ['layers.3'], 'an evicted layer is pinned again on loadComponents');

  assert.deepEqual(residentOf(r.priority.events).slice(0, 2), ['lm_head', 'layers.5'], 'priorityComponents order');
});

test('unloadComponents / loadComponents / swap: idempotent, the ledger drops by the layer bytes and comes back, the heap stays',
  { skip, timeout: 90_000 }, async () => {
    const r = await page.evaluate(async ({ model }) => {
      const t = await import('/web/dist/index.js');
      const e = await t.load(model, { build: 'baseline', precision: 'keep' });
      const snap = async (label) => {
        const m = await e.memory();
        const c = await e.components();
        return { label, total: m.ledger.total_current, peak: m.ledger.total_peak, heap: m.wasmHeapBytes,
          layerBytes: m.ledger.components.filter((x) => /^layers\.\d+$/.test(x.name)).reduce((s, x) => s + x.current_bytes, 0),
          layerSizes: c.components.filter((x) => /^layers\.\d+$/.test(x.name)).reduce((s, x) => s + x.bytes, 0),
          states: c.components.filter((x) => /^layers\./.test(x.name)).map((x) => `${x.state}${x.pinned ? '+' : ''}`),
          streamed: c.streamed_layers };
      };
      const gen = async (n) => {
        const s = e.generate('The king said', { maxTokens: n, temperature: 0 });
        const ids = [];
        for await (const x of s) if (x.token >= 0) ids.push(x.token);
        return { ids, streamed: (await s.stats).streamed_bytes };
      };
      const out = { steps: [] };
      out.g0 = await gen(8);
      out.steps.push(await snap('loaded'));
      await e.unloadComponents(['layers']);
      out.steps.push(await snap('unloaded'));
      await e.unloadComponents('layers');
      out.steps.push(await snap('unloaded again'));
      out.g1 = await gen(8);  // every layer streams from the stored copy now
      await e.loadComponents(['layers']);
      out.steps.push(await snap('loaded'));
      await e.loadComponents(['layers']);
      out.steps.push(await snap('loaded again'));
      out.cycles = [];
      for (let i = 0; i < 4; i++) {
        const a = await e.swap(['layers'], ['layers.0']);
        const out1 = await snap(`cycle ${i} out`);
        await e.swap([], ['layers']);
        const in1 = await snap(`cycle ${i} in`);
        out.cycles.push({ out: out1, in: in1, swapResult: a.components.filter((x) => /^layers\./.test(x.name) && x.pinned).map((x) => x.name) });
      }
      await e.swap(['layers.3'], ['layers.3']);
      out.steps.push(await snap('swap layers.3 for itself'));
      out.g2 = await gen(8);
      const errs = {};
      for (const [k, f] of [
        ['embeddings', () => e.unloadComponents(['embeddings'])],
        ['name', () => e.loadComponents(['layer.3'])],
        ['range', () => e.swap(['layers.99'], [])],
        ['type', () => e.loadComponents([3])],
      ]) {
        try { await f(); errs[k] = 'resolved'; } catch (err) { errs[k] = { type: err.type, message: err.message, tf: err instanceof t.TabfitError }; }
      }
      // Not while a generation runs.
      const s = e.generate('The king said', { maxTokens: 200, temperature: 0 });
      for await (const x of s) {
        try { await e.unloadComponents(['layers']); errs.generating = 'resolved'; } catch (err) { errs.generating = { type: err.type, message: err.message }; }
        break;  // leaving the loop cancels the generation
      }
      await s.stats;
      out.errs = errs;
      await e.unload();
      try { await e.components(); out.afterUnload = 'resolved'; } catch (err) { out.afterUnload = err.type; }
      return out;
    }, { model: MODEL });
    const [loaded, unloaded, unloadedAgain, reloaded, reloadedAgain, self] = r.steps;
    console.log(`# swap: ledger ${loaded.total} loaded, ${unloaded.total} with layers unloaded, ${reloaded.total} reloaded; ` +
      `layers ${loaded.layerBytes} B; heap per cycle ${r.cycles.map((c) => c.in.heap).join(', ')}`);
    assert.equal(loaded.layerBytes, loaded.layerSizes, 'the ledger charges each layer its bytes');
    assert.ok(loaded.layerBytes > 12_000_000);
    assert.ok(loaded.states.every((s) => s === 'resident+'));
    assert.equal(unloaded.total, loaded.total - loaded.layerBytes, 'unloading the layers frees exactly their bytes');
    assert.equal(unloaded.layerBytes, 0);
    assert.ok(unloaded.states.every((s) => s === 'evicted'), `evicted: ${unloaded.states}`);
    assert.equal(unloaded.streamed, 8);
    assert.deepEqual(unloadedAgain, { ...unloaded, label: 'unloaded again' }, 'unloadComponents is idempotent');
    assert.deepEqual(r.g1.ids, r.g0.ids, 'unloaded layers stream from the stored copy: same tokens');
    assert.ok(r.g1.streamed > 0 && r.g0.streamed === 0);
    assert.equal(reloaded.layerBytes, loaded.layerBytes, 'the layers come back');
    assert.ok(reloaded.states.every((s) => s === 'resident+'));
    assert.equal(reloaded.streamed, 0);
    // The ring slot the streaming generation used stays allocated (stream_buffers): that is the difference.
    assert.ok(reloaded.total >= loaded.total && reloaded.total - loaded.total <= loaded.layerBytes / 8,
      `reloaded ${reloaded.total} vs ${loaded.total}`);
    assert.deepEqual(reloadedAgain, { ...reloaded, label: 'loaded again' }, 'loadComponents is idempotent');
    const first = r.cycles[0];
    for (const [i, c] of r.cycles.entries()) {
      assert.deepEqual(c.swapResult, ['layers.0'], `cycle ${i}: swap unloads first, then loads`);
      assert.equal(c.in.total - c.out.total, loaded.layerBytes - loaded.layerBytes / 8, `cycle ${i}: 7 layers' bytes`);
      assert.equal(c.in.total, reloaded.total, `cycle ${i}: the ledger comes back`);
      assert.equal(c.out.total, first.out.total);
      if (i > 0) {
        assert.equal(c.in.heap, first.in.heap, `cycle ${i}: the wasm heap does not grow after the first cycle`);
        assert.equal(c.out.heap, first.out.heap);
      }
    }
    assert.equal(self.total, reloaded.total);
    assert.deepEqual(r.g2.ids, r.g0.ids);
    assert.equal(r.errs.embeddings.type, 'invalid_argument');
    assert.match(r.errs.embeddings.message, /embeddings/);
    assert.equal(r.errs.name.type, 'invalid_argument');
    assert.match(r.errs.name.message, /^loadComponents: .*unknown component 'layer\.3'; this model has embeddings, layers\.0 to layers\.7/);
    assert.equal(r.errs.range.type, 'invalid_argument');
    assert.match(r.errs.range.message, /^swap: .*layers\.99/);
    assert.equal(r.errs.type.type, 'invalid_argument');
    for (const k of ['embeddings', 'name', 'range', 'type']) assert.equal(r.errs[k].tf, true);
    assert.equal(r.errs.generating.type, 'bad_state');
    assert.match(r.errs.generating.message, /unloadComponents: a generation is running/);
    assert.equal(r.afterUnload, 'bad_state');
  });

test('residency options: JS names in errors, memoryThreshold, keepNLayersLoaded, ArrayBuffer and Blob sources',
  { skip, timeout: 90_000 }, async () => {
    const min = await streamingMinimum(MODEL, 'baseline');
    const r = await page.evaluate(async ({ model, budget }) => {
      const t = await import('/web/dist/index.js');
      const out = {};
      const attempt = async (k, f) => {
        try { const e = await f(); out[k] = { summary: (await e.components()).summary, lr: e.loadResult,
          peak: (await e.memory()).ledger.total_peak, text: await e.generate('The king said', { maxTokens: 6, temperature: 0 }).text() };
        await e.unload(); } catch (err) { out[k] = { type: err.type, message: err.message }; }
      };
      const base = { build: 'baseline', precision: 'keep' };
      await attempt('noStream', () => t.load(model, { ...base, budgetBytes: budget, unloadUnusedLayers: false }));
      await attempt('ring', () => t.load(model, { ...base, ringSlots: 0 }));
      await attempt('background', () => t.load(model, { ...base, backgroundLoading: true }));
      await attempt('priority', () => t.load(model, { ...base, priorityComponents: ['layers.42'] }));
      await attempt('draft', () => t.load(model, { ...base, draftTokens: 2 }));
      await attempt('threshold', () => t.load(model, { ...base, memoryThreshold: 14e6 }));
      await attempt('keep', () => t.load(model, { ...base, keepNLayersLoaded: 3 }));
      const bytes = await (await fetch(model)).arrayBuffer();
      await attempt('bytes', () => t.load(bytes, { ...base, budgetBytes: budget }));
      await attempt('bytesKept', () => t.load(bytes, { ...base, budgetBytes: budget, unloadUnusedLayers: true }));
      await attempt('blob', () => t.load(new Blob([bytes]), { ...base, budgetBytes: budget }));
      // Bytes not kept after the load: unloading a layer (which could never be read again) is refused,
      // the error says what to do, and the model keeps working.
      const e = await t.load(bytes, base);
      out.dropped = e.loadResult.sourceKept;
      try { await e.unloadComponents(['layers.2']); out.reread = 'resolved'; } catch (err) { out.reread = { type: err.type, message: err.message }; }
      out.after = await e.generate('The king said', { maxTokens: 6, temperature: 0 }).text();
      await e.unload();
      return out;
    }, { model: MODEL, budget: min.twoSlots });
    const want = golden('tabfit-demo-8m-f16.gguf', 'The king said');
    assert.equal(r.noStream.type, 'out_of_memory');
    assert.match(r.noStream.message, /unloadUnusedLayers/);
    assert.doesNotMatch(r.noStream.message, /unload_unused_layers/);
    assert.equal(r.ring.type, 'invalid_argument');
    assert.match(r.ring.message, /ringSlots/);
    assert.equal(r.background.type, 'unsupported');
    assert.match(r.background.message, /backgroundLoading/);
    assert.equal(r.priority.type, 'invalid_argument');
    assert.match(r.priority.message, /layers\.42/);
    assert.equal(r.draft.type, 'invalid_argument');
    assert.match(r.draft.message, /draftTokens needs draftModel/);
    assert.match(r.threshold.summary, /layers stream/, `memoryThreshold below the model streams: ${r.threshold.summary}`);
    assert.ok(r.threshold.peak <= 14e6, `memoryThreshold caps the ledger (${r.threshold.peak})`);
    assert.match(r.keep.summary, /^weights: [0-2] of 8 layers/, `keepNLayersLoaded: ${r.keep.summary}`);
    assert.equal(r.bytes.type, 'out_of_memory', 'an ArrayBuffer does not stream unless asked (it would stay in JS)');
    assert.equal(r.bytesKept.lr.sourceKept, true);
    assert.ok(r.bytesKept.lr.heldChunksAfterLoad > 0, 'unloadUnusedLayers: true keeps the chunks');
    assert.equal(r.blob.lr.sourceKept, true);
    assert.equal(r.blob.lr.streaming, true);
    for (const k of ['threshold', 'keep', 'bytesKept', 'blob']) {
      assert.ok(r[k].text.length > 0 && want.startsWith(r[k].text), `${k}: ${r[k].text}`);
    }
    assert.equal(r.dropped, false);
    assert.equal(r.reread.type, 'invalid_argument');
    assert.match(r.reread.message, /unloadUnusedLayers/);
    assert.doesNotMatch(r.reread.message, /unload_unused_layers/);
    assert.ok(r.after.length > 0 && want.startsWith(r.after), `after the refused unload: ${r.after}`);
  });

test('a model larger than the whole wasm heap runs from OPFS (30M test model)',
  { skip: skip || (!fs.existsSync(BIG_FILE) && `missing ${BIG_FILE}`), timeout: 120_000 }, async () => {
    const size = fs.statSync(BIG_FILE).size;
    const min = await streamingMinimum(BIG, 'baseline', 12e6);
    const prompt = 'She looked at him and';
    const r = await runInPage({ model: BIG, build: 'baseline', prompt, tokens: TOKENS, options: { budgetBytes: min.twoSlots } });
    console.log(`# 30M: file ${size} B, budget ${min.twoSlots} B, ledger peak ${r.ledger.total_peak}, heap ${r.heap}, ` +
      `streamed ${r.stats.streamed_bytes} B; ${r.components.summary}`);
    const want = golden('tabfit-test-30m-f16.gguf', prompt);
    assert.equal(r.ids.length, TOKENS);
    assert.ok(r.text.length > 40 && want.startsWith(r.text), `streamed output is the golden's start: ${r.text}`);
    assert.ok(r.ledger.total_peak <= min.twoSlots);
    assert.ok(r.heap < size, `the wasm heap (${r.heap} B) is smaller than the model (${size} B): no copy of the file in it`);
    assert.ok(r.components.streamed_layers > 0);
    assert.equal(r.gone, true, 'the access handle was closed on unload');
  });

test('draftModel: the demo model drafts for the 30M model; same greedy text, tokens accepted; "draft" unloads and loads',
  { skip: skip || (!fs.existsSync(BIG_FILE) && `missing ${BIG_FILE}`), timeout: 120_000 }, async () => {
    const prompt = 'She looked at him and';
    const r = await page.evaluate(async ({ big, draft, prompt, tokens }) => {
      const t = await import('/web/dist/index.js');
      const out = {};
      const events = [];
      const e = await t.load(big, { build: 'baseline', precision: 'keep', draftModel: draft, draftTokens: 4,
        onProgress: (p) => events.push(p) });
      out.draftEvents = events.filter((p) => p.component === 'draft').map((p) => p.phase);
      const gen = async () => {
        const s = e.generate(prompt, { maxTokens: tokens, temperature: 0 });
        const ids = [];
        let text = '';
        for await (const x of s) { text += x.text; if (x.token >= 0) ids.push(x.token); }
        return { ids, text, stats: await s.stats };
      };
      out.first = await gen();
      const comps = await e.components();
      out.draft = comps.components.find((c) => c.name === 'draft');
      const ledger = (await e.memory()).ledger;
      out.draftLedger = ledger.components.filter((c) => c.name.startsWith('draft.')).reduce((s, c) => s + c.current_bytes, 0);
      out.total = ledger.total_current;
      out.unloaded = (await e.unloadComponents(['draft'])).components.find((c) => c.name === 'draft');
      out.totalUnloaded = (await e.memory()).ledger.total_current;
      out.plain = await gen();  // no draft: plain decoding
      out.loaded = (await e.loadComponents('draft')).components.find((c) => c.name === 'draft');
      out.again = await gen();
      await e.unload();
      const errs = {};
      for (const [k, f] of [
        ['vocab', () => t.load('/models/tabfit-demo-8m-f16.gguf', { build: 'baseline', draftModel: '/shared-models/stories260K.gguf' })],
        ['tokens', () => t.load('/models/tabfit-demo-8m-f16.gguf', { draftModel: draft, draftTokens: 17 })],
        ['missing', () => t.load('/models/tabfit-demo-8m-f16.gguf', { draftModel: '/models/nope.gguf', cache: false })],
      ]) {
        try { await f(); errs[k] = 'resolved'; } catch (err) { errs[k] = { type: err.type, message: err.message }; }
      }
      out.errs = errs;
      return out;
    }, { big: BIG, draft: MODEL, prompt, tokens: TOKENS });
    console.log(`# draft: ${JSON.stringify(r.first.stats)}; draft ledger ${r.draftLedger} B of ${r.total}`);
    const want = golden('tabfit-test-30m-f16.gguf', prompt);
    assert.ok(r.draftEvents.includes('download') || r.draftEvents.includes('cache'), 'the draft is fetched too');
    assert.equal(r.first.ids.length, TOKENS);
    assert.ok(want.startsWith(r.first.text) && r.first.text.length > 40, `golden text with a draft: ${r.first.text}`);
    assert.ok(r.first.stats.draft_proposed > 0 && r.first.stats.draft_accepted > 0, 'the draft proposed and the model accepted');
    assert.ok(r.first.stats.verify_passes < TOKENS, 'fewer verifying passes than tokens');
    assert.equal(r.draft.state, 'resident');
    assert.ok(r.draftLedger > 16_000_000, 'the draft weights are charged to the ledger (draft.*)');
    assert.equal(r.unloaded.state, 'pending');
    assert.equal(r.totalUnloaded, r.total - r.draftLedger, 'unloading "draft" frees its bytes');
    assert.deepEqual(r.plain.ids, r.first.ids, 'the same tokens without the draft');
    assert.equal(r.plain.stats.draft_proposed, 0);
    assert.equal(r.loaded.state, 'resident');
    assert.deepEqual(r.again.ids, r.first.ids);
    assert.ok(r.again.stats.draft_accepted > 0, 'the reloaded draft (read again from OPFS) drafts again');
    assert.equal(r.errs.vocab.type, 'invalid_argument');
    assert.match(r.errs.vocab.message, /stories260K\.gguf does not share .*vocabulary/);
    assert.doesNotMatch(r.errs.vocab.message, /tabfit-js/);
    assert.equal(r.errs.tokens.type, 'invalid_argument');
    assert.match(r.errs.tokens.message, /draftTokens/);
    assert.equal(r.errs.missing.type, 'not_found');
    assert.match(r.errs.missing.message, /nope\.gguf/);
  });
