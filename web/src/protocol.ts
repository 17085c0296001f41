// The typed message protocol between the page (index.ts) and the engine's
// dedicated worker (worker.ts). Every request carries an id; the worker
// answers with exactly one 'result' or 'error' for it, and may send
// 'progress' / 'token' events with the same id before that.

import type { ErrorPayload } from './errors.js';

/** threads: SIMD128 + pthreads; baseline: SIMD128, one thread; scalar: no SIMD, one thread. */
export type WasmBuild = 'threads' | 'baseline' | 'scalar';

/** Engine options as the C API takes them (tabfit_c.h, tabfit_engine_create). */
export interface EngineOptionsJson {
  threads: number;
  n_ctx: number;
  /** Caps the model's context when n_ctx is 0 (the profile's max_context; 0 = no cap). */
  n_ctx_max: number;
  n_batch?: number;
  budget_bytes: number;
  max_buffer_bytes: number;
  /** "f16", "f32", "q8_0", "q4_0" or "mixed" (8-bit recent window, 4-bit older tokens). */
  kv_type: string;
  /** "mixed": tokens kept at 8 bits (default 256). */
  kv_recent?: number;
  /** Attention-score KV pruning: in (0, 1) = when the context is full, keep this fraction and go on; 0 = off. */
  kv_prune?: number;
  /** kv_type "kivi": the low-bit cache (tabfit_c.h): old tokens at default_bits, the last rolling_window at
   * recent_token_bits. */
  default_bits?: number;
  recent_token_bits?: number;
  rolling_window?: number;
  group_size?: number;
  /** The spec's configure_pruning knobs; present = attention is tracked so prune() works on demand. */
  pruning?: KvPruningJson;
  weight_type: string;
  // Residency (progressive loading; tabfit_c.h): the spec's names.
  /** Components loaded first, in this order ("embeddings", "layers.N", "output_norm", "lm_head", "all"). */
  priority_components?: string[];
  /** Always false in the browser (reader loads are read on the worker's thread). */
  background_loading?: boolean;
  /** May layers that do not fit the budget stream (be re-read from the stored copy when needed)? */
  unload_unused_layers?: boolean;
  /** Bytes the ledger may reach with the weights in (0 = budget_bytes). */
  memory_threshold?: number;
  /** > 0: at most this many layers in memory at once (pinned + ring slots). */
  keep_n_layers_loaded?: number;
  /** Layer buffers streamed layers pass through (>= 1). */
  ring_slots?: number;
  /** Benchmark mode: no pinned layers, one slot. */
  naive_streaming?: boolean;
  /** Set by the worker: the draft model's path (a /tabfit-js/<id> path served from JS, web/wasm/js_files.js). */
  draft_model?: string;
  draft_tokens?: number;
}

/** The draft model's bytes, as for the main model (one of url, blob, bytes). */
export interface DraftSource {
  url?: string;
  blob?: Blob;
  bytes?: ArrayBuffer;
  name: string;
}

/** Generation options as the C API takes them (tabfit_generate_begin). */
export interface GenerateOptionsJson {
  max_tokens?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  repeat_penalty?: number;
  repeat_last_n?: number;
  seed?: number;
  stop?: string[];
  add_bos?: boolean;
  stop_at_eos?: boolean;
  parse_special?: boolean;
}

/** sha256 per chunk of the model file, for integrity checks. */
export interface ChunkManifest {
  /** File size in bytes. */
  size: number;
  /** Bytes per chunk (the last one may be shorter). */
  chunk_bytes: number;
  /** Lower-case hex sha256 of each chunk, in order. */
  sha256: string[];
}

/** A weight component's residency (tabfit_c.h / loader/residency.h). */
export type ComponentState = 'pending' | 'loading' | 'resident' | 'evicted' | 'streamed' | 'failed';

export interface LoadProgress {
  /** 'download': bytes from the network; 'cache': bytes found in storage; 'load': the engine reading tensors. */
  phase: 'download' | 'cache' | 'load';
  /** 'download' / 'cache': bytes of the file. 'load': bytes of the pinned (kept) components read so far. */
  loaded: number;
  /** 'download' / 'cache': the file size. 'load': bytes of every pinned component (streamed layers excluded). */
  total: number;
  /** What is being loaded: 'network', 'storage', or an engine component ("layers.3", "embeddings"...). */
  component: string;
  /** 'load' events only: the component's state ("loading" while it is read, then "resident", or "streamed"
   * when it did not fit and will be read each time it is needed). Undefined for 'download' / 'cache'. */
  state?: ComponentState;
}

/** One entry of TabfitEngine.components(). */
export interface ComponentEntry {
  /** "embeddings", "layers.N", "output_norm", "lm_head" (group "model"), or "draft". */
  name: string;
  group: string;
  /** Bytes in memory when resident. */
  bytes: number;
  state: ComponentState;
  /** Kept once loaded (false: streams, read again each forward pass). */
  pinned: boolean;
  /** Times read from the model's bytes. */
  loads: number;
  bytes_read: number;
  reads_per_token: number;
}

