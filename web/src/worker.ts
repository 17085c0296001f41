// The engine's dedicated Web Worker: owns the wasm module (and so the wasm
// heap), the model bytes, and one engine handle. Speaks protocol.ts.
//
// Generation yields to the event loop after every token (a MessageChannel
// task, not a clamped setTimeout), so an 'abort' message is seen between
// tokens; the engine then ends the generation and stays usable.
// An engine load is one synchronous wasm call: it sees an abort through the
// shared cancel flag when the page is cross-origin isolated, otherwise the
// abort takes effect as soon as that call returns (the model is then unloaded).
//
// Residency: the engine reads the model through a reader over the worker's
// ModelBytes (storage.ts). Where those stay readable at no JS-memory cost (an
// OPFS sync access handle, a Blob), the worker keeps them open until unload and
// lets layers stream (unload_unused_layers defaults to true there): a model
// larger than the budget then pins what fits and reads the other layers from
// OPFS during generation, and unloadComponents() / loadComponents() can drop
// and re-read layers. Component events (tabfit_engine_set_load_events) become
// 'progress' messages of the request that caused them (load, loadComponents,
// swap).
// A draft model (speculative decoding) is fetched and stored like the model;
// the engine opens it by path, so it is registered as a JS source too and
// named "/tabfit-js/<id>" (web/wasm/js_files.js serves open/stat/pread on it).

import { TabfitError, errorTypeForStatus, jsOptionNames, toPayload } from './errors.js';
import type {
  ComponentState, ComponentsJson, KvCellJson, KvJson, LoadProgress, LoadResult, MemoryJson, WasmBuild, WorkerRequest,
  WorkerResponse,
} from './protocol.js';
import { bytesFromBlob, bytesFromBuffer, clearStored, openUrl, type ModelBytes } from './storage.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Ptr = number;
interface WasmModule {
  _malloc(n: number): Ptr;
  _free(p: Ptr): void;
  _tabfit_engine_create(opts: Ptr, out: Ptr): number;
  _tabfit_engine_destroy(h: Ptr): void;
  _tabfit_last_error(h: Ptr): Ptr;
  _tabfit_engine_unload(h: Ptr): number;
  _tabfit_engine_info_json(h: Ptr, out: Ptr): number;
  _tabfit_engine_ledger_json(h: Ptr, out: Ptr): number;
  _tabfit_generate_begin(h: Ptr, prompt: Ptr, opts: Ptr): number;
  _tabfit_generate_next(h: Ptr, piece: Ptr, token: Ptr, done: Ptr): number;
  _tabfit_generate_end(h: Ptr, out: Ptr): number;
  _tabfit_tokenize_json(h: Ptr, text: Ptr, addBos: number, out: Ptr): number;
  _tabfit_token_pieces_json(h: Ptr, ids: Ptr, n: number, out: Ptr): number;
  _tabfit_engine_components_json(h: Ptr, out: Ptr): number;
  _tabfit_engine_load_components(h: Ptr, names: Ptr): number;
  _tabfit_engine_unload_components(h: Ptr, names: Ptr): number;
  _tabfit_engine_swap_components(h: Ptr, unload: Ptr, load: Ptr): number;
  _tabfit_engine_kv_json(h: Ptr, op: Ptr, out: Ptr): number;
  _tabfit_engine_kv_get(h: Ptr, layer: number, position: number, k: Ptr, v: Ptr, n: number, bits: Ptr): number;
  _tfw_load_js(h: Ptr, sourceId: number, size: number, name: Ptr): number;
  _tfw_set_load_events_js(h: Ptr, sourceId: number): number;
  _tfw_heap_bytes(): number;
  UTF8ToString(p: Ptr): string;
  stringToUTF8(s: string, p: Ptr, max: number): void;
  lengthBytesUTF8(s: string): number;
  HEAPU8?: Uint8Array;
  tabfitSources: Map<number, JsSource>;
}
interface JsSource {
  /** Bytes (for /tabfit-js/<id> paths: the file's size). */
  size?: number;
  read(offset: number, dst: number, n: number, heap: Uint8Array): boolean;
  progress(done: number, total: number, component: string): boolean;
  event(loaded: number, total: number, component: string, state: string): boolean;
  error?: unknown;
}

