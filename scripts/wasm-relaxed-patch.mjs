#!/usr/bin/env node
// Post-link rewrite for TABFIT_WASM_RELAXED builds: every `call` of the function import
// env.tabfit_relaxed_dot_add (signature (v128, v128, v128) -> v128, declared in
// src/quant/kernels_wasm.cpp) becomes i32x4.relaxed_dot_i8x16_i7x16_add_s
// (0xfd 0x93 0x02), which takes the same three operands in the same stack order.
// Emscripten 3.1.6 / clang 14 cannot emit that instruction, and binaryen 108's wasm-opt
// cannot read it, so this runs on the final .wasm, after Emscripten is done.
//
// The module is parsed, not byte-searched: sections, the import and type sections, and
// every code body with a full instruction decoder (MVP, sign-ext, multi-value,
// reference types, bulk memory 0xfc, SIMD + relaxed SIMD 0xfd, threads 0xfe,
// legacy exceptions). Changed bodies and the code section get re-encoded sizes;
// all other sections are copied byte for byte. Function indices do not change (the
// import stays, satisfied by web/wasm/relaxed_stub.js, which throws if ever called).
// Refuses (exit 1, file untouched) when: the module does not decode, an opcode is
// unknown, the import has another signature, or the import is referenced other than by
// `call` (exports, start, element segments, ref.func, return_call) - those cannot be
// rewritten into an instruction.
//
//   node --experimental-wasm-relaxed-simd scripts/wasm-relaxed-patch.mjs IN.wasm [OUT.wasm]
//     OUT defaults to IN (written via a temp file and rename). Prints one JSON line:
//     {"file", "calls_patched", "relaxed_dot_ops", "bodies_changed", "bytes_before", "bytes_after", "validates"}.
//     validates: WebAssembly.validate of the result in this Node (false without the flag:
//     Node 20 needs --experimental-wasm-relaxed-simd; its execution of the op is wrong,
//     so run patched modules in a browser, but its validator is fine).
//   Options: --import MODULE.NAME (default env.tabfit_relaxed_dot_add),
//            --glue FILE.js: Emscripten's JS glue of this module. Optimized builds minify
//              import names (env.tabfit_relaxed_dot_add becomes e.g. a.x); the glue's
//              import object (`var asmLibraryArg={..."x":_tabfit_relaxed_dot_add...}` and
//              `info={"a":asmLibraryArg...}`) says which. Either way the import must be the
//              module's only function import of type (v128 v128 v128) -> v128 (a type no
//              JS function can be called with, so no other import can have it),
//            --require-valid (exit 1 unless validates), --allow-none (no call sites and no
//            relaxed dot in the module is not an error).
import fs from 'node:fs';
import path from 'node:path';

export const RELAXED_DOT_ADD = [0xfd, 0x93, 0x02];  // 0xfd, LEB128(0x113)

class WasmError extends Error {}

class Reader {
  constructor(bytes, pos = 0, end = bytes.length) { this.b = bytes; this.pos = pos; this.end = end; }
  fail(msg) { throw new WasmError(`${msg} at byte offset ${this.pos}`); }
  byte() { if (this.pos >= this.end) this.fail('unexpected end'); return this.b[this.pos++]; }
  u32() {
    let result = 0, shift = 0;
    for (let i = 0; i < 5; ++i) {
      const x = this.byte();
      result += (x & 0x7f) * 2 ** shift;
      if (!(x & 0x80)) { if (result > 0xffffffff) this.fail('u32 LEB out of range'); return result; }
      shift += 7;
    }
    this.fail('u32 LEB longer than 5 bytes');
  }
  skipLeb(max) {  // any (s/u) LEB of at most `max` bytes
    for (let i = 0; i < max; ++i) if (!(this.byte() & 0x80)) return;
    this.fail(`LEB longer than ${max} bytes`);
  }
  skip(n) { if (this.pos + n > this.end) this.fail('unexpected end'); this.pos += n; }
  name() { const n = this.u32(); const s = this.pos; this.skip(n); return new TextDecoder().decode(this.b.subarray(s, s + n)); }
}

const NUM_VEC_REF = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]);
function valType(r) {
  const t = r.byte();
  if (NUM_VEC_REF.has(t)) return t;
  if (t === 0x63 || t === 0x64) { r.skipLeb(5); return t; }  // (ref null? heaptype)
  r.pos--; r.fail(`unknown value type 0x${t.toString(16)}`);
}
function blockType(r) {
  const t = r.b[r.pos];
  if (t === 0x40 || NUM_VEC_REF.has(t)) { r.pos++; return; }
  if (t === 0x63 || t === 0x64) { valType(r); return; }
  r.skipLeb(5);  // s33 type index
}
function memarg(r) {
  const align = r.u32();
  if (align & 0x40) r.u32();  // multi-memory: memory index
  r.skipLeb(10);             // offset (u64 for memory64)
}
function limits(r) {
  const flags = r.byte();
  if (flags > 7) r.fail(`unknown limits flags 0x${flags.toString(16)}`);
  r.skipLeb(10);
  if (flags & 1) r.skipLeb(10);
}

