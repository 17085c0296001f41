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
  weight_type: string;
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

export interface LoadProgress {
  /** 'download': bytes from the network; 'cache': bytes found in storage; 'load': the engine reading tensors. */
  phase: 'download' | 'cache' | 'load';
  loaded: number;
  total: number;
  /** What is being loaded: 'network', 'storage', or an engine component ("layers.3", "embeddings"...). */
  component: string;
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
    }
  | { id: number; op: 'generate'; prompt: string; options: GenerateOptionsJson }
  | { id: number; op: 'abort'; target: number }
  | { id: number; op: 'info' }
  | { id: number; op: 'memory' }
  | { id: number; op: 'tokenize'; text: string; addBos: boolean }
  | { id: number; op: 'pieces'; ids: number[] }
  | { id: number; op: 'unload' }
  | { id: number; op: 'clearCache'; url?: string };

export type WorkerResponse =
  | { id: number; type: 'result'; value: unknown }
  | { id: number; type: 'error'; error: ErrorPayload }
  | { id: number; type: 'progress'; progress: LoadProgress }
  | { id: number; type: 'token'; text: string; token: number };

export interface MemoryJson {
  ledger: LedgerJson;
  wasmHeapBytes: number;
}
