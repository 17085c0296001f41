/* tabfit C API: the narrow extern "C" surface used by the WebAssembly build
 * (web/wasm) and by any FFI.
 *
 * Contract:
 *  - Handles, not singletons: every function takes the tabfit_engine it acts on;
 *    any number of engines may coexist.
 *  - Every function returns a tabfit_status (0 = ok; the other values mirror
 *    tabfit::StatusCode). On failure the message (what, where, why, remedy) is
 *    kept in the handle: tabfit_last_error(h). A successful call clears it.
 *  - Nothing throws across this boundary (the library itself uses Status).
 *  - Strings returned through `const char**` belong to the handle and stay
 *    valid until the next call on the same handle.
 *  - Thread-safety: drive one handle from one thread at a time. The engine uses
 *    its own thread pool internally.
 *
 * Generation is step-wise so a caller (JS in a Web Worker) can yield to its
 * event loop between tokens and cancel:
 *     tabfit_generate_begin(h, prompt, options_json);      // tokenizes + runs the prompt
 *     while (tabfit_generate_next(h, &piece, &token, &done) == TABFIT_OK && !done) use(piece);
 *     tabfit_generate_end(h, &stats_json);                   // also cancels early
 */
#ifndef TABFIT_C_API_TABFIT_C_H_
#define TABFIT_C_API_TABFIT_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int tabfit_status;
enum {
  TABFIT_OK = 0,
  TABFIT_INVALID_ARGUMENT = 1,
  TABFIT_CORRUPT_DATA = 2,
  TABFIT_NOT_FOUND = 3,
  TABFIT_UNSUPPORTED = 4,
  TABFIT_OUT_OF_MEMORY = 5,
  TABFIT_BUFFER_LIMIT = 6,
  TABFIT_IO_ERROR = 7,
  TABFIT_CANCELLED = 8,
  TABFIT_OUT_OF_RANGE = 9,
  TABFIT_INTERNAL = 10,
  TABFIT_BAD_STATE = 11 /* e.g. generate before load, next without begin */
};

typedef struct tabfit_engine tabfit_engine;

/* "OK", "InvalidArgument", ... ("?" for an unknown code). */
const char* tabfit_status_name(tabfit_status status);

/* Creates a handle configured by `options_json` (NULL or "" = defaults):
 *   {"threads":0, "n_ctx":0, "n_ctx_max":0, "n_batch":64, "budget_bytes":0,
 *    "max_buffer_bytes":1073741824, "kv_type":"f16", "kv_recent":256, "kv_prune":0,
 *    "weight_type":"",
 *    "priority_components":["embeddings","layers.0","lm_head"], "background_loading":true,
 *    "unload_unused_layers":true, "memory_threshold":0, "keep_n_layers_loaded":0,
 *    "ring_slots":2, "naive_streaming":false, "draft_model":"", "draft_tokens":4,
 *    "groups":{}, "map_streamed_layers":false,
 *    "default_bits":2, "recent_token_bits":8, "rolling_window":128, "group_size":32,
 *    "kv_pruning":false, "pruning":{"strategy":"budget","threshold":0.5,"budget":0,
 *      "min_tokens_to_keep":0,"max_tokens_to_drop":0.5,"frequency_aware":false,"decay":1,
 *      "max_tokens":0,"pruning_interval":0}}
 * kv_type "kivi" (or "kivi2"/"kivi3"/"kivi4"; giving default_bits alone implies
 * it): the low-bit KV cache, old tokens at default_bits, the last rolling_window
 * tokens at recent_token_bits (docs/kv-cache.md). "pruning" (or kv_pruning)
 * tracks attention so tabfit_engine_kv_json can prune on demand; max_tokens /
 * pruning_interval turn on interval pruning.
 * kv_type: "f16", "f32", "q8_0", "q4_0" or "mixed" (the last kv_recent tokens
 * 8-bit, older ones 4-bit). kv_prune in (0, 1) turns on attention-score KV
 * pruning: when the context is full the least-attended tokens are dropped down
 * to that fraction of it and generation goes on (0 = off, exact).
 * n_ctx 0 = the model's context (at most 4096), further capped by n_ctx_max when
 * that is > 0 (a browser profile's max_context). A WebAssembly build without
 * pthreads always uses one thread.
 * Residency (the spec's progressive-loading names): a load returns once the
 * priority components are in; with background_loading the rest arrives on a
 * loader thread (file loads only); a model that does not fit budget_bytes (or
 * memory_threshold) streams the layers that do not fit through ring_slots
 * buffers when unload_unused_layers allows it (default true for file loads;
 * memory and reader loads read everything during the call unless
 * "unload_unused_layers" is given). keep_n_layers_loaded > 0 caps the layers
 * held at once. draft_model (a path with the same vocabulary) is loaded as the
 * "draft" group and speeds up greedy decoding by verifying draft_tokens
 * proposals per pass, with the same output. groups ({"name":["layers.0",...]})
 * names component groups that load/unload/swap accept; a tabfit package's
 * manifest "groups" are used when none are given (file loads).
 * Unknown keys are an error (they are usually typos). On failure *out is still
 * set (unless the allocation itself failed, then NULL) so the message can be read
 * with tabfit_last_error; destroy it with tabfit_engine_destroy either way. */