// Decodes one instruction at r.pos; returns {op, sub, idx} where idx is the function
// index of call/return_call/ref.func (else undefined).
function instr(r) {
  const op = r.byte();
  switch (op) {
    case 0x00: case 0x01: case 0x05: case 0x0a: case 0x0b: case 0x0f: case 0x19: case 0x1a: case 0x1b:
    case 0xd1: case 0xd3: case 0xd4:
      return { op };
    case 0x02: case 0x03: case 0x04: case 0x06: blockType(r); return { op };
    case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: case 0x18: case 0xd5: case 0xd6: r.u32(); return { op };
    case 0x0e: { const n = r.u32(); for (let i = 0; i <= n; ++i) r.u32(); return { op }; }
    case 0x10: case 0x12: return { op, idx: r.u32() };
    case 0x11: case 0x13: r.u32(); r.u32(); return { op };
    case 0x14: case 0x15: r.u32(); return { op };
    case 0x1c: { const n = r.u32(); for (let i = 0; i < n; ++i) valType(r); return { op }; }
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: r.u32(); return { op };
    case 0x3f: case 0x40: r.u32(); return { op };
    case 0x41: r.skipLeb(5); return { op };
    case 0x42: r.skipLeb(10); return { op };
    case 0x43: r.skip(4); return { op };
    case 0x44: r.skip(8); return { op };
    case 0xd0: r.skipLeb(5); return { op };
    case 0xd2: return { op, idx: r.u32() };
    case 0xfc: {
      const sub = r.u32();
      if (sub <= 7) return { op, sub };
      if (sub === 8 || sub === 10 || sub === 12 || sub === 14) { r.u32(); r.u32(); return { op, sub }; }
      if (sub === 9 || sub === 11 || sub === 13 || (sub >= 15 && sub <= 17)) { r.u32(); return { op, sub }; }
      r.fail(`unknown 0xfc opcode ${sub}`);
    }
    case 0xfd: {
      const sub = r.u32();
      if (sub <= 11 || sub === 92 || sub === 93) memarg(r);
      else if (sub === 12 || sub === 13) r.skip(16);
      else if (sub >= 21 && sub <= 34) r.byte();
      else if (sub >= 84 && sub <= 91) { memarg(r); r.byte(); }
      else if (sub > 0x113) r.fail(`unknown 0xfd opcode ${sub}`);
      return { op, sub };
    }
    case 0xfe: {
      const sub = r.u32();
      if (sub <= 2 || (sub >= 0x10 && sub <= 0x4e)) memarg(r);
      else if (sub === 3) { if (r.byte() !== 0) r.fail('atomic.fence: expected 0x00'); }
      else r.fail(`unknown 0xfe opcode ${sub}`);
      return { op, sub };
    }
    default:
      if (op >= 0x28 && op <= 0x3e) { memarg(r); return { op }; }
      if (op >= 0x45 && op <= 0xc4) return { op };
      r.pos--; r.fail(`unknown opcode 0x${op.toString(16)}`);
  }
}

function encodeU32(v) {
  const out = [];
  do { let b = v & 0x7f; v = Math.floor(v / 128); if (v) b |= 0x80; out.push(b); } while (v);
  return out;
}

// A constant expression (globals, element offsets/items): returns function indices it references.
function constExprRefs(r) {
  const refs = [];
  for (;;) {
    const ins = instr(r);
    if (ins.idx !== undefined) refs.push(ins.idx);
    if (ins.op === 0x0b) return refs;
  }
}