const scope = self as unknown as {
  postMessage(msg: WorkerResponse): void;
  onmessage: ((e: MessageEvent<WorkerRequest>) => void) | null;
};

let mod: WasmModule | null = null;
let build: WasmBuild = 'baseline';
let handle: Ptr = 0;
let slots: Ptr = 0;  // 4 x 4-byte out parameters
let cancelFlag: Int32Array | null = null;
let model: ModelBytes | null = null;
let sourceId = 0;    // Module.tabfitSources key of the loaded model's reader (0: none)
let draftBytes: ModelBytes | null = null;
let draftId = 0;     // Module.tabfitSources key of the draft model (0: none)
const DRAFT_IDS = 1_000_000;  // draft source ids: DRAFT_IDS + the load request's id
let eventTarget = 0; // request id that receives component events (0: none)
let generating = 0;  // request id of the running generation, 0 if none
let loading = 0;
const aborted = new Set<number>();
const controllers = new Map<number, AbortController>();

function post(msg: WorkerResponse): void { scope.postMessage(msg); }

// ---- small helpers over the C API ----
function M(): WasmModule {
  if (!mod) throw new TabfitError('bad_state', 'the engine worker is not initialised');
  return mod;
}
function withString<T>(s: string, fn: (p: Ptr) => T): T {
  const m = M();
  const n = m.lengthBytesUTF8(s) + 1;
  const p = m._malloc(n);
  try {
    m.stringToUTF8(s, p, n);
    return fn(p);
  } finally {
    m._free(p);
  }
}
// The current heap (the threads build's shared memory grows in place; the
// baseline's Module.HEAPU8 is replaced on growth).
function heapBuffer(): ArrayBufferLike {
  const m = M() as WasmModule & { wasmMemory?: WebAssembly.Memory };
  return m.wasmMemory ? m.wasmMemory.buffer : m.HEAPU8!.buffer;
}
function readI32(p: Ptr): number {
  return new DataView(heapBuffer()).getInt32(p, true);
}
function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
function check(rc: number, what: string): void {
  if (rc === 0) return;
  let msg = M().UTF8ToString(M()._tabfit_last_error(handle)) || `${what} failed with status ${rc}`;
  // A read that failed in JS (the stored copy, a Blob): its reason.
  for (const id of [sourceId, draftId]) {
    const src = id ? M().tabfitSources.get(id) : undefined;
    if (src?.error !== undefined) {
      msg += ` (the reader said: ${errorText(src.error)})`;
      src.error = undefined;
    }
  }
  if (draftId && draftBytes) msg = msg.split(`/tabfit-js/${draftId}`).join(draftBytes.name);
  throw new TabfitError(errorTypeForStatus(rc), jsOptionNames(msg));
}
function jsonOut(fn: (out: Ptr) => number, what: string): any {
  check(fn(slots), what);
  return JSON.parse(M().UTF8ToString(readI32(slots)));
}

// A task boundary that lets queued messages (abort) run, without setTimeout's 4 ms clamp.
const channel = new MessageChannel();
const waiting: (() => void)[] = [];
channel.port1.onmessage = () => waiting.shift()?.();
function nextTask(): Promise<void> {
  return new Promise((resolve) => { waiting.push(resolve); channel.port2.postMessage(0); });
}