tabfit_status tabfit_engine_create(const char* options_json, tabfit_engine** out);
/* Frees the handle and everything it holds. NULL is fine. */
void tabfit_engine_destroy(tabfit_engine* h);
/* Message of the last failed call on `h` ("" if the last call succeeded). */
const char* tabfit_last_error(const tabfit_engine* h);

/* Load progress: bytes done/total and the component being loaded.
 * Return 0 to cancel (the load then fails with TABFIT_CANCELLED). */
typedef int (*tabfit_progress_fn)(void* user, uint64_t done, uint64_t total, const char* component);

/* Random access reader for tabfit_engine_load_reader: copy exactly `n` bytes
 * at `offset` into `dst`; return 0 on success, non-zero on failure. */
typedef int (*tabfit_read_fn)(void* user, uint64_t offset, void* dst, size_t n);

/* Load a model (replacing any loaded one). `progress` may be NULL. */
tabfit_status tabfit_engine_load_file(tabfit_engine* h, const char* path, tabfit_progress_fn progress,
                                      void* progress_user);
/* From bytes the caller keeps alive until the load returns (they are copied).
 * Nothing streams from them later: a model that does not fit fails, and
 * unloading layers is refused (TABFIT_INVALID_ARGUMENT); use a reader for that. */
tabfit_status tabfit_engine_load_memory(tabfit_engine* h, const void* data, size_t size, const char* name,
                                        tabfit_progress_fn progress, void* progress_user);
/* From a reader (a browser's chunk store, a network range reader...). `read`
 * is only called from the thread that calls this function: during the call,
 * and -- only when "unload_unused_layers" was given true -- during later calls
 * on this handle (keep the reader valid until unload): for layers that stream
 * and for layers reloaded after tabfit_engine_unload_components. Without it,
 * unloading layers is refused. */
tabfit_status tabfit_engine_load_reader(tabfit_engine* h, const char* name, uint64_t size, tabfit_read_fn read,
                                        void* read_user, tabfit_progress_fn progress, void* progress_user);
/* Frees the model, KV cache and scratch; the ledger returns to zero. A later
 * load may follow. Ok when nothing is loaded. */
tabfit_status tabfit_engine_unload(tabfit_engine* h);

/* Component events during loading: bytes of the pinned components read so far /
 * their total, the component and its new state ("loading", "resident", ...).
 * Return 0 to cancel. Set before a load; called from the loader thread with
 * background loading (also after the load call returned), else from the caller's. */
typedef int (*tabfit_load_event_fn)(void* user, uint64_t loaded, uint64_t total, const char* component,
                                    const char* state);
tabfit_status tabfit_engine_set_load_events(tabfit_engine* h, tabfit_load_event_fn fn, void* user);

/* Components and groups as JSON: {"components":[{"name","group","bytes","state","pinned","loads",
 * "bytes_read","reads_per_token"}...],"streaming":bool,"pinned_layers":N,"streamed_layers":N,
 * "streamed_bytes_per_pass":N,"summary":"..."}. */
tabfit_status tabfit_engine_components_json(tabfit_engine* h, const char** out_json);
/* Load (and keep) / unload components or groups, named in a JSON array (or one JSON
 * string): "embeddings", "layers.N", "output_norm", "lm_head", "layers", "all", "draft".
 * Idempotent; not while a generation runs (TABFIT_BAD_STATE). Swap unloads first. */
