// tabfit in a browser tab: the page-side API. Each engine runs in its own
// dedicated Web Worker (worker.ts) that owns the wasm heap.
//
//   import { load } from 'tabfit';
//   const engine = await load('/models/demo.gguf', { onProgress: console.log });
//   for await (const t of engine.generate('Once upon a time', { maxTokens: 32 })) out.textContent += t.text;
//   const chunks = await engine.chat.completions.create({ messages, stream: true });
//   console.log(await engine.memory());
//   console.log(await engine.components());       // residency: which layers are resident / streamed
//   await engine.swap(['layers.3'], ['layers.5']); // unload, then load components
//   await engine.unload();

import { renderChat, type ChatMessage, type ChatFormat } from './chat.js';
import { PROFILES, detectCapabilities, detectProfile, type BuiltinProfileName, type ProfileData } from './profiles.js';
import { TabfitError, fromPayload } from './errors.js';
import type {
  ChunkManifest, ComponentsJson, EngineOptionsJson, GenerateOptionsJson, GenerateStats, KvCellJson, KvJson,
  KvPruningJson, LedgerJson, LoadProgress, LoadResult, MemoryJson, ModelInfo, WasmBuild, WorkerRequest, WorkerResponse,
} from './protocol.js';

export { TabfitError } from './errors.js';
export type { TabfitErrorType } from './errors.js';
export { renderChat, detectChatFormat } from './chat.js';
export type { ChatMessage, ChatFormat, RenderedChat } from './chat.js';
export type {
  ChunkManifest, ComponentEntry, ComponentState, ComponentsJson, GenerateStats, LedgerJson, LedgerComponent,
  KvCellJson, LoadProgress, LoadResult, ModelInfo, WasmBuild,
} from './protocol.js';

/** A browser profile (profiles/*.json; schema in profiles/schema.json; data and detection in profiles.ts). */
export type BrowserProfile = ProfileData;
export { PROFILES, detectProfile, detectCapabilities } from './profiles.js';
export type { Capabilities, DetectedProfile, BuiltinProfileName } from './profiles.js';

export type ModelSource = string | URL | Blob | ArrayBuffer | Uint8Array;

export interface LoadOptions {
  /** A built-in profile name ("chrome", "firefox", "safari", "edge", "mobile", "custom"), a profile
   * object, or "auto" (default: detectProfile() — from the user agent, adjusted to what the page can do). */
  profile?: string | BrowserProfile;
  /** Weight precision ("keep", "f32", "f16", "q8_0", "q4_0", "tf_q4"...), or weights and KV cache separately.
   * Overrides the profile. */
  precision?: string | { weights?: string; kv?: string };
  /** Worker threads for the threads build ("auto" = navigator.hardwareConcurrency). Overrides the profile. */
  threads?: number | 'auto';
  /** Context length in tokens (default: the model's, at most 4096, or the profile's max_context). */
  nCtx?: number;
  /** KV cache "mixed": how many recent tokens stay 8-bit (older ones are 4-bit). Default 256. */
  kvRecent?: number;
  /** KV pruning: when the context is full, keep this fraction of it (least-attended tokens dropped) and go on.
   * Default 0 = off (exact). */
  kvPrune?: number;
  /** The low-bit KV cache (KIVI style) and KV pruning, with the spec's option names camelCased:
   * `{ defaultBits: 2, recentTokenBits: 8, rollingWindow: 128, groupSize: 32, pruning: {...} }`.
   * defaultBits (2, 3, 4) turns the low-bit cache on: old tokens at defaultBits, the last rollingWindow
   * tokens at recentTokenBits (8 or 16). pruning (true or the configure_pruning knobs) tracks attention so
   * engine.pruneKv() can drop tokens on demand; pruning.maxTokens / pruningInterval prune automatically. */
  kvCache?: KvCacheOptions;
  /** Memory budget in bytes for the engine's ledger (0 = none). Overrides the profile. */
  budgetBytes?: number;
  /** "auto" (default): threads when crossOriginIsolated and SharedArrayBuffer exist, else baseline;
   * scalar (no SIMD) when the browser lacks WebAssembly SIMD128. */
  build?: 'auto' | WasmBuild;
  /** Relaxed SIMD (tabfit-mt-relaxed / tabfit-st-relaxed: the Q4_0 and TF_Q4 kernels use the 8-bit dot
   * i32x4.relaxed_dot_i8x16_i7x16_add_s). "auto" (default): when WebAssembly.validate accepts a relaxed-dot
   * module (and the build is not scalar), falling back to the plain build if the relaxed one fails to start;
   * true: required (error if unsupported); false: never. */
  relaxedSimd?: 'auto' | boolean;
  /** Keep the downloaded model in the origin's storage (OPFS) so a reload downloads nothing. Default true. */
  cache?: boolean;
  /** Download chunk size in bytes (capped at the profile's max buffer). Default 16 MiB. */
  chunkBytes?: number;
  /** sha256 per chunk; every downloaded chunk is checked against it. */
  manifest?: ChunkManifest;
  // ---- Residency (progressive loading): the spec's options, camelCased ----
  /** Components loaded first, in this order (default ["embeddings", "layers.0", "lm_head"]); names are
   * "embeddings", "layers.N", "output_norm", "lm_head" or "all". */
  priorityComponents?: string[];
  /** Load the rest on a loader thread after load() returns. Not possible in the browser (the worker reads
   * the model through a synchronous reader on its own thread): only false (the default) is accepted. */
  backgroundLoading?: boolean;
  /** May layers that do not fit the budget stream: stay in storage and be read when the forward pass needs
   * them (through `ringSlots` layer buffers)? Default true when the model's bytes stay readable for free
   * (a URL stored in OPFS, a Blob/File); false for ArrayBuffer sources and cache: false (true there keeps
   * every downloaded chunk in JS memory). false: a model larger than the budget fails to load. */
  unloadUnusedLayers?: boolean;
  /** Bytes the engine's ledger may reach with the weights in (default: budgetBytes). */
  memoryThreshold?: number;
  /** > 0: at most this many layers in memory at once (pinned + ring slots), even when more would fit. */
  keepNLayersLoaded?: number;
  /** Layer buffers streamed layers pass through (>= 1; default 2). */
  ringSlots?: number;
  /** Benchmark mode: pin no layer, stream every one through one buffer. */
  naiveStreaming?: boolean;
  /** Speculative decoding (the spec's draft_model): a smaller model with the same vocabulary, as a URL (fetched
   * and stored like the model), a Blob/File or bytes. Greedy generations (temperature 0) then verify
   * `draftTokens` drafted tokens per pass of the model, with the same output. Its weights are charged to the
   * same budget ("draft.*" in the ledger); components() lists it as "draft". */
  draftModel?: ModelSource;
  /** Tokens the draft proposes per verifying pass (1-16, default 4). */
  draftTokens?: number;
  /** Every event: download / cache bytes ({phase, loaded, total, component: 'network' | 'storage'}) and the
   * engine's component events ({phase: 'load', loaded, total, component, state}); component events of later
   * loadComponents() / swap() calls come here too. */
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Where tabfit-mt.mjs / tabfit-st.mjs live (default: ./wasm/ next to this file). */
  wasmBaseUrl?: string | URL;
  /** The worker script (default: ./worker.js next to this file). */
  workerUrl?: string | URL;
}

