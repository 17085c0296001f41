// tabfit's WebAssembly engine vs @wllama/wllama, in ONE headless Chromium run,
// on the same GGUF files, plus native `tabfit bench` on the same machine.
// Not a test; prints JSON on stdout and a markdown table on stderr.
//
//   node bench/wllama/compare.mjs --model /tmp/wll/tl-q4_0.gguf [--model ...]
//        [--tokens 32] [--reps 2] [--threads 2] [--nctx 4096] [--configs tabfit-threads,tabfit-baseline,wllama-mt,wllama-st]
//   node bench/wllama/compare.mjs --table out.json      # re-render the table of a saved run
//   --kv TYPE, --kv-recent N: tabfit's KV cache precision (f16, q8_0, q4_0, mixed) and 8-bit window.
//   --ua-memory: after generation, also read performance.measureUserAgentSpecificMemory() (the
//     browser's own figure for the page: JS heaps + wasm memories; ~10-20 s a call).
//   --prompt-repeat K: the prompt text K times (a long prompt touches the KV pages it fills).
//   --tf-model FILE (repeatable): a model only tabfit reads (e.g. TF_Q4): tabfit configs + native only.
//   --alt-dist DIR: a second build of web/dist (e.g. a copy from before a change), served under
//        /altdist/; configs tabfit-threads-alt / tabfit-baseline-alt run it in the same browser.
//
// Every model file is served from its own folder under /m<i>/ by the test
// server of tests/web (COOP/COEP, so both engines' threads builds can run).
// Each (model, rep, config) runs in a fresh tab: load (timed), one greedy
// generation of --tokens tokens from the same prompt with EOS ignored, unload.
// tokens/s = (tokens - 1) / (time of last token - time of first token), taken in
// the page from the streamed tokens; the engines' own figures are kept too.
// Tab memory: VmHWM (the kernel's peak RSS) of the tab's renderer process,
// read before the tab closes (workers and wasm memory live in that process).
// Rep 1 loads cold (empty
// OPFS, download), later reps load from each engine's OPFS cache.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startServer } from '../../tests/web/server.mjs';
import { launch, repoRoot } from '../../tests/web/browser.mjs';

const argv = process.argv.slice(2);
const all = (k) => argv.flatMap((a, i) => (a === `--${k}` ? [argv[i + 1]] : []));
const arg = (k, d) => all(k).at(-1) ?? d;
const tfModels = all('tf-model');
const models = all('model').length || tfModels.length ? [...all('model'), ...tfModels]
  : [path.join(repoRoot, 'models/tabfit-demo-8m-f16.gguf')];
const altDist = arg('alt-dist', null);
const tokens = Number(arg('tokens', 32));
const reps = Number(arg('reps', 2));
const threads = Number(arg('threads', 2));
const nCtx = Number(arg('nctx', 4096));
const prompt = Array(Number(arg('prompt-repeat', 1))).fill(arg('prompt', 'The king said')).join(' ');
const kvType = arg('kv', null);
const kvRecent = arg('kv-recent', null) == null ? undefined : Number(arg('kv-recent'));
const uaMemory = argv.includes('--ua-memory');
const configs = arg('configs', 'tabfit-threads,tabfit-baseline,wllama-mt,wllama-st').split(',');
const nativeBin = arg('native', path.join(repoRoot, 'build/tabfit'));
const log = (...a) => console.error('[compare]', ...a);

// --- renderer RSS of the Chromium this script started -----------------------
function descendants(root) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch { /* gone */ }
  }
  const out = [], todo = [root];
  while (todo.length) { const p = todo.pop(); for (const k of kids.get(p) ?? []) { out.push(k); todo.push(k); } }
  return out;
}
// Per renderer process (not the --top-chrome-webui one): current RSS and VmHWM
// (the kernel's peak RSS of the process).
function renderers() {
  const out = new Map();
  for (const pid of descendants(process.pid)) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes('--type=renderer') || cmd.includes('--top-chrome-webui') || cmd.includes('--extension-process')) continue;
      const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? 0) * 1024;
      out.set(pid, { rss: kb('VmRSS'), hwm: kb('VmHWM') });
    } catch { /* gone */ }
  }
  return out;
}
// The tab's renderer = the renderer process whose peak grew most while the config ran.
function tabPeak(before) {
  let best = null;
  for (const [pid, { hwm }] of renderers()) {
    const base = before.get(pid)?.rss ?? 0;
    if (!best || hwm - base > best.growth) best = { pid, peak: hwm, before: base, growth: hwm - base };
  }
  return best;
}
const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);