tabfit_status tabfit_engine_load_components(tabfit_engine* h, const char* names_json);
tabfit_status tabfit_engine_unload_components(tabfit_engine* h, const char* names_json);
tabfit_status tabfit_engine_swap_components(tabfit_engine* h, const char* unload_json, const char* load_json);

/* Model facts as JSON: {"loaded":true,"architecture":...,"n_vocab":..,"n_ctx":..,
 * "threads":..,"chat_template":"..." or null, "bos":..,"eos":..}. */
tabfit_status tabfit_engine_info_json(tabfit_engine* h, const char** out_json);

/* Ledger snapshot as JSON: {"total_current":..,"total_peak":..,"budget_bytes":..,
 * "max_buffer_bytes":..,"loaded":bool,"components":[{"name","current_bytes","peak_bytes",
 * "live_buffers"}...]}. After unload it reports the (zero) totals the ledger reached
 * while the engine freed its memory. */
tabfit_status tabfit_engine_ledger_json(tabfit_engine* h, const char** out_json);

/* Starts a generation: clears the context, tokenizes `prompt`, runs it.
 * options_json (NULL = defaults): {"max_tokens":128, "temperature":0.8, "top_k":40,
 * "top_p":0.95, "min_p":0.05, "repeat_penalty":1.0, "repeat_last_n":64, "seed":N,
 * "stop":["..."], "add_bos":true, "stop_at_eos":true, "parse_special":false}.
 * A generation already running is ended first. */
tabfit_status tabfit_generate_begin(tabfit_engine* h, const char* prompt, const char* options_json);
/* Produces the next piece of text. *out_piece is complete UTF-8 (possibly ""
 * while a multi-byte character or a possible stop string is held back), *out_token
 * the token id (-1 when none), *out_done 1 when the generation has finished (the
 * final call may still carry text). */
tabfit_status tabfit_generate_next(tabfit_engine* h, const char** out_piece, int32_t* out_token, int* out_done);
/* Ends the generation (cancelling it if it has not finished: stop_reason
 * "cancelled") and returns its stats as JSON: {"prompt_tokens","generated_tokens",
 * "prompt_seconds","generate_seconds","stop_reason"}. out_json may be NULL. */
tabfit_status tabfit_generate_end(tabfit_engine* h, const char** out_json);

/* Tokenizes `text` into JSON [ids...] (no generation), e.g. for counting tokens. */
tabfit_status tabfit_tokenize_json(tabfit_engine* h, const char* text, int add_bos, const char** out_json);
/* Renders each token id as llama.cpp's token_to_piece does (BOS as "<s>", SentencePiece
 * spaces as " "): JSON array of strings, one per id (invalid UTF-8 replaced by U+FFFD). */
tabfit_status tabfit_token_pieces_json(tabfit_engine* h, const int32_t* ids, size_t n, const char** out_json);

/* The KV cache (the spec's KVCacheManager). op_json is one of
 *   {"op":"info"}
 *   {"op":"prune"}                                   prune() by the configured strategy
 *   {"op":"truncate","keep_recent":N}                keep the sinks and the last N tokens
 *   {"op":"requantize","default_bits":2,"recent_token_bits":8,"rolling_window":128}   lower the stored bits
 *                                                    or shorten the window (-1 or absent keeps one)
 *   {"op":"set_context_window","n_ctx":N}           reduce_context_window (or raise it back, up to n_ctx)
 *   {"op":"configure_pruning", ...the "pruning" keys of the engine options}
 *   {"op":"enable_auto_pruning","max_tokens":N,"pruning_interval":M}
 * and *out_json (valid until the next call on h) is
 *   {"tokens_pruned":n,"bytes_freed":b,"tokens":t,"bytes":kv_bytes,"capacity":c}. */
tabfit_status tabfit_engine_kv_json(tabfit_engine* h, const char* op_json, const char** out_json);
/* get(layer, position): the stored key and value of the token at RoPE position
 * `position` in `layer`, dequantized into k and v (n_floats >= n_kv_heads *
 * head_dim each); *bits (may be NULL) is the precision it is stored at. */
tabfit_status tabfit_engine_kv_get(tabfit_engine* h, int layer, int position, float* k, float* v, size_t n_floats,
                                   int* bits);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* TABFIT_C_API_TABFIT_C_H_ */