/** The spec's configure_pruning knobs (docs/kv-cache.md). */
export interface KvPruningOptions {
  /** "threshold" (drop tokens scoring below threshold x the mean), "budget" (keep the best `budget`),
   * "window" (keep the newest). Default "budget". */
  strategy?: 'threshold' | 'budget' | 'window';
  /** In [0, 1]. */
  threshold?: number;
  /** Tokens kept by "budget" / "window" (0: half of those held). */
  budget?: number;
  minTokensToKeep?: number;
  /** Fraction of the tokens one prune may drop, in (0, 1]. */
  maxTokensToDrop?: number;
  frequencyAware?: boolean;
  /** H2O-style decay of old attention per token, in (0, 1]. */
  decay?: number;
  /** enable_auto_pruning: every pruningInterval tokens, prune back to maxTokens. */
  maxTokens?: number;
  pruningInterval?: number;
}

export interface KvCacheOptions {
  defaultBits?: 2 | 3 | 4;
  recentTokenBits?: 8 | 16;
  rollingWindow?: number;
  groupSize?: 32 | 64 | 128;
  pruning?: boolean | KvPruningOptions;
}

/** What a KV cache operation did and holds now. */
export interface KvResult {
  tokensPruned: number;
  bytesFreed: number;
  tokens: number;
  bytes: number;
  capacity: number;
}

function kvPruningJson(p: KvPruningOptions): KvPruningJson {
  const out: KvPruningJson = {};
  if (p.strategy !== undefined) out.strategy = p.strategy;
  if (p.threshold !== undefined) out.threshold = p.threshold;
  if (p.budget !== undefined) out.budget = p.budget;
  if (p.minTokensToKeep !== undefined) out.min_tokens_to_keep = p.minTokensToKeep;
  if (p.maxTokensToDrop !== undefined) out.max_tokens_to_drop = p.maxTokensToDrop;
  if (p.frequencyAware !== undefined) out.frequency_aware = p.frequencyAware;
  if (p.decay !== undefined) out.decay = p.decay;
  if (p.maxTokens !== undefined) out.max_tokens = p.maxTokens;
  if (p.pruningInterval !== undefined) out.pruning_interval = p.pruningInterval;
  return out;
}