async function init(req: Extract<WorkerRequest, { op: 'init' }>): Promise<unknown> {
  if (mod) throw new TabfitError('bad_state', 'the engine worker is already initialised');
  build = req.build;
  cancelFlag = req.cancelFlag ? new Int32Array(req.cancelFlag) : null;
  const url = req.wasmUrl;
  let factory: (m: object) => Promise<WasmModule>;
  try {
    factory = (await import(/* @vite-ignore */ url)).default;
  } catch (e) {
    throw new TabfitError('not_found', `could not import the wasm module ${url} (${(e as Error).message}); ` +
      'run scripts/build-wasm.sh, and serve web/dist/wasm/ next to the package');
  }
  const moduleArg = {
    tabfitSources: new Map<number, JsSource>(),
    // Workers for the engine's threads (the calling thread is one of them).
    tabfitPoolSize: Math.max(1, req.threads - 1),
    locateFile: (path: string) => new URL(path, url).toString(),
    print: (s: string) => console.log(s),
    printErr: (s: string) => console.warn(s),
  };
  try {
    mod = await factory(moduleArg);
  } catch (e) {
    throw new TabfitError('unsupported', `the ${build} wasm build failed to start (${String(e)}); ` +
      (build === 'threads' ? 'the threads build needs crossOriginIsolated (COOP/COEP headers); try build: "baseline"'
        : 'this browser may lack WebAssembly SIMD'));
  }
  mod.tabfitSources = moduleArg.tabfitSources;
  slots = mod._malloc(16);
  return { build };
}

function createHandle(optionsJson: string): void {
  const m = M();
  if (handle) { m._tabfit_engine_destroy(handle); handle = 0; }
  const rc = withString(optionsJson, (p) => m._tabfit_engine_create(p, slots));
  handle = readI32(slots);
  check(rc, 'tabfit_engine_create');
}

function closeModel(): void {
  model?.close();
  model = null;
}

// Unloads the engine's model (if any), then closes its bytes (the OPFS handle) and forgets its reader.
function dropModel(): void {
  const m = mod;
  if (m && handle) {
    m._tabfit_generate_end(handle, 0);
    m._tabfit_engine_unload(handle);
  }
  if (m && sourceId) m.tabfitSources.delete(sourceId);
  if (m && draftId) m.tabfitSources.delete(draftId);
  sourceId = 0;
  draftId = 0;
  eventTarget = 0;
  closeModel();
  draftBytes?.close();
  draftBytes = null;
}

function componentsJson(): ComponentsJson {
  return jsonOut((o) => M()._tabfit_engine_components_json(handle, o), 'components') as ComponentsJson;
}

