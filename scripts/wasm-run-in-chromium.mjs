// Runs an Emscripten program (a classic, non-MODULARIZE .js + .wasm built with a web
// ENVIRONMENT, e.g. quant_selfcheck.js or kernel_bench.js with
// -DTABFIT_WASM_BENCH_ENVIRONMENT=node,web) in headless Chromium and relays its output.
// For relaxed-SIMD builds: Node 20 (V8 11.3) computes i32x4.relaxed_dot_i8x16_i7x16_add_s
// wrongly, Chromium 156 correctly.
//   node scripts/wasm-run-in-chromium.mjs PROGRAM.js [args...]
// Exit status: the program's (main's return value), 1 on a page error, 2 on a timeout
// (TABFIT_RUN_TIMEOUT_S, default 600).
import path from 'node:path';
import { launch, repoRoot } from '../tests/web/browser.mjs';
import { startServer } from '../tests/web/server.mjs';

const [prog, ...args] = process.argv.slice(2);
if (!prog) { console.error('usage: wasm-run-in-chromium.mjs PROGRAM.js [args...]'); process.exit(2); }
const abs = path.resolve(prog);
const rel = path.relative(repoRoot, abs);
const mounts = rel.startsWith('..') ? { '/prog/': path.dirname(abs) } : {};
const url = rel.startsWith('..') ? `/prog/${path.basename(abs)}` : `/${rel}`;
const server = await startServer(repoRoot, { mounts });
const b = await launch();
let status = 1;
try {
  const page = await b.page(`${server.origin}/tests/web/page.html`);
  page.on('console', (m) => {
    if (m.type() === 'error' && /^Failed to load resource/.test(m.text())) return;  // the page's favicon
    (m.type() === 'error' ? console.error : console.log)(m.text());
  });
  status = await page.evaluate(({ url, args, timeoutS }) => new Promise((resolve) => {
    const timer = setTimeout(() => resolve(2), timeoutS * 1000);
    const done = (code) => { clearTimeout(timer); resolve(code); };
    window.__lines = [];
    window.Module = {
      arguments: args,
      print: (s) => console.log(s),
      printErr: (s) => console.error(s),
      onExit: done,
      onAbort: (what) => { console.error('abort: ' + what); done(1); },
      // Without EXIT_RUNTIME main's return does not call onExit: poll for the end of run().
      postRun: [() => setTimeout(() => done(typeof EXITSTATUS === 'number' ? EXITSTATUS : 0), 0)],
    };
    const s = document.createElement('script');
    s.src = url;
    s.onerror = () => { console.error('cannot load ' + url); done(1); };
    document.body.appendChild(s);
  }), { url, args, timeoutS: Number(process.env.TABFIT_RUN_TIMEOUT_S ?? 600) });
} finally {
  await b.close();
  await server.close();
}
process.exit(status);