function kvResult(j: KvJson): KvResult {
  return { tokensPruned: j.tokens_pruned, bytesFreed: j.bytes_freed, tokens: j.tokens, bytes: j.bytes,
    capacity: j.capacity };
}

function kvCacheOptions(k: KvCacheOptions | undefined): Partial<EngineOptionsJson> {
  if (!k) return {};
  const out: Partial<EngineOptionsJson> = {};
  if (k.defaultBits !== undefined) {
    out.kv_type = 'kivi';
    out.default_bits = k.defaultBits;
  }
  if (k.recentTokenBits !== undefined) out.recent_token_bits = k.recentTokenBits;
  if (k.rollingWindow !== undefined) out.rolling_window = k.rollingWindow;
  if (k.groupSize !== undefined) out.group_size = k.groupSize;
  if (k.pruning) out.pruning = k.pruning === true ? {} : kvPruningJson(k.pruning);
  return out;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  seed?: number;
  stop?: string | string[];
  addBos?: boolean;
  stopAtEos?: boolean;
  parseSpecial?: boolean;
  signal?: AbortSignal;
}

export interface GeneratedToken {
  /** Complete UTF-8 text released with this token (may be "" while held back). */
  text: string;
  /** Token id (-1 for text flushed at the end). */
  token: number;
}

/** Async iterable of tokens; `stats` resolves when the generation ends (also when aborted). */
export interface TokenStream extends AsyncIterable<GeneratedToken> {
  readonly stats: Promise<GenerateStats>;
  /** Consumes the stream and returns the whole text. */
  text(): Promise<string>;
}

export interface MemoryReport {
  ledger: LedgerJson;
  /** Size of the engine worker's wasm linear memory (it never shrinks; unload() ends the worker). */
  wasmHeapBytes: number;
  /** Chrome's performance.memory of this page, when present. */
  jsHeap?: { usedJSHeapSize: number; totalJSHeapSize: number; jsHeapSizeLimit: number };
  /** performance.measureUserAgentSpecificMemory() when asked for and available (can take many seconds). */
  userAgentSpecific?: unknown;
}

// ---- OpenAI-shaped chat ----
export interface ChatCompletionCreateParams {
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  signal?: AbortSignal;
}
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: null | 'stop' | 'length' }[];
}
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string }; finish_reason: 'stop' | 'length' }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  /** Which prompt format was used (see chat.ts). */
  tabfit_chat_format: ChatFormat;
}

const MiB = 1 << 20;

/** Which wasm build this page can run best. */
export function detectBuild(): WasmBuild {
  const caps = detectCapabilities();
  if (!caps.wasmSimd) return 'scalar';
  return caps.crossOriginIsolated && caps.sharedArrayBuffer && caps.wasmThreads ? 'threads' : 'baseline';
}

/** Resolves a profile option to a profile object (a copy) and the reasons for it. */
export function resolveProfile(profile: string | BrowserProfile | undefined): { profile: BrowserProfile; reasons: string[] } {
  if (profile && typeof profile === 'object') return { profile: { ...profile }, reasons: ['profile given by the caller'] };
  if (!profile || profile === 'auto') {
    const d = detectProfile();
    return { profile: d.profile, reasons: d.reasons };
  }
  const name = profile.toLowerCase() as BuiltinProfileName;
  const p = PROFILES[name];
  if (!p) {
    throw new TabfitError('not_found', `unknown profile "${profile}"; use one of ${Object.keys(PROFILES).join(', ')}, ` +
      '"auto", or pass a profile object');
  }
  return { profile: JSON.parse(JSON.stringify(p)) as BrowserProfile, reasons: [`profile "${name}" chosen by the caller`] };
}

function engineOptions(p: BrowserProfile, o: LoadOptions, build: WasmBuild): EngineOptionsJson {
  const hw = Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1);
  const want = o.threads ?? p.threads ?? 'auto';
  let threads = want === 'auto' ? hw : Math.floor(want);
  if (!(threads >= 1)) throw new TabfitError('invalid_argument', `threads must be "auto" or >= 1, got ${want}`);
  if (build !== 'threads') threads = 1;
  threads = Math.min(threads, 32);
  const prec = typeof o.precision === 'string' ? { weights: o.precision } : o.precision ?? {};
  const weights = prec.weights ?? p.weight_precision ?? 'keep';
  return {
    threads,
    n_ctx: o.nCtx ?? 0,
    n_ctx_max: p.max_context ?? 0,
    budget_bytes: o.budgetBytes ?? p.memory_budget_bytes ?? 0,
    max_buffer_bytes: p.max_buffer_bytes ?? 1024 * MiB,
    kv_type: prec.kv ?? p.kv_precision ?? 'f16',
    kv_recent: o.kvRecent,
    kv_prune: o.kvPrune,
    weight_type: weights === 'keep' ? '' : weights,
    ...residencyOptions(o),
    ...kvCacheOptions(o.kvCache),
  };
}