async function load(req: Extract<WorkerRequest, { op: 'load' }>): Promise<LoadResult> {
  if (generating) throw new TabfitError('bad_state', 'a generation is running; abort it or wait before loading');
  if (loading) throw new TabfitError('bad_state', 'a load is already running in this engine');
  const m = M();
  const ctl = new AbortController();
  controllers.set(req.id, ctl);
  loading = req.id;
  const progress = (p: LoadProgress) => post({ id: req.id, type: 'progress', progress: p });
  let ok = false;
  try {
    const t0 = performance.now();
    dropModel();
    if (req.url) {
      model = await openUrl({ url: req.url, name: req.name, chunkBytes: req.chunkBytes,
        maxBufferBytes: req.options.max_buffer_bytes, manifest: req.manifest, cache: req.cache, signal: ctl.signal, onProgress: progress });
    } else if (req.blob) {
      model = bytesFromBlob(req.name, req.blob);
    } else if (req.bytes) {
      model = bytesFromBuffer(req.name, req.bytes, req.chunkBytes);
    } else {
      throw new TabfitError('invalid_argument', 'load: no url, blob or bytes given');
    }
    const options = { ...req.options };
    if (req.draft) {
      const d = req.draft;
      // Its download / cache events name the component "draft".
      const onProgress = (p: LoadProgress) => progress({ ...p, component: 'draft' });
      draftBytes = d.url
        ? await openUrl({ url: d.url, name: d.name, chunkBytes: req.chunkBytes, maxBufferBytes: req.options.max_buffer_bytes,
          cache: req.cache, signal: ctl.signal, onProgress })
        : d.blob ? bytesFromBlob(d.name, d.blob)
        : d.bytes ? bytesFromBuffer(d.name, d.bytes, req.chunkBytes)
        : null;
      if (!draftBytes) throw new TabfitError('invalid_argument', 'draftModel: no url, blob or bytes given');
      draftBytes.retain();  // read at load, again if the draft streams or is loaded again ("draft")
      const db = draftBytes;
      draftId = DRAFT_IDS + req.id;
      m.tabfitSources.set(draftId, {
        size: db.size,
        read(offset, dst, n, heap) { db.read(offset, dst, n, heap); return true; },
        progress() { return true; },
        event() { return true; },
      });
      options.draft_model = `/tabfit-js/${draftId}`;
    }
    if (ctl.signal.aborted) throw new TabfitError('aborted', 'load aborted by the caller');
    const t1 = performance.now();
    const src = model;
    // Bytes that stay readable for free (OPFS, Blob) let layers stream unless the caller said no;
    // memory chunks are kept (all of them) only when the caller asked for it.
    if (options.unload_unused_layers === undefined && src.rereadable) options.unload_unused_layers = true;
    const keep = src.rereadable || options.unload_unused_layers === true;
    if (keep) src.retain();
    createHandle(JSON.stringify(options));
    let lastPost = 0, lastComponent = '';
    let during = true;  // the load call is running: events may cancel it
    const id = req.id;
    if (cancelFlag) Atomics.store(cancelFlag, 0, 0);
    m.tabfitSources.set(id, {
      read(offset, dst, n, heap) {
        src.read(offset, dst, n, heap);
        return true;
      },
      progress() { return true; },  // the component events below carry the same bytes, with the state
      event(loaded, total, component, state) {
        src.tensorPhase();
        const now = performance.now();
        if (state !== 'loading' || component !== lastComponent || now - lastPost > 50 || loaded === total) {
          lastPost = now;
          lastComponent = component;
          if (eventTarget) {
            post({ id: eventTarget, type: 'progress',
              progress: { phase: 'load', loaded, total, component, state: state as ComponentState } });
          }
        }
        if (!during) return true;
        return !(cancelFlag && Atomics.load(cancelFlag, 0) !== 0) && !ctl.signal.aborted;
      },
    });
    sourceId = id;
    eventTarget = id;
    check(m._tfw_set_load_events_js(handle, id), 'set_load_events');
    let rc: number;
    try {
      rc = withString(req.name, (p) => m._tfw_load_js(handle, id, src.size, p));
    } finally {
      during = false;
      eventTarget = 0;
    }
    const s = m.tabfitSources.get(id);
    if (s?.error !== undefined && rc !== 0 && rc !== 8) {
      const e = s.error;
      s.error = undefined;
      throw new TabfitError('io', `${req.name}: reading the model failed: ${errorText(e)}`);
    }
    if (rc === 8 || ctl.signal.aborted || aborted.has(id)) {
      m._tabfit_engine_unload(handle);
      throw new TabfitError('aborted', 'load aborted by the caller; the engine holds no model');
    }
    check(rc, 'load');
    const fromCache = src.fromCache, networkBytes = src.networkBytes, storage = src.storage;
    const heldChunksAfterLoad = src.heldChunks();
    // Bytes that are not kept: the engine holds its own copy of every weight now. Later reads (layers
    // unloaded with unloadComponents) then fail with a message saying how to keep them.
    if (!keep) closeModel();
    const comps = componentsJson();
    const info = jsonOut((o) => m._tabfit_engine_info_json(handle, o), 'info');
    ok = true;
    return { info, build, fromCache, networkBytes, storage, heldChunksAfterLoad, sourceKept: keep,
      streaming: comps.streaming, residency: comps.summary, fetchSeconds: (t1 - t0) / 1000,
      engineSeconds: (performance.now() - t1) / 1000 };
  } finally {
    if (!ok) dropModel();
    controllers.delete(req.id);
    aborted.delete(req.id);
    loading = 0;
  }
}