/** tabfit_engine_components_json. */
export interface ComponentsJson {
  components: ComponentEntry[];
  /** True when some layers stream. */
  streaming: boolean;
  pinned_layers: number;
  streamed_layers: number;
  /** Bytes one forward pass reads from the stored copy (the streamed layers'). */
  streamed_bytes_per_pass: number;
  summary: string;
}

export interface ModelInfo {
  loaded: boolean;
  name?: string;
  architecture?: string;
  n_vocab?: number;
  n_embd?: number;
  n_layer?: number;
  n_ctx?: number;
  n_ctx_train?: number;
  threads?: number;
  weight_bytes?: number;
  bos?: number;
  eos?: number;
  bos_text?: string;
  eos_text?: string;
  chat_template?: string | null;
}

export interface LedgerComponent {
  name: string;
  current_bytes: number;
  peak_bytes: number;
  live_buffers: number;
}

export interface LedgerJson {
  loaded: boolean;
  total_current: number;
  total_peak: number;
  budget_bytes: number;
  max_buffer_bytes: number;
  components: LedgerComponent[];
}

export interface GenerateStats {
  prompt_tokens: number;
  generated_tokens: number;
  prompt_seconds: number;
  generate_seconds: number;
  /** "eos", "stop_string", "max_tokens", "cancelled", "context_full". */
  stop_reason: string;
  /** Speculative decoding (a draft model; 0 otherwise). */
  draft_proposed?: number;
  draft_accepted?: number;
  verify_passes?: number;
  /** Bytes read from the stored copy for streamed layers during this generation. */
  streamed_bytes?: number;
}

export interface LoadResult {
  info: ModelInfo;
  build: WasmBuild;
  /** True when every model byte came from storage (no network). */
  fromCache: boolean;
  /** Bytes fetched from the network during this load. */
  networkBytes: number;
  /** Where the model bytes are stored: 'opfs' (persistent) or 'memory' (this load only). */
  storage: 'opfs' | 'memory';
  /** Model chunks still held in JS when the engine finished loading (memory storage drops each once read). */
  heldChunksAfterLoad: number;
  /** The worker keeps the model's bytes readable (OPFS access handle, Blob, or retained chunks) until unload,
   * so streamed or unloaded layers can be read again. */
  sourceKept: boolean;
  /** Some layers stream from the stored copy (the model does not fit the budget). */
  streaming: boolean;
  /** The engine's residency plan in one line. */
  residency: string;
  /** Seconds spent fetching / reading storage, and in the engine's load. */
  fetchSeconds: number;
  engineSeconds: number;
  /** Set by load() (main thread): the engine runs a *-relaxed build (relaxed SIMD 8-bit dot kernels). */
  relaxedSimd?: boolean;
}

export type WorkerRequest =
  | {
      id: number;
      op: 'init';
      build: WasmBuild;
      wasmUrl: string;
      threads: number;
      /** Int32Array(1) over a SharedArrayBuffer: set to 1 to cancel a running engine load (optional). */
      cancelFlag?: SharedArrayBuffer;
    }
  | {
      id: number;
      op: 'load';
      url?: string;
      bytes?: ArrayBuffer;
      blob?: Blob;
      name: string;
      options: EngineOptionsJson;
      chunkBytes: number;
      manifest?: ChunkManifest;
      cache: boolean;
      draft?: DraftSource;
    }
  | { id: number; op: 'generate'; prompt: string; options: GenerateOptionsJson }
  | { id: number; op: 'abort'; target: number }
  | { id: number; op: 'info' }
  | { id: number; op: 'memory' }
  | { id: number; op: 'tokenize'; text: string; addBos: boolean }
  | { id: number; op: 'pieces'; ids: number[] }
  | { id: number; op: 'unload' }
  | { id: number; op: 'components' }
  | { id: number; op: 'loadComponents'; names: string[] }
  | { id: number; op: 'unloadComponents'; names: string[] }
  | { id: number; op: 'swap'; unload: string[]; load: string[] }
  | { id: number; op: 'clearCache'; url?: string }
  | { id: number; op: 'kv'; request: Record<string, unknown> }
  | { id: number; op: 'kvGet'; layer: number; position: number };

export type WorkerResponse =
  | { id: number; type: 'result'; value: unknown }
  | { id: number; type: 'error'; error: ErrorPayload }
  | { id: number; type: 'progress'; progress: LoadProgress }
  | { id: number; type: 'token'; text: string; token: number };

export interface MemoryJson {
  ledger: LedgerJson;
  wasmHeapBytes: number;
}

/** The C API's "pruning" object (tabfit_c.h). */
export interface KvPruningJson {
  strategy?: string;
  threshold?: number;
  budget?: number;
  min_tokens_to_keep?: number;
  max_tokens_to_drop?: number;
  frequency_aware?: boolean;
  decay?: number;
  max_tokens?: number;
  pruning_interval?: number;
}

/** tabfit_engine_kv_json's answer. */
export interface KvJson {
  tokens_pruned: number;
  bytes_freed: number;
  tokens: number;
  bytes: number;
  capacity: number;
}

/** tabfit_engine_kv_get's answer: one token's stored key and value (n_kv_heads * head_dim each). */
export interface KvCellJson {
  k: Float32Array;
  v: Float32Array;
  bits: number;
}
