// tabfit WebAssembly glue: connects the C API to JavaScript.
//
// The model bytes stay in JavaScript (the worker's chunk store: OPFS file or
// in-memory chunks) until the loader asks for them. tfw_load_js() gives the
// engine a reader whose every read is one synchronous call into JS
// (`Module.tabfitSources.get(id).read(offset, dstPtr, n)`), which copies the
// bytes straight into the destination inside the wasm heap, so the heap holds
// only the engine's own copy of the weights. Progress goes to the same JS
// object's `progress(done, total, component)`; returning false cancels.
//
// Reads and progress calls happen on the thread that called tfw_load_js (the
// worker's main wasm thread), where the JS source object lives. When layers
// stream (a model larger than the budget, or layers unloaded later), the
// engine reads through the same reader during later calls (generate,
// load_components): JS keeps the source registered until it unloads the model.
// Component events (tabfit_engine_set_load_events) go to the same object's
// `event(loaded, total, component, state)`.
#include <emscripten/emscripten.h>

#include <cstdint>

#include "c_api/tabfit_c.h"

EM_JS(int, tabfit_js_read, (int source_id, double offset, void* dst, double n), {
  var src = Module.tabfitSources && Module.tabfitSources.get(source_id);
  if (!src) return 2;
  try {
    return src.read(offset, dst, n, HEAPU8) ? 0 : 1;
  } catch (e) {
    src.error = e;
    return 3;
  }
});

EM_JS(int, tabfit_js_progress, (int source_id, double done, double total, const char* component), {
  var src = Module.tabfitSources && Module.tabfitSources.get(source_id);
  if (!src || !src.progress) return 1;
  try {
    return src.progress(done, total, UTF8ToString(component)) ? 1 : 0;
  } catch (e) {
    src.error = e;
    return 0;
  }
});

EM_JS(int, tabfit_js_event, (int source_id, double loaded, double total, const char* component, const char* state), {
  var src = Module.tabfitSources && Module.tabfitSources.get(source_id);
  if (!src || !src.event) return 1;
  try {
    return src.event(loaded, total, UTF8ToString(component), UTF8ToString(state)) ? 1 : 0;
  } catch (e) {
    src.error = e;
    return 0;
  }
});

namespace {

int EventToJs(void* user, uint64_t loaded, uint64_t total, const char* component, const char* state) {
  int id = static_cast<int>(reinterpret_cast<intptr_t>(user));
  return tabfit_js_event(id, static_cast<double>(loaded), static_cast<double>(total), component, state);
}

int ReadFromJs(void* user, uint64_t offset, void* dst, size_t n) {
  int id = static_cast<int>(reinterpret_cast<intptr_t>(user));
  return tabfit_js_read(id, static_cast<double>(offset), dst, static_cast<double>(n));
}

int ProgressToJs(void* user, uint64_t done, uint64_t total, const char* component) {
  int id = static_cast<int>(reinterpret_cast<intptr_t>(user));
  return tabfit_js_progress(id, static_cast<double>(done), static_cast<double>(total), component);
}

}  // namespace

extern "C" {

// Loads a model whose bytes JS serves through Module.tabfitSources.get(source_id).
// `size` is a double because JS numbers are (files < 2^53 bytes).
EMSCRIPTEN_KEEPALIVE tabfit_status tfw_load_js(tabfit_engine* h, int source_id, double size, const char* name) {
  void* user = reinterpret_cast<void*>(static_cast<intptr_t>(source_id));
  return tabfit_engine_load_reader(h, name, static_cast<uint64_t>(size), ReadFromJs, user, ProgressToJs, user);
}

// Sends the handle's component events (state changes, bytes) to
// Module.tabfitSources.get(source_id).event; set before tfw_load_js.
EMSCRIPTEN_KEEPALIVE tabfit_status tfw_set_load_events_js(tabfit_engine* h, int source_id) {
  return tabfit_engine_set_load_events(h, EventToJs, reinterpret_cast<void*>(static_cast<intptr_t>(source_id)));
}

// Size of the wasm linear memory in bytes (what the tab pays for the heap).
EMSCRIPTEN_KEEPALIVE double tfw_heap_bytes() { return static_cast<double>(__builtin_wasm_memory_size(0)) * 65536.0; }

}  // extern "C"