function kvReady(what: string): void {
  if (!handle || !sourceId) throw new TabfitError('bad_state', `${what}: no model is loaded; call load() first`);
  if (generating) {
    throw new TabfitError('bad_state', `${what}: a generation is running on this engine; wait for it or abort it first`);
  }
}

// The KV cache operations (tabfit_engine_kv_json): info, prune, truncate, requantize, configure_pruning...
function kvOp(request: Record<string, unknown>): KvJson {
  kvReady(String(request.op ?? 'kv'));
  return withString(JSON.stringify(request), (p) =>
    jsonOut((o) => M()._tabfit_engine_kv_json(handle, p, o), String(request.op ?? 'kv'))) as KvJson;
}

// get(layer, position): one token's stored K and V, copied out of the wasm heap.
function kvGet(layer: number, position: number): KvCellJson {
  kvReady('kvGet');
  const m = M();
  const row = 4096;  // floats: more than any n_kv_heads * head_dim; the engine checks the real size
  const k = m._malloc(row * 4), v = m._malloc(row * 4), bits = m._malloc(4);
  try {
    check(m._tabfit_engine_kv_get(handle, layer, position, k, v, row, bits), 'kvGet');
    const n = kvRowFloats();
    return {
      k: new Float32Array(heapBuffer(), k, n).slice(),
      v: new Float32Array(heapBuffer(), v, n).slice(),
      bits: readI32(bits),
    };
  } finally {
    m._free(k);
    m._free(v);
    m._free(bits);
  }
}

// n_kv_heads * head_dim of the loaded model (from tabfit_engine_info_json).
function kvRowFloats(): number {
  const info = jsonOut((o) => M()._tabfit_engine_info_json(handle, o), 'info') as { n_head_kv?: number; head_dim?: number };
  return (info.n_head_kv ?? 0) * (info.head_dim ?? 0);
}

// loadComponents / unloadComponents / swap: the component events they cause go to this request.
function componentsOp(id: number, what: string, fn: (m: WasmModule) => number): ComponentsJson {
  const m = M();
  if (!handle || !sourceId) throw new TabfitError('bad_state', `${what}: no model is loaded; call load() first`);
  if (generating) {
    throw new TabfitError('bad_state', `${what}: a generation is running on this engine; wait for it or abort it first`);
  }
  if (loading) throw new TabfitError('bad_state', `${what}: the model is still loading`);
  eventTarget = id;
  try {
    check(fn(m), what);
  } catch (e) {
    if (e instanceof TabfitError) throw new TabfitError(e.type, `${what}: ${e.message}`);
    throw e;
  } finally {
    eventTarget = 0;
  }
  return componentsJson();
}

async function generate(req: Extract<WorkerRequest, { op: 'generate' }>): Promise<unknown> {
  const m = M();
  if (!handle) throw new TabfitError('bad_state', 'no model is loaded; call load() first');
  if (generating) throw new TabfitError('bad_state', 'another generation is running on this engine; ' +
    'wait for it or abort it (engines run one generation at a time)');
  if (loading) throw new TabfitError('bad_state', 'the model is still loading');
  generating = req.id;
  try {
    const rc = withString(req.prompt, (p) => withString(JSON.stringify(req.options), (o) =>
      m._tabfit_generate_begin(handle, p, o)));
    check(rc, 'generate');
    for (;;) {
      if (aborted.has(req.id)) break;
      const r = m._tabfit_generate_next(handle, slots, slots + 4, slots + 8);
      if (r !== 0) {
        m._tabfit_generate_end(handle, 0);
        check(r, 'generate');
      }
      const text = m.UTF8ToString(readI32(slots));
      const token = readI32(slots + 4);
      const done = readI32(slots + 8);
      if (text.length > 0 || token >= 0) post({ id: req.id, type: 'token', text, token });
      if (done) break;
      await nextTask();
    }
    return jsonOut((o) => m._tabfit_generate_end(handle, o), 'generate_end');
  } finally {
    generating = 0;
    aborted.delete(req.id);
  }
}