function componentNames(what: string, names: unknown, option = false): string[] {
  const list = typeof names === 'string' ? [names] : names;
  const label = option ? what : `${what}(names)`;
  // The engine checks the names themselves (its message lists this model's components).
  if (!Array.isArray(list) || list.some((n) => typeof n !== 'string' || n === '')) {
    throw new TabfitError('invalid_argument', `${label}: give a component name or an array of them ` +
      '("embeddings", "layers.N", "output_norm", "lm_head", "layers", "all", "draft")');
  }
  return list as string[];
}

function residencyOptions(o: LoadOptions): Partial<EngineOptionsJson> {
  const out: Partial<EngineOptionsJson> = {};
  const count = (name: string, v: number | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || v < min) {
      throw new TabfitError('invalid_argument', `${name} must be an integer >= ${min}, got ${v}`);
    }
    return v;
  };
  const flag = (name: string, v: boolean | undefined): boolean | undefined => {
    if (v !== undefined && typeof v !== 'boolean') {
      throw new TabfitError('invalid_argument', `${name} must be true or false, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  if (o.priorityComponents !== undefined) {
    out.priority_components = componentNames('priorityComponents', o.priorityComponents, true);
  }
  if (flag('backgroundLoading', o.backgroundLoading)) {
    throw new TabfitError('unsupported', 'backgroundLoading: true needs a loader thread that reads the model ' +
      'file; in the browser the worker reads the model through a synchronous reader on its own thread, so the ' +
      'load finishes before load() resolves. Leave backgroundLoading out (or false); to start sooner, load ' +
      'fewer layers (priorityComponents, keepNLayersLoaded) or a smaller budget so the rest streams');
  }
  if (o.backgroundLoading === false) out.background_loading = false;
  if (o.draftTokens !== undefined) {
    if (o.draftModel === undefined) {
      throw new TabfitError('invalid_argument', 'draftTokens needs draftModel (the model that drafts the tokens)');
    }
    if (!Number.isInteger(o.draftTokens) || o.draftTokens < 1 || o.draftTokens > 16) {
      throw new TabfitError('invalid_argument', `draftTokens must be an integer in [1, 16], got ${o.draftTokens}`);
    }
    out.draft_tokens = o.draftTokens;
  }
  out.unload_unused_layers = flag('unloadUnusedLayers', o.unloadUnusedLayers);
  out.memory_threshold = count('memoryThreshold', o.memoryThreshold, 0);
  out.keep_n_layers_loaded = count('keepNLayersLoaded', o.keepNLayersLoaded, 0);
  out.ring_slots = count('ringSlots', o.ringSlots, 1);
  out.naive_streaming = flag('naiveStreaming', o.naiveStreaming);
  for (const k of Object.keys(out) as (keyof EngineOptionsJson)[]) if (out[k] === undefined) delete out[k];
  return out;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

type Pending = {
  resolve: (v: unknown) => void;
  reject: (e: TabfitError) => void;
  onProgress?: (p: LoadProgress) => void;
  onToken?: (t: GeneratedToken) => void;
};

/** One worker and its request bookkeeping. */
class WorkerLink {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private dead: TabfitError | null = null;
  constructor(readonly worker: Worker) {
    worker.onmessage = (e: MessageEvent<WorkerResponse>) => this.onMessage(e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.fail(new TabfitError('worker', `the tabfit worker failed: ${e.message || 'script error'}; ` +
        'check that worker.js and the wasm files are served (same origin, with COOP/COEP for the threads build)'));
    };
  }
  private onMessage(m: WorkerResponse): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    switch (m.type) {
      case 'result': this.pending.delete(m.id); p.resolve(m.value); break;
      case 'error': this.pending.delete(m.id); p.reject(fromPayload(m.error)); break;
      case 'progress': p.onProgress?.(m.progress); break;
      case 'token': p.onToken?.({ text: m.text, token: m.token }); break;
    }
  }
  fail(e: TabfitError): void {
    this.dead = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
  reserveId(): number { return this.nextId++; }
  request<T>(req: WorkerRequest, extra: Omit<Pending, 'resolve' | 'reject'> = {}, transfer: Transferable[] = []):
    Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(req.id, { resolve: resolve as (v: unknown) => void, reject, ...extra });
      this.worker.postMessage(req, transfer);
    });
  }
  send(req: DistributiveOmit<WorkerRequest, 'id'>): Promise<unknown> {
    return this.request({ ...req, id: this.reserveId() } as WorkerRequest);
  }
  terminate(): void {
    this.worker.terminate();
    this.fail(new TabfitError('bad_state', 'this engine was unloaded; load a model again'));
  }
}

function abortError(what: string): TabfitError {
  return new TabfitError('aborted', `${what} aborted by the caller`);
}

/** A loaded model in its own worker. */
export class TabfitEngine {
  readonly chat: {
    completions: {
      create(params: ChatCompletionCreateParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(params: ChatCompletionCreateParams & { stream?: false }): Promise<ChatCompletion>;
      create(params: ChatCompletionCreateParams): Promise<AsyncIterable<ChatCompletionChunk> | ChatCompletion>;
    };
  };
  private unloaded = false;

  /** @internal */
  constructor(private link: WorkerLink, readonly info: ModelInfo, readonly loadResult: LoadResult,
    readonly profile: BrowserProfile, readonly profileReasons: string[],
    private onProgress?: (p: LoadProgress) => void) {
    const self = this;
    this.chat = {
      completions: {
        create: ((params: ChatCompletionCreateParams) => self.createChatCompletion(params)) as never,
      },
    };
  }

  /** 'threads', 'baseline' or 'scalar'. */
  get build(): WasmBuild { return this.loadResult.build; }
  /** Whether that build is its relaxed-SIMD twin (tabfit-mt-relaxed / tabfit-st-relaxed). */
  get relaxedSimd(): boolean { return this.loadResult.relaxedSimd ?? false; }

  /** Generates a continuation of `prompt`, token by token. Abort with options.signal or by leaving the loop. */
  generate(prompt: string, options: GenerateOptions = {}): TokenStream {
    const link = this.link;
    const opts: GenerateOptionsJson = {
      max_tokens: options.maxTokens, temperature: options.temperature, top_k: options.topK, top_p: options.topP,
      min_p: options.minP, repeat_penalty: options.repeatPenalty, repeat_last_n: options.repeatLastN,
      seed: options.seed, stop: typeof options.stop === 'string' ? [options.stop] : options.stop,
      add_bos: options.addBos, stop_at_eos: options.stopAtEos, parse_special: options.parseSpecial,
    };
    for (const k of Object.keys(opts) as (keyof GenerateOptionsJson)[]) if (opts[k] === undefined) delete opts[k];
    const queue: GeneratedToken[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    let failure: TabfitError | null = null;
    const id = link.reserveId();
    const abort = () => { link.send({ op: 'abort', target: id }).catch(() => {}); };
    const signal = options.signal;
    if (signal?.aborted) failure = abortError('generation');
    const onAbort = () => abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const stats: Promise<GenerateStats> = failure ? Promise.reject(failure) :
      link.request<GenerateStats>({ id, op: 'generate', prompt, options: opts }, {
        onToken: (t) => { queue.push(t); wake?.(); },
      });
    stats.then(() => { finished = true; wake?.(); }, (e) => { failure = e; finished = true; wake?.(); })
      .finally(() => signal?.removeEventListener('abort', onAbort));
    stats.catch(() => {});  // observed through the iterator
    const iterator = async function* (): AsyncGenerator<GeneratedToken> {
      let completed = false;
      try {
        for (;;) {
          if (queue.length) { yield queue.shift()!; continue; }
          if (finished) break;
          await new Promise<void>((r) => { wake = r; });
          wake = null;
        }
        if (failure) throw failure;
        if (signal?.aborted) throw abortError('generation');
        completed = true;
      } finally {
        if (!completed && !finished) abort();  // the consumer left the loop early
      }
    };
    return {
      stats,
      [Symbol.asyncIterator]: iterator,
      async text() {
        let s = '';
        for await (const t of { [Symbol.asyncIterator]: iterator }) s += t.text;
        return s;
      },
    };
  }

  private async createChatCompletion(params: ChatCompletionCreateParams):
    Promise<AsyncIterable<ChatCompletionChunk> | ChatCompletion> {
    const chat = renderChat(params.messages, this.info.chat_template ?? null, this.info.eos_text || '</s>');
    const userStop = typeof params.stop === 'string' ? [params.stop] : params.stop ?? [];
    const stream = this.generate(chat.prompt, {
      maxTokens: params.max_tokens ?? 256, temperature: params.temperature, topP: params.top_p, seed: params.seed,
      stop: [...chat.stop, ...userStop], parseSpecial: chat.parseSpecial, signal: params.signal,
    });
    const id = `chatcmpl-${Math.random().toString(36).slice(2, 14)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.info.name || 'tabfit';
    const finishOf = (s: GenerateStats) => (s.stop_reason === 'max_tokens' || s.stop_reason === 'context_full'
      ? 'length' : 'stop') as 'stop' | 'length';
    if (params.stream) {
      return {
        async *[Symbol.asyncIterator]() {
          yield { id, object: 'chat.completion.chunk', created, model,
            choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] } as ChatCompletionChunk;
          for await (const t of stream) {
            if (t.text) {
              yield { id, object: 'chat.completion.chunk', created, model,
                choices: [{ index: 0, delta: { content: t.text }, finish_reason: null }] } as ChatCompletionChunk;
            }
          }
          const s = await stream.stats;
          yield { id, object: 'chat.completion.chunk', created, model,
            choices: [{ index: 0, delta: {}, finish_reason: finishOf(s) }] } as ChatCompletionChunk;
        },
      };
    }
    const content = await stream.text();
    const s = await stream.stats;
    return {
      id, object: 'chat.completion', created, model,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finishOf(s) }],
      usage: { prompt_tokens: s.prompt_tokens, completion_tokens: s.generated_tokens,
        total_tokens: s.prompt_tokens + s.generated_tokens },
      tabfit_chat_format: chat.format,
    };
  }

  /** Token ids of `text` (with BOS when the model wants one and addBos is true). */
  async tokenize(text: string, addBos = true): Promise<number[]> {
    return (await this.link.send({ op: 'tokenize', text, addBos })) as number[];
  }

  /** Each id rendered as llama.cpp's token_to_piece does (BOS as "<s>"). */
  async tokenPieces(ids: number[]): Promise<string[]> {
    return (await this.link.send({ op: 'pieces', ids })) as string[];
  }

  /** Each weight component (embeddings, layers.N, output_norm, lm_head) with its state ('resident',
   * 'streamed', 'evicted'...), bytes and reads, and whether layers stream. */
  async components(): Promise<ComponentsJson> {
    return (await this.link.send({ op: 'components' })) as ComponentsJson;
  }

  private componentsRequest(req: DistributiveOmit<WorkerRequest, 'id'>): Promise<ComponentsJson> {
    return this.link.request<ComponentsJson>({ ...req, id: this.link.reserveId() } as WorkerRequest,
      { onProgress: this.onProgress });
  }

  /** Loads components and keeps them: names "embeddings", "layers.N", "output_norm", "lm_head", "layers"
   * (every layer), "all", or "draft" (the draftModel). Idempotent; fails (out_of_memory) when one does not fit the budget. Not while a
   * generation runs. Resolves to components(). */
  loadComponents(names: string | string[]): Promise<ComponentsJson> {
    try {
      return this.componentsRequest({ op: 'loadComponents', names: componentNames('loadComponents', names) });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Frees components' memory (layers, or "draft"; the embeddings and output head are read every step);
   * unloaded layers stream from the stored copy when needed. Idempotent. Resolves to components(). */
  unloadComponents(names: string | string[]): Promise<ComponentsJson> {
    try {
      return this.componentsRequest({ op: 'unloadComponents', names: componentNames('unloadComponents', names) });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Unloads `unload`, then loads `load` (so the freed bytes are there for it). Resolves to components(). */
  swap(unload: string | string[], load: string | string[]): Promise<ComponentsJson> {
    try {
      return this.componentsRequest({ op: 'swap', unload: componentNames('swap', unload),
        load: componentNames('swap', load) });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The KV cache: tokens held, its bytes and capacity. */
  async kv(): Promise<KvResult> {
    return kvResult((await this.link.send({ op: 'kv', request: { op: 'info' } })) as KvJson);
  }

  /** The spec's prune(): one prune by the configured strategy (needs kvCache.pruning at load). Resolves to
   * the tokens pruned and the bytes the engine's ledger got back. Not while a generation runs. */
  async pruneKv(): Promise<KvResult> {
    return kvResult((await this.link.send({ op: 'kv', request: { op: 'prune' } })) as KvJson);
  }

  /** Keeps the attention sinks and the last keepRecent tokens. */
  async truncateKv(keepRecent: number): Promise<KvResult> {
    if (!Number.isInteger(keepRecent) || keepRecent < 0) {
      throw new TabfitError('invalid_argument', `truncateKv(keepRecent): an integer >= 0, got ${keepRecent}`);
    }
    return kvResult((await this.link.send({ op: 'kv', request: { op: 'truncate', keep_recent: keepRecent } })) as KvJson);
  }

  /** Lowers the stored tokens' precision in place (the low-bit cache): defaultBits / recentTokenBits, each
   * at most its current value. Resolves with bytesFreed. */
  async requantizeKv(o: { defaultBits?: number; recentTokenBits?: number }): Promise<KvResult> {
    return kvResult((await this.link.send({ op: 'kv', request: { op: 'requantize',
      default_bits: o.defaultBits ?? -1, recent_token_bits: o.recentTokenBits ?? -1 } })) as KvJson);
  }

  /** reduce_context_window: the context becomes nCtx tokens (at most the loaded one); tokens past it go, oldest
   * first after the attention sinks, and their KV memory returns to the ledger. Raising it again is allowed. */
  async setContextWindow(nCtx: number): Promise<KvResult> {
    if (!Number.isInteger(nCtx) || nCtx < 1) {
      throw new TabfitError('invalid_argument', `setContextWindow(nCtx): an integer >= 1, got ${nCtx}`);
    }
    return kvResult((await this.link.send({ op: 'kv', request: { op: 'set_context_window', n_ctx: nCtx } })) as KvJson);
  }

  /** configure_pruning: the knobs pruneKv() and automatic pruning use. */
  async configurePruning(o: KvPruningOptions): Promise<KvResult> {
    return kvResult((await this.link.send({ op: 'kv', request: { op: 'configure_pruning', ...kvPruningJson(o) } })) as KvJson);
  }

  /** enable_auto_pruning(max_tokens, pruning_interval): every pruningInterval tokens, prune back to maxTokens. */
  async enableAutoPruning(maxTokens: number, pruningInterval: number): Promise<KvResult> {
    return kvResult((await this.link.send({ op: 'kv', request: { op: 'enable_auto_pruning', max_tokens: maxTokens,
      pruning_interval: pruningInterval } })) as KvJson);
  }

  /** get(layer, position): the stored key and value of the token at `position` (n_kv_heads * head_dim floats
   * each, dequantized) and the bits it is stored at. */
  async kvGet(layer: number, position: number): Promise<KvCellJson> {
    return (await this.link.send({ op: 'kvGet', layer, position })) as KvCellJson;
  }

  /** The engine's memory ledger by component, the wasm heap size, and what the browser reports. */
  async memory(options: { measureUserAgentSpecific?: boolean } = {}): Promise<MemoryReport> {
    const m = (await this.link.send({ op: 'memory' })) as MemoryJson;
    return { ...m, ...browserMemory(), ...(options.measureUserAgentSpecific ? await uaMemory() : {}) };
  }

  /** Frees the model: the ledger returns to zero (reported), then the worker and its wasm heap are ended. */
  async unload(): Promise<MemoryReport> {
    if (this.unloaded) throw new TabfitError('bad_state', 'unload() was already called');
    this.unloaded = true;
    try {
      const m = (await this.link.send({ op: 'unload' })) as MemoryJson;
      return { ...m, ...browserMemory() };
    } finally {
      this.link.terminate();  // also when the engine crashed: ending the worker frees its heap
    }
  }
}

function browserMemory(): Pick<MemoryReport, 'jsHeap'> {
  const pm = (globalThis.performance as unknown as { memory?: MemoryReport['jsHeap'] }).memory;
  return pm ? { jsHeap: { usedJSHeapSize: pm.usedJSHeapSize, totalJSHeapSize: pm.totalJSHeapSize,
    jsHeapSizeLimit: pm.jsHeapSizeLimit } } : {};
}

async function uaMemory(): Promise<Pick<MemoryReport, 'userAgentSpecific'>> {
  const perf = globalThis.performance as unknown as { measureUserAgentSpecificMemory?: () => Promise<unknown> };
  if (typeof perf.measureUserAgentSpecificMemory !== 'function' || !globalThis.crossOriginIsolated) return {};
  try {
    return { userAgentSpecific: await perf.measureUserAgentSpecificMemory() };
  } catch {
    return {};
  }
}

/**
 * Loads a GGUF model into a new engine worker.
 * `source`: a URL of a GGUF file (fetched as a stream in chunks and kept in the origin's storage) or of a
 * tabfit package's manifest.json (each chunk file fetched and checked against its sha256), a Blob/File
 * (read in slices), or the bytes (ArrayBuffer/Uint8Array; copied into the worker).
 */
export async function load(source: ModelSource, options: LoadOptions = {}): Promise<TabfitEngine> {
  const signal = options.signal;
  if (signal?.aborted) throw abortError('load');
  const { profile, reasons } = resolveProfile(options.profile);
  const requested = options.build ?? 'auto';
  const possible = detectBuild();
  if (requested !== 'auto' && requested !== 'scalar' && possible === 'scalar') {
    throw new TabfitError('unsupported', `the ${requested} build needs WebAssembly SIMD128, which this browser ` +
      'lacks; use build: "scalar" (or "auto"), or update the browser');
  }
  if (requested === 'threads' && possible !== 'threads') {
    throw new TabfitError('unsupported', 'the threads build needs a cross-origin isolated page (serve it with ' +
      '"Cross-Origin-Opener-Policy: same-origin" and "Cross-Origin-Embedder-Policy: require-corp"); ' +
      'or use build: "baseline"');
  }
  const build = requested === 'auto' ? possible : requested;
  const relaxedWanted = options.relaxedSimd ?? 'auto';
  const relaxedOk = build !== 'scalar' && detectCapabilities().wasmRelaxedSimd;
  if (relaxedWanted === true && !relaxedOk) {
    throw new TabfitError('unsupported', build === 'scalar' ? 'relaxedSimd: true needs a SIMD build, not "scalar"'
      : 'relaxedSimd: true, but this browser does not validate WebAssembly relaxed SIMD (i32x4.relaxed_dot_i8x16_i7x16_add_s); ' +
        'use relaxedSimd: "auto"');
  }
  let relaxed = relaxedWanted !== false && relaxedOk;
  const eo = engineOptions(profile, options, build);
  const chunkBytes = Math.max(64 * 1024, Math.min(options.chunkBytes ?? 16 * MiB, eo.max_buffer_bytes));

  const workerUrl = options.workerUrl ?? new URL('./worker.js', import.meta.url);
  const wasmBase = options.wasmBaseUrl ?? new URL('./wasm/', import.meta.url);
  const file = { threads: 'mt', baseline: 'st', scalar: 'scalar' }[build];
  const wasmUrl = (r: boolean) => new URL(`tabfit-${file}${r ? '-relaxed' : ''}.mjs`, wasmBase).toString();
  const link = new WorkerLink(new Worker(workerUrl, { type: 'module', name: 'tabfit-engine' }));
  const cancel = typeof SharedArrayBuffer === 'function' && globalThis.crossOriginIsolated
    ? new SharedArrayBuffer(4) : undefined;
  let loadId = 0;
  const onAbort = () => {
    if (cancel) Atomics.store(new Int32Array(cancel), 0, 1);
    if (loadId) link.send({ op: 'abort', target: loadId }).catch(() => {});
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const init = (r: boolean) => link.send({ op: 'init', build, wasmUrl: wasmUrl(r), threads: eo.threads, cancelFlag: cancel });
    try {
      await init(relaxed);
    } catch (e) {
      // "auto": a relaxed build that is missing or fails to start falls back to its plain twin.
      if (!relaxed || relaxedWanted !== 'auto' || signal?.aborted) throw e;
      console.warn(`tabfit: the relaxed-SIMD build did not start (${(e as Error).message}); using the plain ${build} build`);
      relaxed = false;
      await init(false);
    }
    if (signal?.aborted) throw abortError('load');
    let req: WorkerRequest;
    const transfer: Transferable[] = [];
    loadId = link.reserveId();
    const draft = options.draftModel === undefined ? undefined
      : sourceFields(options.draftModel, 'draft.gguf', transfer, 'draftModel');
    const base = { id: loadId, op: 'load' as const, options: eo, chunkBytes, manifest: options.manifest,
      cache: options.cache ?? true, draft };
    req = { ...base, ...sourceFields(source, 'model.gguf', transfer, 'load(source)') };
    const result = await link.request<LoadResult>(req, { onProgress: options.onProgress }, transfer);
    result.relaxedSimd = relaxed;
    // The abort may have raced the end of the load: it still wins.
    if (signal?.aborted) throw abortError('load');
    return new TabfitEngine(link, result.info, result, profile, reasons, options.onProgress);
  } catch (e) {
    link.terminate();
    if (signal?.aborted && !(e instanceof TabfitError && e.type === 'aborted')) throw abortError('load');
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

// A model source as the load request carries it (bytes are copied, and the copy transferred).
function sourceFields(source: ModelSource, fallbackName: string, transfer: Transferable[], what: string):
  { url?: string; blob?: Blob; bytes?: ArrayBuffer; name: string } {
  if (typeof source === 'string' || source instanceof URL) {
    const url = new URL(source.toString(), globalThis.location?.href).toString();
    const parts = new URL(url).pathname.split('/').filter(Boolean);
    // A package is named by its folder, a GGUF by its file name.
    const name = parts.at(-1) === 'manifest.json' && parts.length > 1 ? parts.at(-2)! : parts.at(-1) ?? url;
    return { url, name };
  }
  if (source instanceof Blob) return { blob: source, name: (source as File).name || fallbackName };
  if (source instanceof ArrayBuffer || source instanceof Uint8Array) {
    const copy = source instanceof ArrayBuffer ? source.slice(0) : source.slice().buffer;
    transfer.push(copy);
    return { bytes: copy, name: fallbackName };
  }
  throw new TabfitError('invalid_argument', `${what}: give a URL, a Blob/File, or an ArrayBuffer`);
}

/** Removes models this origin stored (one URL, or all). Returns how many were removed. */
export async function clearCache(url?: string | URL): Promise<number> {
  const root = await navigator.storage.getDirectory();
  let dir: FileSystemDirectoryHandle;
  try {
    dir = await root.getDirectoryHandle('tabfit-models');
  } catch {
    return 0;
  }
  const { clearStoredIn } = await import('./storage.js');
  return clearStoredIn(dir, url === undefined ? undefined : new URL(url.toString(), location.href).toString());
}
