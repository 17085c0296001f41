// Microbenchmark: i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x93 0x02) vs the SIMD128
// sequence (extend i8->i16 low/high, 2x i32x4.dot_i16x8_s, 2x i32x4.add) on L1-resident data.
// Hand-assembled wasm (Emscripten 3.1.6 / clang 14 cannot emit the relaxed dot).
//   node bench/wasm-relaxed/microbench.mjs [reps=7]         # headless Chromium (+ Node, if it validates)
// Prints dot-adds per ns for both kernels and their ratio; checks both return the same sum.
// relaxed_chain: one accumulator (a dependency chain through the op): if V8 emits one
// vpdpbusd it runs at 1/latency; a pmaddubsw+pmaddwd+paddd lowering chains only the
// paddd and runs as fast as the 4-accumulator loop.
import { launch } from '../../tests/web/browser.mjs';

const leb = (v) => { const o = []; do { let b = v & 0x7f; v >>>= 7; if (v) b |= 0x80; o.push(b); } while (v); return o; };
const sleb = (v) => { const o = []; for (;;) { const b = v & 0x7f; v >>= 7; if ((v === 0 && !(b & 0x40)) || (v === -1 && (b & 0x40))) { o.push(b); return o; } o.push(b | 0x80); } };
const vec = (a) => [...leb(a.length), ...a.flat()];
const sec = (id, b) => [id, ...leb(b.length), ...b];
const BUF = 16384;  // bytes of a; b follows at +BUF (32 KiB in all: L1)
const V128_LOAD = (off) => [0xfd, 0x00, 4, ...leb(off)];
// locals: 0 = n (param), 1 = p, 2..5 = acc0..3
function body(relaxed, nacc = 4) {
  const code = [];
  for (let k = 0; k < 4; ++k) {
    const acc = 2 + (k % nacc);
    if (relaxed) {
      code.push(0x20, 1, ...V128_LOAD(16 * k), 0x20, 1, ...V128_LOAD(BUF + 16 * k), 0x20, acc, 0xfd, 0x93, 0x02, 0x21, acc);
    } else {
      const A = [0x20, 1, ...V128_LOAD(16 * k)], B = [0x20, 1, ...V128_LOAD(BUF + 16 * k)];
      // acc += dot(ext_low(a), ext_low(b)) + dot(ext_high(a), ext_high(b))
      code.push(0x20, acc,
        ...A, 0xfd, 0x87, 0x01, ...B, 0xfd, 0x87, 0x01, 0xfd, 0xba, 0x01,
        ...A, 0xfd, 0x88, 0x01, ...B, 0xfd, 0x88, 0x01, 0xfd, 0xba, 0x01,
        0xfd, 0xae, 0x01, 0xfd, 0xae, 0x01, 0x21, acc);
    }
  }
  const f = [
    0x02, 0x40, 0x03, 0x40,                               // block loop
    0x20, 0, 0x45, 0x0d, 1,                               // n == 0 -> exit
    0x41, 0, 0x21, 1,                                     // p = 0
    0x03, 0x40, ...code,                                  // inner loop
    0x20, 1, 0x41, ...sleb(64), 0x6a, 0x22, 1,            // p += 64 (tee)
    0x41, ...sleb(BUF), 0x49, 0x0d, 0,                    // p < BUF -> inner
    0x0b,
    0x20, 0, 0x41, 1, 0x6b, 0x21, 0,                      // n -= 1
    0x0c, 0, 0x0b, 0x0b,                                  // br outer; end loop; end block
    0x20, 2, 0x20, 3, 0xfd, 0xae, 0x01, 0x20, 4, 0xfd, 0xae, 0x01, 0x20, 5, 0xfd, 0xae, 0x01, 0x21, 2,
    0x20, 2, 0xfd, 0x1b, 0, 0x20, 2, 0xfd, 0x1b, 1, 0x6a, 0x20, 2, 0xfd, 0x1b, 2, 0x6a, 0x20, 2, 0xfd, 0x1b, 3, 0x6a,
    0x0b];
  const locals = [0x02, 0x01, 0x7f, 0x04, 0x7b];        // 1 x i32, 4 x v128
  const b = [...locals, ...f];
  return [...leb(b.length), ...b];
}
export function moduleBytes() {
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...sec(1, vec([[0x60, 1, 0x7f, 1, 0x7f]])),
    ...sec(3, vec([[0], [0], [0]])),
    ...sec(5, vec([[0x00, 1]])),                          // memory 1 page
    ...sec(7, vec([[...vec([...'relaxed'].map((c) => c.charCodeAt(0))), 0, 0],
                   [...vec([...'simd128'].map((c) => c.charCodeAt(0))), 0, 1],
                   [...vec([...'relaxed_chain'].map((c) => c.charCodeAt(0))), 0, 2],
                   [...vec([...'mem'].map((c) => c.charCodeAt(0))), 2, 0]])),
    ...sec(10, [3, ...body(true), ...body(false), ...body(true, 1)])]);
}

// Runs in the page (and in Node): returns {relaxed, simd128} in dot-adds/ns plus checksums.
export function runBench(bytes, reps) {
  const m = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(bytes)));
  const mem = new Uint8Array(m.exports.mem.buffer);
  let s = 12345;
  const rnd = () => (s = (s * 1103515245 + 12345) >>> 0) >>> 16;
  for (let i = 0; i < 16384; ++i) { mem[i] = rnd() & 0xff; mem[16384 + i] = rnd() & 0x7f; }
  const check = { relaxed: m.exports.relaxed(1), simd128: m.exports.simd128(1), relaxed_chain: m.exports.relaxed_chain(1) };
  const iters = 40000, dots = iters * 16384 / 16;
  const res = { relaxed: [], simd128: [], relaxed_chain: [] };
  for (let r = 0; r < reps; ++r) {
    for (const k of ['relaxed', 'simd128', 'relaxed_chain']) {
      const t0 = performance.now(); m.exports[k](iters); const dt = performance.now() - t0;
      res[k].push(dots / (dt * 1e6));
    }
  }
  const best = (a) => Math.max(...a);
  return { check, relaxed: best(res.relaxed), simd128: best(res.simd128), ratio: best(res.relaxed) / best(res.simd128), relaxed_chain: best(res.relaxed_chain),
    relaxedAll: res.relaxed.map((x) => +x.toFixed(2)), simd128All: res.simd128.map((x) => +x.toFixed(2)) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const reps = Number(process.argv[2] ?? 7);
  const bytes = [...moduleBytes()];
  const out = { nodeValidates: WebAssembly.validate(new Uint8Array(bytes)) };
  if (out.nodeValidates) out.node = runBench(bytes, reps);
  const b = await launch();
  const page = await b.context.newPage();
  await page.goto('about:blank');
  out.chromium = await page.evaluate(`(${runBench.toString()})(${JSON.stringify(bytes)}, ${reps})`);
  out.chromiumVersion = b.context.browser()?.version();
  await b.close();
  console.log(JSON.stringify(out, null, 1));
}