function memory(): MemoryJson {
  const m = M();
  let ledger;
  if (handle) {
    ledger = jsonOut((o) => m._tabfit_engine_ledger_json(handle, o), 'ledger');
  } else {
    ledger = { loaded: false, total_current: 0, total_peak: 0, budget_bytes: 0, max_buffer_bytes: 0, components: [] };
  }
  return { ledger, wasmHeapBytes: m._tfw_heap_bytes() };
}

function unload(): MemoryJson {
  if (generating) aborted.add(generating);
  const m = M();
  if (handle) {
    m._tabfit_generate_end(handle, 0);
    check(m._tabfit_engine_unload(handle), 'unload');
  }
  const report = memory();
  dropModel();  // closes the stored copy's access handle
  return report;
}

let crashed: TabfitError | null = null;

// A trap inside wasm (a bug, or the heap exhausted where malloc cannot fail
// softly) leaves the module unusable: report it and refuse further calls.
async function guarded(req: WorkerRequest): Promise<unknown> {
  if (crashed && req.op !== 'abort') throw crashed;
  try {
    return await handleRequest(req);
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) {
      crashed = new TabfitError('worker', `the wasm engine crashed (${e.message}); this engine is unusable: ` +
        'unload it and load again (with a smaller model or precision if memory ran out)');
      throw crashed;
    }
    throw e;
  }
}

async function handleRequest(req: WorkerRequest): Promise<unknown> {
  switch (req.op) {
    case 'init': return init(req);
    case 'load': return load(req);
    case 'generate': return generate(req);
    case 'abort':
      aborted.add(req.target);
      controllers.get(req.target)?.abort();
      return true;
    case 'info': return handle ? jsonOut((o) => M()._tabfit_engine_info_json(handle, o), 'info') : { loaded: false };
    case 'memory': return memory();
    case 'tokenize':
      return withString(req.text, (p) => jsonOut((o) => M()._tabfit_tokenize_json(handle, p, req.addBos ? 1 : 0, o),
        'tokenize'));
    case 'pieces': {
      const m = M();
      const p = m._malloc(Math.max(4, req.ids.length * 4));
      try {
        const dv = new DataView(heapBuffer());
        req.ids.forEach((id, i) => dv.setInt32(p + 4 * i, id, true));
        return jsonOut((o) => m._tabfit_token_pieces_json(handle, p, req.ids.length, o), 'pieces');
      } finally {
        m._free(p);
      }
    }
    case 'unload': return unload();
    case 'components':
      if (!handle || !sourceId) throw new TabfitError('bad_state', 'components: no model is loaded; call load() first');
      return componentsJson();
    case 'kv':
      return kvOp(req.request);
    case 'kvGet':
      return kvGet(req.layer, req.position);
    case 'loadComponents':
      return componentsOp(req.id, 'loadComponents', (m) =>
        withString(JSON.stringify(req.names), (p) => m._tabfit_engine_load_components(handle, p)));
    case 'unloadComponents':
      return componentsOp(req.id, 'unloadComponents', (m) =>
        withString(JSON.stringify(req.names), (p) => m._tabfit_engine_unload_components(handle, p)));
    case 'swap':
      return componentsOp(req.id, 'swap', (m) => withString(JSON.stringify(req.unload), (u) =>
        withString(JSON.stringify(req.load), (l) => m._tabfit_engine_swap_components(handle, u, l))));
    case 'clearCache': return clearStored(req.url);
  }
}

scope.onmessage = (e: MessageEvent<WorkerRequest>) => {
  const req = e.data;
  guarded(req).then(
    (value) => post({ id: req.id, type: 'result', value }),
    (err) => post({ id: req.id, type: 'error', error: toPayload(err) }),
  );
};
