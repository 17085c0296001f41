// Probe: which WebAssembly relaxed-SIMD encodings do this Node and headless Chromium accept?
// (LLVM 14 / Emscripten 3.1.6 emit relaxed_swizzle as the pre-standard 0xfd 0xa2 and have no relaxed dot.)
//   node bench/wllama/relaxed-simd-probe.mjs
import { launch } from '../../tests/web/browser.mjs';
// module: (func (param v128 v128 [v128]) (result v128) local.get 0 local.get 1 [local.get 2] <op>)
function mod(opBytes, nparams) {
  const params = Array(nparams).fill(0x7b);
  const type = [0x01, 0x60, nparams, ...params, 0x01, 0x7b];
  const body = [0x00, ...params.flatMap((_, i) => [0x20, i]), ...opBytes, 0x0b];
  const sec = (id, b) => [id, b.length, ...b];
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...sec(1, type), ...sec(3, [1, 0]), ...sec(10, [1, body.length, ...body])]);
}
const cases = {
  'simd128 i32x4.dot_i16x8_s (0xfd 0xba 0x01)': [[0xfd, 0xba, 0x01], 2],
  'relaxed_swizzle LLVM-14 prototype encoding (0xfd 0xa2 0x01)': [[0xfd, 0xa2, 0x01], 2],
  'relaxed_swizzle standard (0xfd 0x80 0x02)': [[0xfd, 0x80, 0x02], 2],
  'i16x8.relaxed_dot_i8x16_i7x16_s standard (0xfd 0x92 0x02)': [[0xfd, 0x92, 0x02], 2],
  'i32x4.relaxed_dot_i8x16_i7x16_add_s standard (0xfd 0x93 0x02)': [[0xfd, 0x93, 0x02], 3],
};
const out = { node: process.versions.v8 };
for (const [k, [op, n]] of Object.entries(cases)) out['node ' + k] = WebAssembly.validate(mod(op, n));
const b = await launch();
const page = await b.context.newPage();
await page.goto('about:blank');
for (const [k, [op, n]] of Object.entries(cases)) out['chromium ' + k] = await page.evaluate((a) => WebAssembly.validate(new Uint8Array(a)), [...mod(op, n)]);
out.chromium = b.context.browser()?.version();
await b.close();
console.log(JSON.stringify(out, null, 1));
