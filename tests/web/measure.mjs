// Measures the demo model in headless Chromium: generation tokens/s with the
// threads build and the baseline build, and load time cold (download) vs
// cached (OPFS). Not a test; prints JSON. Usage:
//   node tests/web/measure.mjs [--tokens 128] [--runs 3] [--threads 2] [--model /models/x.gguf]
import { startServer } from './server.mjs';
import { launch, repoRoot } from './browser.mjs';

const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1] : d; };
const tokens = Number(arg('tokens', 128)), runs = Number(arg('runs', 3)), threads = Number(arg('threads', 2));
const model = arg('model', '/models/tabfit-demo-8m-f16.gguf');
const precision = arg('precision', 'keep');

const server = await startServer(repoRoot);
const browser = await launch();
try {
  const page = await browser.page(`${server.origin}/tests/web/page.html`);
  const result = await page.evaluate(async ({ model, tokens, runs, threads, precision }) => {
    const t = await import('/web/dist/index.js');
    const out = { hardwareConcurrency: navigator.hardwareConcurrency, builds: {} };
    for (const build of ['threads', 'baseline']) {
      const r = { gen: [] };
      await t.clearCache(model);
      let t0 = performance.now();
      let e = await t.load(model, { build, precision, threads });
      r.loadColdSeconds = (performance.now() - t0) / 1000;
      r.coldResult = e.loadResult;
      await e.unload();
      t0 = performance.now();
      e = await t.load(model, { build, precision, threads });
      r.loadCachedSeconds = (performance.now() - t0) / 1000;
      r.cachedResult = e.loadResult;
      await e.generate('The king said', { maxTokens: 8, temperature: 0 }).text();  // warm-up
      for (let i = 0; i < runs; i++) {
        const s = e.generate('The king said', { maxTokens: tokens, temperature: 0, stopAtEos: false });
        const w0 = performance.now();
        await s.text();
        const st = await s.stats;
        r.gen.push({ tokensPerSecond: st.generated_tokens / st.generate_seconds,
          wallTokensPerSecond: st.generated_tokens / ((performance.now() - w0) / 1000),
          promptTokensPerSecond: st.prompt_tokens / st.prompt_seconds, tokens: st.generated_tokens });
      }
      r.threads = e.info.threads;
      await e.unload();
      out.builds[build] = r;
    }
    return out;
  }, { model, tokens, runs, threads, precision });
  const med = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  for (const [b, r] of Object.entries(result.builds)) {
    r.medianTokensPerSecond = med(r.gen.map((g) => g.tokensPerSecond));
    r.medianWallTokensPerSecond = med(r.gen.map((g) => g.wallTokensPerSecond));
  }
  result.threadsOverBaseline = result.builds.threads.medianTokensPerSecond / result.builds.baseline.medianTokensPerSecond;
  console.log(JSON.stringify(result, null, 1));
} finally {
  await browser.close();
  await server.close();
}