export function patchWasm(bytes, { module = 'env', name = 'tabfit_relaxed_dot_add' } = {}) {
  const r = new Reader(bytes);
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d ||
      bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw new WasmError('not a WebAssembly 1.0 module');
  r.pos = 8;
  const sections = [];
  while (r.pos < bytes.length) {
    const headerStart = r.pos;
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    sections.push({ id, start, end: start + size, headerStart });
  }
  // Types, then the import's function index and signature.
  const types = [];
  let target = -1, nFuncImports = 0, nV128x3 = 0;
  for (const s of sections) {
    const sr = new Reader(bytes, s.start, s.end);
    if (s.id === 1) {
      const n = sr.u32();
      for (let i = 0; i < n; ++i) {
        const form = sr.byte();
        if (form !== 0x60) { types.push(null); sr.pos--; sr.fail('type section: only func types are supported'); }
        const params = []; const results = [];
        for (let k = sr.u32(); k > 0; --k) params.push(valType(sr));
        for (let k = sr.u32(); k > 0; --k) results.push(valType(sr));
        types.push({ params, results });
      }
    } else if (s.id === 2) {
      const n = sr.u32();
      for (let i = 0; i < n; ++i) {
        const mod = sr.name(), field = sr.name(), kind = sr.byte();
        if (kind === 0) {
          const t = sr.u32();
          const ty = types[t];
          const v128x3 = ty && ty.params.join() === '123,123,123' && ty.results.join() === '123';
          if (v128x3) ++nV128x3;
          if (mod === module && field === name) {
            if (!v128x3) throw new WasmError(`import ${module}.${name} has type ${JSON.stringify(ty)}, expected (v128 v128 v128) -> v128`);
            target = nFuncImports;
          }
          ++nFuncImports;
        } else if (kind === 1) { valType(sr); limits(sr); }
        else if (kind === 2) limits(sr);
        else if (kind === 3) { valType(sr); sr.byte(); }
        else if (kind === 4) { sr.byte(); sr.u32(); }
        else sr.fail(`unknown import kind ${kind}`);
      }
    }
  }
  if (target >= 0 && nV128x3 !== 1) throw new WasmError(`${nV128x3} function imports have type (v128 v128 v128) -> v128; expected only ${module}.${name}`);
  const refError = (where) => new WasmError(`${module}.${name} (function ${target}) is referenced by ${where}; only direct calls can become the relaxed-dot instruction`);
  // Exports, start function, element segments must not reference the import.
  for (const s of sections) {
    const sr = new Reader(bytes, s.start, s.end);
    if (s.id === 7 && target >= 0) {
      for (let n = sr.u32(); n > 0; --n) { const nm = sr.name(); const kind = sr.byte(); const idx = sr.u32(); if (kind === 0 && idx === target) throw refError(`export "${nm}"`); }
    } else if (s.id === 8 && target >= 0) {
      if (sr.u32() === target) throw refError('the start section');
    } else if (s.id === 9 && target >= 0) {
      for (let n = sr.u32(); n > 0; --n) {
        const flags = sr.u32();
        if (flags > 7) sr.fail(`unknown element segment flags ${flags}`);
        if (flags === 2 || flags === 6) sr.u32();                       // table index
        if (!(flags & 1)) constExprRefs(sr);                           // offset (active)
        if (flags & 3 && !(flags & 4)) sr.byte();                      // elemkind
        if (flags & 3 && flags & 4) valType(sr);                       // reftype
        const items = sr.u32();
        for (let i = 0; i < items; ++i) {
          const refs = flags & 4 ? constExprRefs(sr) : [sr.u32()];
          if (refs.includes(target)) throw refError('an element segment (the function table)');
        }
      }
    } else if (s.id === 6 && target >= 0) {
      for (let n = sr.u32(); n > 0; --n) { valType(sr); sr.byte(); if (constExprRefs(sr).includes(target)) throw refError('a global initializer'); }
    }
  }
  // Code bodies.
  let patched = 0, existing = 0, bodiesChanged = 0;
  const code = sections.find((s) => s.id === 10);
  const out = [];
  let codeOut = null;
  if (code) {
    const cr = new Reader(bytes, code.start, code.end);
    const n = cr.u32();
    const parts = [Uint8Array.from(encodeU32(n))];
    for (let f = 0; f < n; ++f) {
      const sizeStart = cr.pos;
      const size = cr.u32();
      const bodyStart = cr.pos, bodyEnd = bodyStart + size;
      if (bodyEnd > code.end) cr.fail(`function body ${f} runs past the code section`);
      const br = new Reader(bytes, bodyStart, bodyEnd);
      for (let k = br.u32(); k > 0; --k) { br.u32(); valType(br); }
      const chunks = [];
      let copied = bodyStart, lastOp = -1;
      while (br.pos < bodyEnd) {
        const at = br.pos;
        const ins = instr(br);
        lastOp = ins.op;
        if (ins.op === 0xfd && ins.sub === 0x113) ++existing;
        if (ins.idx === target && target >= 0) {
          if (ins.op !== 0x10) throw refError(ins.op === 0x12 ? 'return_call' : 'ref.func');
          chunks.push(bytes.subarray(copied, at), Uint8Array.from(RELAXED_DOT_ADD));
          copied = br.pos;
          ++patched;
        }
      }
      if (br.pos !== bodyEnd || lastOp !== 0x0b) cr.fail(`function body ${f} does not end with 'end' at its declared size`);
      if (chunks.length) {
        chunks.push(bytes.subarray(copied, bodyEnd));
        const len = chunks.reduce((a, c) => a + c.length, 0);
        parts.push(Uint8Array.from(encodeU32(len)), ...chunks);
        ++bodiesChanged;
      } else {
        parts.push(bytes.subarray(sizeStart, bodyEnd));
      }
      cr.pos = bodyEnd;
    }
    if (cr.pos !== code.end) cr.fail('code section has trailing bytes');
    codeOut = parts;
  }
  if (!patched) return { bytes, patched, existing, bodiesChanged, target };
  out.push(bytes.subarray(0, code.headerStart));
  const codeLen = codeOut.reduce((a, c) => a + c.length, 0);
  out.push(Uint8Array.from([10, ...encodeU32(codeLen)]), ...codeOut, bytes.subarray(code.end));
  const total = out.reduce((a, c) => a + c.length, 0);
  const result = new Uint8Array(total);
  let o = 0;
  for (const c of out) { result.set(c, o); o += c.length; }
  return { bytes: result, patched, existing, bodiesChanged, target };
}