// --- page side ---------------------------------------------------------------
async function runTabfit({ url, build, threads, nCtx, tokens, prompt, dist, kvType, kvRecent, uaMemory }) {
  const t = await import(`${dist}/index.js`);
  let t0 = performance.now();
  const e = await t.load(url, { build, threads, nCtx, kvRecent, ...(kvType ? { precision: { kv: kvType } } : {}) });
  const loadSeconds = (performance.now() - t0) / 1000;
  const s = e.generate(prompt, { maxTokens: tokens, temperature: 0, stopAtEos: false });
  const times = [];
  t0 = performance.now();
  for await (const _ of s) times.push(performance.now());
  const st = await s.stats;
  const mem = await e.memory({ measureUserAgentSpecific: uaMemory });
  const info = { build: e.info.build, relaxedSimd: e.relaxedSimd, threads: e.info.threads, nCtx: e.info.n_ctx ?? e.info.nCtx };
  const fromCache = e.loadResult?.fromCache;
  await e.unload();
  return { loadSeconds, fromCache, info, times, t0, generated: st.generated_tokens, stats: st,
    ledgerBytes: mem.ledger?.total_current, ledgerPeakBytes: mem.ledger?.total_peak, wasmHeapBytes: mem.wasmHeapBytes,
    kvBytes: (mem.ledger?.components ?? []).filter((c) => c.name.startsWith('kv_cache')).reduce((a, c) => a + c.current_bytes, 0),
    uaBytes: mem.userAgentSpecific?.bytes };
}

async function runWllama({ url, threads, nCtx, tokens, prompt }) {
  const base = '/bench/wllama/node_modules/@wllama/wllama/esm';
  const { Wllama } = await import(`${base}/index.js`);
  const quiet = { debug() {}, log() {}, warn: console.warn, error: console.error };
  const w = new Wllama({ default: `${base}/wasm/wllama.wasm` }, { suppressNativeLog: true, logger: quiet });
  let t0 = performance.now();
  await w.loadModelFromUrl(url, { n_threads: threads, n_ctx: nCtx, n_gpu_layers: 0, n_parallel: 1 });
  const loadSeconds = (performance.now() - t0) / 1000;
  const info = { multithread: w.isMultithread(), threads: w.getNumThreads() };
  const stream = await w.createCompletion({ prompt, max_tokens: tokens, temperature: 0, ignore_eos: true, stream: true });
  const times = [];
  let timings = null;
  t0 = performance.now();
  for await (const c of stream) {
    if (c.choices?.[0]?.text) times.push(performance.now());
    if (c.timings) timings = c.timings;
  }
  await w.exit();
  return { loadSeconds, info, times, t0, generated: timings?.predicted_n ?? times.length, stats: timings };
}

