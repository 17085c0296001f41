// The one error class of the tabfit package. `type` says what kind of failure
// it is; the message names the cause and what to do about it.

export type TabfitErrorType =
  | 'aborted'          // an AbortSignal fired (load or generation)
  | 'invalid_argument' // the caller passed something unusable
  | 'corrupt_data'     // the model file does not parse / a chunk fails its sha256
  | 'not_found'        // model URL 404, unknown profile, missing file
  | 'unsupported'      // this browser / model / precision cannot do it
  | 'out_of_memory'    // the ledger budget or the wasm heap refused memory
  | 'buffer_limit'     // one buffer would exceed the profile's max buffer
  | 'network'          // fetch failed
  | 'io'               // storage (OPFS / Cache API) failed
  | 'out_of_range'     // e.g. prompt longer than the context
  | 'bad_state'        // e.g. generate after unload, two generations at once
  | 'worker'           // the worker or wasm module died
  | 'internal';        // a bug in tabfit

export class TabfitError extends Error {
  readonly type: TabfitErrorType;
  constructor(type: TabfitErrorType, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TabfitError';
    this.type = type;
  }
}

/** Maps a C API status code (tabfit_c.h) to an error type. */
export function errorTypeForStatus(code: number): TabfitErrorType {
  const types: TabfitErrorType[] = [
    'internal', 'invalid_argument', 'corrupt_data', 'not_found', 'unsupported', 'out_of_memory',
    'buffer_limit', 'io', 'aborted', 'out_of_range', 'internal', 'bad_state',
  ];
  return types[code] ?? 'internal';
}

/** Serializable form, used across postMessage. */
export interface ErrorPayload {
  type: TabfitErrorType;
  message: string;
}

export function toPayload(e: unknown): ErrorPayload {
  if (e instanceof TabfitError) return { type: e.type, message: e.message };
  if (e instanceof DOMException && e.name === 'AbortError') return { type: 'aborted', message: 'aborted by the caller' };
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { type: 'internal', message: `unexpected error in the tabfit worker: ${msg} (a bug in tabfit; please report it)` };
}

export function fromPayload(p: ErrorPayload): TabfitError {
  return new TabfitError(p.type, p.message);
}

// The engine's option keys (tabfit_c.h) as the JS API spells them (LoadOptions), so an engine message
// names the option the caller actually passed.
const JS_OPTION_NAMES: Record<string, string> = {
  priority_components: 'priorityComponents',
  background_loading: 'backgroundLoading',
  unload_unused_layers: 'unloadUnusedLayers',
  memory_threshold: 'memoryThreshold',
  keep_n_layers_loaded: 'keepNLayersLoaded',
  ring_slots: 'ringSlots',
  naive_streaming: 'naiveStreaming',
  draft_model: 'draftModel',
  draft_tokens: 'draftTokens',
  budget_bytes: 'budgetBytes',
  kv_recent: 'kvRecent',
  kv_prune: 'kvPrune',
  n_ctx: 'nCtx',
  default_bits: 'kvCache.defaultBits',
  recent_token_bits: 'kvCache.recentTokenBits',
  rolling_window: 'kvCache.rollingWindow',
  group_size: 'kvCache.groupSize',
  min_tokens_to_keep: 'kvCache.pruning.minTokensToKeep',
  max_tokens_to_drop: 'kvCache.pruning.maxTokensToDrop',
  frequency_aware: 'kvCache.pruning.frequencyAware',
};

/** Rewrites the engine's option keys (snake_case) and command-line flags in `message` to the JS option names. */
export function jsOptionNames(message: string): string {
  return message
    .replace(/\b(priority_components|background_loading|unload_unused_layers|memory_threshold|keep_n_layers_loaded|ring_slots|naive_streaming|draft_model|draft_tokens|budget_bytes|kv_recent|kv_prune|n_ctx|default_bits|recent_token_bits|rolling_window|group_size|min_tokens_to_keep|max_tokens_to_drop|frequency_aware)\b/g,
      (k) => JS_OPTION_NAMES[k] ?? k)
    .replace(/--weight-type ([\w.]+)/g, 'precision: "$1"')
    .replace(/--kv-type ([\w.]+)/g, 'precision: { kv: "$1" }')
    .replace(/--ctx-size (\d+)/g, 'nCtx: $1')
    .replace(/\(-c\)/g, '(nCtx)')
    .replace(/\(--budget\)/g, '(budgetBytes)')
    .replace(/--max-buffer\b/g, "the profile's max_buffer_bytes")
    .replace(/enable layer eviction/g, 'allow layers to stream (unloadUnusedLayers)');
}