// MODULE.FIELD under which Emscripten's glue passes the JS function _<name> to the module.
export function importFromGlue(js, name) {
  const obj = /var asmLibraryArg\s*=\s*\{([^}]*)\}/.exec(js);
  if (!obj) throw new WasmError('glue: no `var asmLibraryArg = {...}` (not an Emscripten 3.1 glue file?)');
  const keys = [...obj[1].matchAll(new RegExp(`["']?([\\w$]+)["']?\\s*:\\s*_${name}\\b`, 'g'))].map((m) => m[1]);
  if (keys.length !== 1) throw new WasmError(`glue: _${name} appears ${keys.length} times in asmLibraryArg, expected once`);
  const info = /info\s*=\s*\{\s*["']?([\w$]+)["']?\s*:\s*asmLibraryArg\b/.exec(js);
  if (!info) throw new WasmError('glue: no `info = {MODULE: asmLibraryArg}`');
  return `${info[1]}.${keys[0]}`;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('wasm-relaxed-patch.mjs')) {
  const args = process.argv.slice(2);
  const opt = (k) => { const i = args.indexOf(k); if (i < 0) return undefined; const v = args[i + 1]; args.splice(i, 2); return v; };
  const flag = (k) => { const i = args.indexOf(k); if (i < 0) return false; args.splice(i, 1); return true; };
  const glue = opt('--glue');
  let imp = opt('--import') ?? 'env.tabfit_relaxed_dot_add';
  const requireValid = flag('--require-valid'), allowNone = flag('--allow-none');
  const [input, output = input] = args;
  if (!input) { console.error('usage: wasm-relaxed-patch.mjs IN.wasm [OUT.wasm] [--import MOD.NAME] [--require-valid] [--allow-none]'); process.exit(2); }
  try {
    if (glue) imp = importFromGlue(fs.readFileSync(glue, 'utf8'), imp.slice(imp.indexOf('.') + 1));
    const dot = imp.indexOf('.');
    const bytes = new Uint8Array(fs.readFileSync(input));
    const res = patchWasm(bytes, { module: imp.slice(0, dot), name: imp.slice(dot + 1) });
    if (res.target < 0 && !res.existing && !allowNone) throw new WasmError(`no function import ${imp} (built without TABFIT_WASM_RELAXED?)`);
    if (!res.patched && !res.existing && !allowNone) throw new WasmError(`${imp} is imported but never called, and no relaxed dot is present`);
    const validates = WebAssembly.validate(res.bytes);
    const report = { file: input, calls_patched: res.patched, relaxed_dot_ops: res.patched + res.existing, bodies_changed: res.bodiesChanged,
      bytes_before: bytes.length, bytes_after: res.bytes.length, validates };
    if (requireValid && !validates) throw new WasmError(`patched module does not validate here (${JSON.stringify(report)}); run Node with --experimental-wasm-relaxed-simd`);
    if (res.patched) {
      const tmp = path.join(path.dirname(output), `.${path.basename(output)}.relaxed-tmp`);
      fs.writeFileSync(tmp, res.bytes);
      fs.renameSync(tmp, output);
    } else if (output !== input) {
      fs.copyFileSync(input, output);
    }
    console.log(JSON.stringify(report));
  } catch (e) {
    console.error(`wasm-relaxed-patch: ${input}: ${e instanceof WasmError ? e.message : e.stack}`);
    process.exit(1);
  }
}