// --- native --------------------------------------------------------------------
function native(file, t, n = tokens) {
  const out = execFileSync(nativeBin, ['bench', '-m', file, '-t', String(t), '-p', '8', '-n', String(n),
    '-r', '1', '--json', '--no-bandwidth'], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const j = JSON.parse(out);
  return { threads: t, tokensPerSecond: j.tg.tokens_per_second, weightBytes: j.weight_bytes,
    rssPeakBytes: j.memory.rss_peak_bytes, nCtx: j.n_ctx };
}

// --- table -------------------------------------------------------------------------
function renderTable(result) {
  const fmt = (x, d = 2) => (x == null || !Number.isFinite(x) ? '—' : x.toFixed(d));
  const rows = ['| model | engine / build | threads | rep | tok/s | ratio to wllama (same threads, same rep) | ratio to native (same threads, same rep) | tab peak RSS ÷ weights (growth ÷ weights) | wasm heap ÷ weights; browser figure ÷ weights | load s (cold/OPFS) |',
    '|---|---|---|---|---|---|---|---|---|---|'];
  const seen = new Set();  // first load of a model by an engine in this browser profile = cold (download)
  for (const r of result.runs) {
    const engine = r.config.split('-')[0];
    const w = result.runs.find((x) => x.model === r.model && x.rep === r.rep && x.threads === r.threads
      && x.config.startsWith('wllama'));
    const nat = result.native.find((x) => x.model === r.model && x.rep === r.rep && x.threads === r.threads);
    r.ratioToWllama = engine === 'tabfit' && w?.tokensPerSecond ? r.tokensPerSecond / w.tokensPerSecond : null;
    r.ratioToNative = nat && r.tokensPerSecond ? r.tokensPerSecond / nat.tokensPerSecond : null;
    r.cold = r.fromCache != null ? !r.fromCache : !seen.has(`${engine}:${r.model}`);
    seen.add(`${engine}:${r.model}`);
    rows.push(`| ${r.model} | ${r.config} | ${r.threads} | ${r.rep} | ${r.error ? 'error: ' + r.error : fmt(r.tokensPerSecond)} | ${fmt(r.ratioToWllama)} | ${fmt(r.ratioToNative, 3)} | ${fmt(r.rssPeakOverWeights)} (${fmt(r.rssGrowthOverWeights)}) | ${fmt(r.wasmHeapOverWeights, 3)}; ${fmt(r.uaOverWeights, 3)} | ${fmt(r.loadSeconds, 1)} (${r.cold ? 'cold' : 'OPFS'}) |`);
  }
  for (const n of result.native) rows.push(`| ${n.model} | native tabfit bench | ${n.threads} | ${n.rep} | ${fmt(n.tokensPerSecond)} | | 1 | process RSS peak ÷ weights ${fmt(n.rssPeakBytes / n.weightBytes)} (n_ctx ${n.nCtx}) | | |`);
  return rows.join('\n');
}

if (arg('table')) {  // re-render the table of an earlier run's JSON
  const result = JSON.parse(fs.readFileSync(arg('table'), 'utf8'));
  console.log(renderTable(result));
  process.exit(0);
}

// --- main ------------------------------------------------------------------------
const mounts = altDist ? { '/altdist/': path.resolve(altDist) } : {};
const modelUrls = models.map((m, i) => {
  const abs = path.resolve(m);
  mounts[`/m${i}/`] = path.dirname(abs);
  return `/m${i}/${path.basename(abs)}`;
});
const server = await startServer(repoRoot, { mounts });
const browser = await launch();
const result = { date: new Date().toISOString(), chromium: null, tokens, reps, threads, nCtx, prompt, configs, altDist,
  kvType, kvRecent, uaMemory,
  loadavgStart: loadavg(),
  memoryMethod: 'VmHWM (peak RSS) of the tab\'s renderer process (the renderer whose peak grew most during the config; workers and wasm memory live in it), read before the tab closes; growth = VmHWM - VmRSS after navigation, before load',
  runs: [], native: [] };
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
try {
  result.chromium = browser.context.browser()?.version() ?? null;
  for (let rep = 1; rep <= reps; rep++) {
    for (const [mi, file] of models.entries()) {
      const order = rep % 2 ? configs : configs.slice().reverse();
      const weightBytes = native(file, 1, 2).weightBytes;  // tensor bytes; also warms the page cache for the file
      for (const cfg of order) {
        if (tfModels.includes(file) && !cfg.startsWith('tabfit')) continue;  // wllama cannot read it
        const page = await browser.context.newPage();
        page.on('pageerror', (e) => log('pageerror', e.message));
        page.on('console', (m) => { if (m.type() === 'error' || process.env.VERBOSE) log('[page]', m.text()); });
        await page.goto(`${server.origin}/bench/wllama/page.html`);
        await wait(300);
        const before = renderers();
        const la = loadavg();
        const base = cfg.replace(/-alt$/, '');  // -alt: the same config on the --alt-dist build
        const params = { url: modelUrls[mi], threads: base.endsWith('-st') || base === 'tabfit-baseline' ? 1 : threads,
          nCtx, tokens, prompt, kvType, kvRecent, uaMemory, build: base === 'tabfit-threads' ? 'threads' : 'baseline',
          dist: cfg.endsWith('-alt') ? '/altdist' : '/web/dist' };
        let r;
        try {
          r = await page.evaluate(cfg.startsWith('tabfit') ? runTabfit : runWllama, params);
        } catch (e) {
          r = { error: String(e.message ?? e).split('\n')[0] };
        }
        const tab = tabPeak(before);  // read before close: the process ends with the tab
        await page.close();
        const run = { model: path.basename(file), rep, config: cfg, threads: params.threads, loadavg: la,
          weightBytes, rendererPid: tab?.pid, rssBeforeBytes: tab?.before, rssPeakBytes: tab?.peak,
          rssPeakOverWeights: tab ? tab.peak / weightBytes : null, rssGrowthOverWeights: tab ? tab.growth / weightBytes : null };
        if (!r.error) {
          const n = r.times.length;
          // streamed pieces: tabfit sends one per token; wllama may merge pieces of one character, so
          // its token count comes from its timings (predicted_n) over the same first..last interval.
          const count = cfg.startsWith('tabfit') ? n : r.generated;
          run.tokensPerSecond = n >= 2 ? (count - 1) / ((r.times[n - 1] - r.times[0]) / 1000) : null;
          run.firstTokenSeconds = n ? (r.times[0] - r.t0) / 1000 : null;
          run.generated = r.generated;
          run.engineTokensPerSecond = cfg.startsWith('tabfit')
            ? r.stats.generated_tokens / r.stats.generate_seconds : r.stats?.predicted_per_second;
          Object.assign(run, { loadSeconds: r.loadSeconds, fromCache: r.fromCache, info: r.info,
            ledgerBytes: r.ledgerBytes, ledgerPeakBytes: r.ledgerPeakBytes, wasmHeapBytes: r.wasmHeapBytes,
            kvBytes: r.kvBytes, uaBytes: r.uaBytes,
            uaOverWeights: r.uaBytes ? r.uaBytes / weightBytes : null,
            wasmHeapOverWeights: r.wasmHeapBytes ? r.wasmHeapBytes / weightBytes : null });
        } else run.error = r.error;
        log(JSON.stringify(run));
        result.runs.push(run);
      }
      for (const t of [1, threads]) {
        const n = { model: path.basename(file), rep, loadavg: loadavg(), ...native(file, t) };
        log(JSON.stringify(n));
        result.native.push(n);
      }
    }
  }
} finally {
  await browser.close();
  await server.close();
}
result.loadavgEnd = loadavg();
result.table = renderTable(result);
console.error(result.table);
console.log(JSON.stringify(result, null, 1));
