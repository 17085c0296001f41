// tabfit C API implementation: a thin, exception-free shell over tabfit::Engine.
#include "c_api/tabfit_c.h"

#include <algorithm>
#include <functional>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/generation.h"
#include "model/gguf/byte_source.h"
#include "model/gguf/gguf.h"
#include "model/llama/hparams.h"
#include "model/llama/llama_model.h"
#include "loader/http_source.h"
#include "model/package/package.h"
#include "model/tokenizer/tokenizer.h"

using nlohmann::json;

namespace {

using tabfit::Status;
using tabfit::StatusCode;

// A ByteSource over caller callbacks (tabfit_engine_load_reader).
class ReaderSource : public tabfit::ByteSource {
 public:
  ReaderSource(std::string name, uint64_t size, tabfit_read_fn read, void* user)
      : name_(std::move(name)), size_(size), read_(read), user_(user) {}
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  Status ReadAt(uint64_t offset, void* dst, size_t n) const override {
    TF_RETURN_IF_ERROR(tabfit::CheckReadRange(name_, size_, offset, n));
    if (n == 0) return Status::Ok();
    int rc = read_(user_, offset, dst, n);
    if (rc != 0) {
      return tabfit::IoError(name_ + ": reading " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                             " failed (reader returned " + std::to_string(rc) +
                             "); the stored copy may be incomplete: clear the cache and load again");
    }
    return Status::Ok();
  }

 private:
  std::string name_;
  uint64_t size_;
  tabfit_read_fn read_;
  void* user_;
};

// Keeps the per-component bytes of an engine's ledger up to date from its
// events, so the totals the ledger reaches while the engine frees everything
// on unload can still be reported afterwards.
struct LedgerMirror {
  std::mutex mu;
  std::vector<tabfit::ComponentUsage> components;
  uint64_t total_current = 0, total_peak = 0, budget = 0, max_buffer = 0;

  void Reset(const tabfit::LedgerSnapshot& s) {
    std::lock_guard<std::mutex> lock(mu);
    components = s.components;
    total_current = s.total_current;
    total_peak = s.total_peak;
    budget = s.budget_bytes;
    max_buffer = s.max_buffer_bytes;
  }
  void Apply(const tabfit::LedgerEvent& ev) {
    if (ev.kind == tabfit::LedgerEvent::Kind::kRefused) return;
    std::lock_guard<std::mutex> lock(mu);
    auto it = std::find_if(components.begin(), components.end(),
                           [&](const tabfit::ComponentUsage& c) { return c.name == ev.component; });
    if (it == components.end()) {
      components.push_back({ev.component, 0, 0, 0, 0});
      it = components.end() - 1;
    }
    if (ev.kind == tabfit::LedgerEvent::Kind::kAllocate) {
      it->current_bytes += static_cast<uint64_t>(ev.delta_bytes);
      it->peak_bytes = std::max(it->peak_bytes, it->current_bytes);
      it->live_buffers++;
      it->total_allocations++;
      total_current += static_cast<uint64_t>(ev.delta_bytes);
      total_peak = std::max(total_peak, total_current);
    } else {
      uint64_t d = static_cast<uint64_t>(-ev.delta_bytes);
      it->current_bytes -= std::min(d, it->current_bytes);
      if (it->live_buffers > 0) it->live_buffers--;
      total_current -= std::min(d, total_current);
    }
  }
};

}  // namespace

struct tabfit_engine {
  tabfit::EngineOptions options;
  // Which residency keys the options gave (memory and reader loads default them otherwise).
  bool background_given = false, unload_given = false;
  int n_ctx_max = 0;  // caps the model's context when options.n_ctx is 0 (a profile's max_context)
  std::unique_ptr<tabfit::Engine> engine;
  std::optional<std::string> chat_template;
  std::string model_name;
  std::string last_error;
  std::string out;  // backing store for returned strings
  std::shared_ptr<LedgerMirror> mirror = std::make_shared<LedgerMirror>();
  int ledger_listener = -1;
  std::unique_ptr<tabfit::Generation> gen;
  tabfit_load_event_fn on_event = nullptr;
  void* on_event_user = nullptr;
};

namespace {

tabfit_status Fail(tabfit_engine* h, tabfit_status code, std::string message) {
  if (h) h->last_error = std::move(message);
  return code;
}

tabfit_status FromStatus(tabfit_engine* h, const Status& s) {
  if (s.ok()) {
    h->last_error.clear();
    return TABFIT_OK;
  }
  h->last_error = s.message();
  return static_cast<tabfit_status>(s.code());
}

tabfit_status Ok(tabfit_engine* h) {
  h->last_error.clear();
  return TABFIT_OK;
}

// Runs `fn` and turns any escaping C++ exception into a status: nothing throws across the API.
template <typename Fn>
tabfit_status Guard(tabfit_engine* h, const char* what, Fn&& fn) {
  if (!h) return TABFIT_INVALID_ARGUMENT;
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return Fail(h, TABFIT_OUT_OF_MEMORY,
                std::string(what) + ": the allocator refused memory; load a smaller model or a smaller precision, "
                                    "or shorten the context");
  } catch (const std::exception& e) {
    return Fail(h, TABFIT_INTERNAL, std::string(what) + ": unexpected C++ exception: " + e.what() +
                                        " (a bug in tabfit; please report it)");
  } catch (...) {
    return Fail(h, TABFIT_INTERNAL, std::string(what) + ": unexpected exception (a bug in tabfit; please report it)");
  }
}

// Reads an optional integer / number / string / bool field; error text names the key.
template <typename T>
Status ReadField(const json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return tabfit::InvalidArgument(std::string("\"") + key + "\" must be true or false");
    *out = it->template get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return tabfit::InvalidArgument(std::string("\"") + key + "\" must be a string");
    *out = it->template get<std::string>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!it->is_number()) return tabfit::InvalidArgument(std::string("\"") + key + "\" must be a number");
    *out = static_cast<T>(it->template get<double>());
  } else {
    if (!it->is_number_integer() && !it->is_number_unsigned()) {
      return tabfit::InvalidArgument(std::string("\"") + key + "\" must be an integer");
    }
    if (it->is_number_unsigned()) {
      *out = static_cast<T>(it->template get<uint64_t>());
    } else {
      int64_t v = it->template get<int64_t>();
      if (v < 0) return tabfit::InvalidArgument(std::string("\"") + key + "\" must not be negative");
      *out = static_cast<T>(v);
    }
  }
  return Status::Ok();
}

tabfit::Result<json> ParseObject(const char* text, const char* what) {
  if (!text || !*text) return json::object();
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return tabfit::InvalidArgument(std::string(what) + ": not a JSON object: " + std::string(text).substr(0, 200));
  }
  return j;
}

Status CheckKeys(const json& j, std::initializer_list<const char*> allowed, const char* what) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* a : allowed) known |= it.key() == a;
    if (!known) {
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      return tabfit::InvalidArgument(std::string(what) + ": unknown key \"" + it.key() + "\"; known keys: " + list);
    }
  }
  return Status::Ok();
}

Status ParseStringList(const json& j, const char* key, std::vector<std::string>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_array()) return tabfit::InvalidArgument(std::string("\"") + key + "\" must be an array of strings");
  out->clear();
  for (const auto& v : *it) {
    if (!v.is_string()) return tabfit::InvalidArgument(std::string("\"") + key + "\" must be an array of strings");
    out->push_back(v.get<std::string>());
  }
  return Status::Ok();
}

// The spec's configure_pruning object: {"strategy","threshold","budget",
// "min_tokens_to_keep","max_tokens_to_drop","frequency_aware","decay",
// "max_tokens","pruning_interval"}.
Status ParsePruning(const json& j, tabfit::KvPruneOptions* p) {
  if (!j.is_object()) return tabfit::InvalidArgument("\"pruning\" must be an object");
  TF_RETURN_IF_ERROR(CheckKeys(j, {"strategy", "threshold", "budget", "min_tokens_to_keep", "max_tokens_to_drop",
                                   "frequency_aware", "decay", "max_tokens", "pruning_interval"},
                               "pruning"));
  TF_RETURN_IF_ERROR(ReadField(j, "strategy", &p->strategy));
  TF_RETURN_IF_ERROR(ReadField(j, "threshold", &p->threshold));
  TF_RETURN_IF_ERROR(ReadField(j, "budget", &p->budget));
  TF_RETURN_IF_ERROR(ReadField(j, "min_tokens_to_keep", &p->min_tokens_to_keep));
  TF_RETURN_IF_ERROR(ReadField(j, "max_tokens_to_drop", &p->max_tokens_to_drop));
  TF_RETURN_IF_ERROR(ReadField(j, "frequency_aware", &p->frequency_aware));
  TF_RETURN_IF_ERROR(ReadField(j, "decay", &p->decay));
  TF_RETURN_IF_ERROR(ReadField(j, "max_tokens", &p->auto_max_tokens));
  TF_RETURN_IF_ERROR(ReadField(j, "pruning_interval", &p->auto_interval));
  return tabfit::CheckPruneOptions(*p);
}

Status ParseEngineOptions(const char* text, tabfit_engine* h) {
  tabfit::EngineOptions* o = &h->options;
  TF_ASSIGN_OR_RETURN(json j, ParseObject(text, "engine options"));
  TF_RETURN_IF_ERROR(CheckKeys(
      j, {"threads", "n_ctx", "n_ctx_max", "n_batch", "budget_bytes", "max_buffer_bytes", "kv_type", "kv_recent", "kv_prune",
          "default_bits", "recent_token_bits", "rolling_window", "group_size", "kv_pruning", "pruning", "weight_type", "priority_components", "background_loading", "unload_unused_layers", "memory_threshold",
          "keep_n_layers_loaded", "ring_slots", "naive_streaming", "draft_model", "draft_tokens", "groups", "map_streamed_layers"},
      "engine options"));
  TF_RETURN_IF_ERROR(ReadField(j, "n_ctx_max", &h->n_ctx_max));
  TF_RETURN_IF_ERROR(ReadField(j, "threads", &o->threads));
  TF_RETURN_IF_ERROR(ReadField(j, "n_ctx", &o->n_ctx));
  TF_RETURN_IF_ERROR(ReadField(j, "n_batch", &o->n_batch));
  TF_RETURN_IF_ERROR(ReadField(j, "budget_bytes", &o->budget_bytes));
  TF_RETURN_IF_ERROR(ReadField(j, "max_buffer_bytes", &o->max_buffer_bytes));
  TF_RETURN_IF_ERROR(ReadField(j, "kv_type", &o->kv_type));
  TF_RETURN_IF_ERROR(ReadField(j, "kv_recent", &o->kv_recent));
  TF_RETURN_IF_ERROR(ReadField(j, "kv_prune", &o->kv_prune));
  TF_RETURN_IF_ERROR(ReadField(j, "default_bits", &o->kv_lowbit.default_bits));
  TF_RETURN_IF_ERROR(ReadField(j, "recent_token_bits", &o->kv_lowbit.recent_token_bits));
  TF_RETURN_IF_ERROR(ReadField(j, "rolling_window", &o->kv_lowbit.rolling_window));
  TF_RETURN_IF_ERROR(ReadField(j, "group_size", &o->kv_lowbit.group_size));
  TF_RETURN_IF_ERROR(ReadField(j, "kv_pruning", &o->kv_pruning));
  if (j.contains("default_bits") && o->kv_type == "f16" && !j.contains("kv_type")) o->kv_type = "kivi";
  if (j.contains("pruning")) {
    TF_RETURN_IF_ERROR(ParsePruning(j["pruning"], &o->kv_prune_config));
    o->kv_pruning = true;
  }
  TF_RETURN_IF_ERROR(ReadField(j, "weight_type", &o->weight_type));
  tabfit::ResidencyOptions& r = o->residency;
  TF_RETURN_IF_ERROR(ParseStringList(j, "priority_components", &r.priority_components));
  TF_RETURN_IF_ERROR(ReadField(j, "background_loading", &r.background_loading));
  TF_RETURN_IF_ERROR(ReadField(j, "unload_unused_layers", &r.unload_unused_layers));
  TF_RETURN_IF_ERROR(ReadField(j, "memory_threshold", &r.memory_threshold));
  TF_RETURN_IF_ERROR(ReadField(j, "keep_n_layers_loaded", &r.keep_n_layers_loaded));
  TF_RETURN_IF_ERROR(ReadField(j, "ring_slots", &r.ring_slots));
  TF_RETURN_IF_ERROR(ReadField(j, "naive_streaming", &r.naive_streaming));
  TF_RETURN_IF_ERROR(ReadField(j, "map_streamed_layers", &r.map_streamed_layers));
  TF_RETURN_IF_ERROR(ReadField(j, "draft_model", &o->draft_model));
  TF_RETURN_IF_ERROR(ReadField(j, "draft_tokens", &o->draft_tokens));
  if (j.contains("groups")) {
    const nlohmann::json& g = j["groups"];
    if (!g.is_object()) return tabfit::InvalidArgument("engine options: \"groups\" must be an object of name -> [component names]");
    for (auto it = g.begin(); it != g.end(); ++it) {
      std::vector<std::string> members;
      if (!it.value().is_array()) return tabfit::InvalidArgument("engine options: groups[\"" + it.key() + "\"] must be an array of component names");
      for (const auto& m : it.value()) {
        if (!m.is_string()) return tabfit::InvalidArgument("engine options: groups[\"" + it.key() + "\"] must hold strings");
        members.push_back(m.get<std::string>());
      }
      o->groups[it.key()] = std::move(members);
    }
  }
  h->background_given = j.contains("background_loading");
  h->unload_given = j.contains("unload_unused_layers");
  if (o->weight_type == "keep") o->weight_type.clear();
  if (o->n_batch <= 0) return tabfit::InvalidArgument("engine options: \"n_batch\" must be at least 1");
  if (o->max_buffer_bytes < 4096) {
    return tabfit::InvalidArgument("engine options: \"max_buffer_bytes\" must be at least 4096");
  }
  if (r.ring_slots < 1) return tabfit::InvalidArgument("engine options: \"ring_slots\" must be at least 1");
  if (!o->draft_model.empty() && (o->draft_tokens < 1 || o->draft_tokens > 16)) {
    return tabfit::InvalidArgument("engine options: \"draft_tokens\" must be in [1, 16]");
  }
  return Status::Ok();
}

Status ParseGenerateOptions(const char* text, tabfit::GenerateOptions* o) {
  TF_ASSIGN_OR_RETURN(json j, ParseObject(text, "generate options"));
  TF_RETURN_IF_ERROR(CheckKeys(j,
                               {"max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                                "repeat_last_n", "seed", "stop", "add_bos", "stop_at_eos", "parse_special"},
                               "generate options"));
  TF_RETURN_IF_ERROR(ReadField(j, "max_tokens", &o->max_tokens));
  TF_RETURN_IF_ERROR(ReadField(j, "temperature", &o->sampler.temperature));
  if (auto it = j.find("top_k"); it != j.end() && it->is_number_integer()) {
    o->sampler.top_k = it->get<int>();  // <= 0 means off, so negatives are fine here
  } else {
    TF_RETURN_IF_ERROR(ReadField(j, "top_k", &o->sampler.top_k));
  }
  TF_RETURN_IF_ERROR(ReadField(j, "top_p", &o->sampler.top_p));
  TF_RETURN_IF_ERROR(ReadField(j, "min_p", &o->sampler.min_p));
  TF_RETURN_IF_ERROR(ReadField(j, "repeat_penalty", &o->sampler.repeat_penalty));
  TF_RETURN_IF_ERROR(ReadField(j, "repeat_last_n", &o->sampler.repeat_last_n));
  TF_RETURN_IF_ERROR(ReadField(j, "seed", &o->sampler.seed));
  TF_RETURN_IF_ERROR(ReadField(j, "add_bos", &o->add_bos));
  TF_RETURN_IF_ERROR(ReadField(j, "stop_at_eos", &o->stop_at_eos));
  TF_RETURN_IF_ERROR(ReadField(j, "parse_special", &o->parse_special));
  if (auto it = j.find("stop"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      o->stop = {it->get<std::string>()};
    } else if (it->is_array()) {
      for (const auto& s : *it) {
        if (!s.is_string()) return tabfit::InvalidArgument("generate options: \"stop\" must be strings");
        o->stop.push_back(s.get<std::string>());
      }
    } else {
      return tabfit::InvalidArgument("generate options: \"stop\" must be a string or an array of strings");
    }
  }
  if (o->max_tokens <= 0) return tabfit::InvalidArgument("generate options: \"max_tokens\" must be at least 1");
  return Status::Ok();
}

void EndGeneration(tabfit_engine* h) { h->gen.reset(); }

// Loads from `make_source()` (called twice: once to read the metadata the C API
// reports, once for the engine). Replaces any loaded model.
// `persistent`: the source stays valid after the load (a file); memory and
// reader sources are read on the calling thread only and, unless the options
// say otherwise, completely during the load.
template <typename MakeSource>
tabfit_status LoadWith(tabfit_engine* h, MakeSource make_source, tabfit_progress_fn progress, void* user,
                       bool persistent, bool rereadable = true) {
  tabfit_status rc = tabfit_engine_unload(h);
  if (rc != TABFIT_OK) return rc;
  tabfit::EngineOptions options = h->options;
  if (!persistent) {
    options.residency.background_loading = false;
    if (!h->unload_given) options.residency.unload_unused_layers = false;
    // Layers can be read again later only from a reader the caller keeps open
    // (unload_unused_layers given true); memory is lent for the call only.
    options.residency.source_rereadable = rereadable && options.residency.unload_unused_layers;
  }
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
  options.threads = 1;  // a WebAssembly build without pthreads cannot start threads
  options.residency.background_loading = false;
#endif
  if (h->on_event) {
    options.on_load_event = [fn = h->on_event, user = h->on_event_user](const tabfit::LoadEvent& ev) {
      return fn(user, ev.loaded, ev.total, ev.component.c_str(), tabfit::ComponentStateName(ev.state)) != 0;
    };
  }
  {
    tabfit::Result<std::unique_ptr<tabfit::ByteSource>> src = make_source();
    if (!src.ok()) return FromStatus(h, src.status());
    auto gguf = tabfit::GgufFile::Parse(std::move(src).value());
    if (!gguf.ok()) return FromStatus(h, gguf.status());
    h->chat_template.reset();
    if (auto t = gguf->GetString("tokenizer.chat_template"); t.ok()) h->chat_template = *t;
    h->model_name = gguf->GetStringOr("general.name", "").ok() ? *gguf->GetStringOr("general.name", "") : "";
    if (options.n_ctx == 0 && h->n_ctx_max > 0) {
      // The engine's default (the model's context, at most 4096), capped further.
      auto hp = tabfit::ReadLlamaHParams(*gguf);
      if (!hp.ok()) return FromStatus(h, hp.status());
      options.n_ctx = std::min({hp->n_ctx_train, 4096, h->n_ctx_max});
    }
  }
  tabfit::Result<std::unique_ptr<tabfit::ByteSource>> src = make_source();
  if (!src.ok()) return FromStatus(h, src.status());
  tabfit::LoadProgressFn fn;
  if (progress) {
    fn = [progress, user](uint64_t done, uint64_t total, const std::string& component) {
      return progress(user, done, total, component.c_str()) != 0;
    };
  }
  auto loaded = tabfit::Engine::Load(std::move(src).value(), options, fn);
  if (!loaded.ok()) return FromStatus(h, loaded.status());
  h->engine = std::move(loaded).value();
  h->mirror = std::make_shared<LedgerMirror>();
  h->mirror->Reset(h->engine->ledger().Snapshot());
  std::weak_ptr<LedgerMirror> weak = h->mirror;
  h->ledger_listener = h->engine->ledger().Subscribe([weak](const tabfit::LedgerEvent& ev) {
    if (auto m = weak.lock()) m->Apply(ev);
  });
  return Ok(h);
}

tabfit_status NeedEngine(tabfit_engine* h, const char* what) {
  if (!h->engine) {
    return Fail(h, TABFIT_BAD_STATE, std::string(what) + ": no model is loaded; load one first");
  }
  return TABFIT_OK;
}

}  // namespace

extern "C" {

const char* tabfit_status_name(tabfit_status status) {
  if (status == TABFIT_BAD_STATE) return "BadState";
  if (status < 0 || status > TABFIT_INTERNAL) return "?";
  return tabfit::StatusCodeName(static_cast<StatusCode>(status));
}

tabfit_status tabfit_engine_create(const char* options_json, tabfit_engine** out) {
  if (!out) return TABFIT_INVALID_ARGUMENT;
  *out = new (std::nothrow) tabfit_engine();
  if (!*out) return TABFIT_OUT_OF_MEMORY;
  tabfit_engine* h = *out;
  return Guard(h, "tabfit_engine_create", [&] { return FromStatus(h, ParseEngineOptions(options_json, h)); });
}

void tabfit_engine_destroy(tabfit_engine* h) {
  if (!h) return;
  tabfit_engine_unload(h);
  delete h;
}

const char* tabfit_last_error(const tabfit_engine* h) { return h ? h->last_error.c_str() : "no engine handle"; }

tabfit_status tabfit_engine_load_file(tabfit_engine* h, const char* path, tabfit_progress_fn progress, void* user) {
  return Guard(h, "tabfit_engine_load_file", [&] {
    if (!path) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_load_file: path is NULL");
    std::string p = path;
    return LoadWith(h, [&] { return tabfit::OpenAnySource(p); }, progress, user, /*persistent=*/true);
  });
}

tabfit_status tabfit_engine_load_memory(tabfit_engine* h, const void* data, size_t size, const char* name,
                                        tabfit_progress_fn progress, void* user) {
  return Guard(h, "tabfit_engine_load_memory", [&] {
    if (!data && size) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_load_memory: data is NULL");
    std::string n = name ? name : "memory";
    return LoadWith(
        h,
        [&]() -> tabfit::Result<std::unique_ptr<tabfit::ByteSource>> {
          return tabfit::MakeMemoryViewSource(static_cast<const uint8_t*>(data), size, n);
        },
        progress, user, /*persistent=*/false, /*rereadable=*/false);
  });
}

tabfit_status tabfit_engine_load_reader(tabfit_engine* h, const char* name, uint64_t size, tabfit_read_fn read,
                                        void* read_user, tabfit_progress_fn progress, void* progress_user) {
  return Guard(h, "tabfit_engine_load_reader", [&] {
    if (!read) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_load_reader: read function is NULL");
    std::string n = name ? name : "reader";
    return LoadWith(
        h,
        [&]() -> tabfit::Result<std::unique_ptr<tabfit::ByteSource>> {
          return std::unique_ptr<tabfit::ByteSource>(new ReaderSource(n, size, read, read_user));
        },
        progress, progress_user, /*persistent=*/false);
  });
}

tabfit_status tabfit_engine_unload(tabfit_engine* h) {
  return Guard(h, "tabfit_engine_unload", [&] {
    EndGeneration(h);
    // The listener stays subscribed while the engine frees its buffers, so the
    // mirror sees every free; the ledger itself goes with the engine.
    h->engine.reset();
    h->ledger_listener = -1;
    return Ok(h);
  });
}

tabfit_status tabfit_engine_set_load_events(tabfit_engine* h, tabfit_load_event_fn fn, void* user) {
  return Guard(h, "tabfit_engine_set_load_events", [&] {
    h->on_event = fn;
    h->on_event_user = user;
    return Ok(h);
  });
}

tabfit_status tabfit_engine_components_json(tabfit_engine* h, const char** out_json) {
  return Guard(h, "tabfit_engine_components_json", [&] {
    if (!out_json) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_components_json: out_json is NULL");
    if (tabfit_status rc = NeedEngine(h, "tabfit_engine_components_json"); rc != TABFIT_OK) return rc;
    json comps = json::array();
    for (const tabfit::EngineComponent& c : h->engine->components()) {
      comps.push_back({{"name", c.name}, {"group", c.group}, {"bytes", c.bytes}, {"state", c.state},
                       {"pinned", c.pinned}, {"loads", c.loads}, {"bytes_read", c.bytes_read},
                       {"reads_per_token", c.reads_per_token}});
    }
    const tabfit::Residency& r = h->engine->residency();
    json j = {{"components", comps},
              {"streaming", r.streaming()},
              {"pinned_layers", r.pinned_layers()},
              {"streamed_layers", r.streamed_layers()},
              {"streamed_bytes_per_pass", r.streamed_bytes_per_pass()},
              {"summary", r.Summary()}};
    h->out = j.dump();
    *out_json = h->out.c_str();
    return Ok(h);
  });
}

namespace {
tabfit_status WithNames(tabfit_engine* h, const char* what, const char* names_json,
                        const std::function<Status(const std::vector<std::string>&)>& fn) {
  if (tabfit_status rc = NeedEngine(h, what); rc != TABFIT_OK) return rc;
  if (h->gen && !h->gen->finished()) {
    return Fail(h, TABFIT_BAD_STATE, std::string(what) + ": a generation is running; end it first");
  }
  json j = json::parse(names_json ? names_json : "", nullptr, /*allow_exceptions=*/false);
  if (j.is_string()) j = json::array({j});
  std::vector<std::string> names;
  if (!j.is_array()) return Fail(h, TABFIT_INVALID_ARGUMENT, std::string(what) + ": names must be a JSON array of strings");
  for (const auto& v : j) {
    if (!v.is_string()) return Fail(h, TABFIT_INVALID_ARGUMENT, std::string(what) + ": names must be strings");
    names.push_back(v.get<std::string>());
  }
  return FromStatus(h, fn(names));
}
}  // namespace

tabfit_status tabfit_engine_load_components(tabfit_engine* h, const char* names_json) {
  return Guard(h, "tabfit_engine_load_components", [&] {
    return WithNames(h, "tabfit_engine_load_components", names_json,
                     [&](const std::vector<std::string>& n) { return h->engine->LoadComponents(n); });
  });
}

tabfit_status tabfit_engine_unload_components(tabfit_engine* h, const char* names_json) {
  return Guard(h, "tabfit_engine_unload_components", [&] {
    return WithNames(h, "tabfit_engine_unload_components", names_json,
                     [&](const std::vector<std::string>& n) { return h->engine->UnloadComponents(n); });
  });
}

tabfit_status tabfit_engine_swap_components(tabfit_engine* h, const char* unload_json, const char* load_json) {
  return Guard(h, "tabfit_engine_swap_components", [&] {
    return WithNames(h, "tabfit_engine_swap_components", unload_json, [&](const std::vector<std::string>& u) {
      json j = json::parse(load_json ? load_json : "", nullptr, false);
      if (j.is_string()) j = json::array({j});
      std::vector<std::string> l;
      if (!j.is_array()) return tabfit::InvalidArgument("tabfit_engine_swap_components: load must be a JSON array");
      for (const auto& v : j) {
        if (!v.is_string()) return tabfit::InvalidArgument("tabfit_engine_swap_components: names must be strings");
        l.push_back(v.get<std::string>());
      }
      return h->engine->Swap(u, l);
    });
  });
}

tabfit_status tabfit_engine_info_json(tabfit_engine* h, const char** out_json) {
  return Guard(h, "tabfit_engine_info_json", [&] {
    if (!out_json) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_info_json: out_json is NULL");
    json j;
    j["loaded"] = static_cast<bool>(h->engine);
    if (h->engine) {
      const auto& hp = h->engine->model().hparams();
      const auto& tok = h->engine->tokenizer();
      j["name"] = h->model_name;
      j["architecture"] = hp.arch;
      j["n_vocab"] = hp.n_vocab;
      j["n_embd"] = hp.n_embd;
      j["n_layer"] = hp.n_layer;
      j["n_head_kv"] = hp.n_head_kv;
      j["head_dim"] = hp.head_dim;
      j["kv_type"] = h->engine->options().kv_type;
      j["n_ctx"] = h->engine->context_size();
      j["n_ctx_train"] = hp.n_ctx_train;
      j["threads"] = h->engine->threads();
      j["weight_bytes"] = h->engine->model().weight_bytes();
      j["bos"] = tok.bos();
      j["eos"] = tok.eos();
      j["bos_text"] = tok.bos() >= 0 ? tok.TokenText(tok.bos()) : "";
      j["eos_text"] = tok.eos() >= 0 ? tok.TokenText(tok.eos()) : "";
      j["chat_template"] = h->chat_template ? json(*h->chat_template) : json(nullptr);
    }
    h->out = j.dump(-1, ' ', false, json::error_handler_t::replace);
    *out_json = h->out.c_str();
    return Ok(h);
  });
}

tabfit_status tabfit_engine_ledger_json(tabfit_engine* h, const char** out_json) {
  return Guard(h, "tabfit_engine_ledger_json", [&] {
    if (!out_json) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_ledger_json: out_json is NULL");
    json j;
    j["loaded"] = static_cast<bool>(h->engine);
    json comps = json::array();
    if (h->engine) {
      tabfit::LedgerSnapshot s = h->engine->ledger().Snapshot();
      j["total_current"] = s.total_current;
      j["total_peak"] = s.total_peak;
      j["budget_bytes"] = s.budget_bytes;
      j["max_buffer_bytes"] = s.max_buffer_bytes;
      for (const auto& c : s.components) {
        comps.push_back({{"name", c.name}, {"current_bytes", c.current_bytes}, {"peak_bytes", c.peak_bytes},
                         {"live_buffers", c.live_buffers}});
      }
    } else {
      LedgerMirror& m = *h->mirror;
      std::lock_guard<std::mutex> lock(m.mu);
      j["total_current"] = m.total_current;
      j["total_peak"] = m.total_peak;
      j["budget_bytes"] = m.budget;
      j["max_buffer_bytes"] = m.max_buffer;
      for (const auto& c : m.components) {
        comps.push_back({{"name", c.name}, {"current_bytes", c.current_bytes}, {"peak_bytes", c.peak_bytes},
                         {"live_buffers", c.live_buffers}});
      }
    }
    j["components"] = comps;
    h->out = j.dump();
    *out_json = h->out.c_str();
    return Ok(h);
  });
}

tabfit_status tabfit_generate_begin(tabfit_engine* h, const char* prompt, const char* options_json) {
  return Guard(h, "tabfit_generate_begin", [&] {
    EndGeneration(h);
    if (tabfit_status rc = NeedEngine(h, "tabfit_generate_begin"); rc != TABFIT_OK) return rc;
    if (!prompt) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_generate_begin: prompt is NULL");
    tabfit::GenerateOptions go;
    Status st = ParseGenerateOptions(options_json, &go);
    if (!st.ok()) return FromStatus(h, st);
    auto g = std::make_unique<tabfit::Generation>(*h->engine);
    st = g->Begin(prompt, go);
    if (!st.ok()) return FromStatus(h, st);
    h->gen = std::move(g);
    return Ok(h);
  });
}

tabfit_status tabfit_generate_next(tabfit_engine* h, const char** out_piece, int32_t* out_token, int* out_done) {
  return Guard(h, "tabfit_generate_next", [&] {
    if (!out_piece || !out_token || !out_done) {
      return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_generate_next: an output pointer is NULL");
    }
    h->out.clear();
    *out_piece = h->out.c_str();
    *out_token = -1;
    *out_done = 1;
    if (!h->gen) return Fail(h, TABFIT_BAD_STATE, "tabfit_generate_next: no generation; call tabfit_generate_begin");
    tabfit::Generation::Step step;
    Status st = h->gen->Next(&step);
    if (!st.ok()) return FromStatus(h, st);
    h->out = step.text + step.tail;
    *out_piece = h->out.c_str();
    *out_token = step.token;
    *out_done = step.done ? 1 : 0;
    return Ok(h);
  });
}

tabfit_status tabfit_generate_end(tabfit_engine* h, const char** out_json) {
  return Guard(h, "tabfit_generate_end", [&] {
    json j;
    if (h->gen) {
      h->gen->Cancel();  // no effect once it has finished
      const tabfit::GenerateStats& s = h->gen->stats();
      j = {{"prompt_tokens", s.prompt_tokens},
           {"generated_tokens", s.generated_tokens},
           {"prompt_seconds", s.prompt_seconds},
           {"generate_seconds", s.generate_seconds},
           {"stop_reason", s.stop_reason},
           {"draft_proposed", s.draft_proposed},
           {"draft_accepted", s.draft_accepted},
           {"verify_passes", s.verify_passes},
           {"streamed_bytes", s.streamed_bytes}};
    } else {
      j = {{"prompt_tokens", 0}, {"generated_tokens", 0}, {"prompt_seconds", 0}, {"generate_seconds", 0},
           {"stop_reason", "none"}};
    }
    EndGeneration(h);
    h->out = j.dump();
    if (out_json) *out_json = h->out.c_str();
    return Ok(h);
  });
}

tabfit_status tabfit_tokenize_json(tabfit_engine* h, const char* text, int add_bos, const char** out_json) {
  return Guard(h, "tabfit_tokenize_json", [&] {
    if (tabfit_status rc = NeedEngine(h, "tabfit_tokenize_json"); rc != TABFIT_OK) return rc;
    if (!text || !out_json) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_tokenize_json: NULL argument");
    const tabfit::Tokenizer& tok = h->engine->tokenizer();
    json j = tok.Encode(text, add_bos != 0 && tok.add_bos(), false);
    h->out = j.dump();
    *out_json = h->out.c_str();
    return Ok(h);
  });
}

tabfit_status tabfit_token_pieces_json(tabfit_engine* h, const int32_t* ids, size_t n, const char** out_json) {
  return Guard(h, "tabfit_token_pieces_json", [&] {
    if (tabfit_status rc = NeedEngine(h, "tabfit_token_pieces_json"); rc != TABFIT_OK) return rc;
    if ((!ids && n) || !out_json) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_token_pieces_json: NULL argument");
    const tabfit::Tokenizer& tok = h->engine->tokenizer();
    json j = json::array();
    for (size_t i = 0; i < n; ++i) j.push_back(tok.TokenToPiece(ids[i]));
    h->out = j.dump(-1, ' ', false, json::error_handler_t::replace);
    *out_json = h->out.c_str();
    return Ok(h);
  });
}

}  // extern "C"

tabfit_status tabfit_engine_kv_json(tabfit_engine* h, const char* op_json, const char** out_json) {
  return Guard(h, "tabfit_engine_kv_json", [&] {
    if (!out_json) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_kv_json: out_json is NULL");
    if (!h->engine) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_kv_json: no model is loaded");
    auto parsed = ParseObject(op_json, "KV operation");
    if (!parsed.ok()) return FromStatus(h, parsed.status());
    const json& j = *parsed;
    std::string op;
    if (Status s = ReadField(j, "op", &op); !s.ok()) return FromStatus(h, s);
    tabfit::Engine& e = *h->engine;
    json out;
    tabfit::KvPruneResult r;
    uint64_t freed = 0;
    Status st = Status::Ok();
    if (op == "prune") {
      auto x = e.PruneKv();
      st = x.status();
      if (x.ok()) r = *x;
    } else if (op == "truncate") {
      int keep = -1;
      st = ReadField(j, "keep_recent", &keep);
      if (st.ok()) {
        auto x = e.TruncateKv(keep);
        st = x.status();
        if (x.ok()) r = *x;
      }
    } else if (op == "requantize") {
      int db = -1, rb = -1, w = -1;
      st = ReadField(j, "default_bits", &db);
      if (st.ok()) st = ReadField(j, "recent_token_bits", &rb);
      if (st.ok()) st = ReadField(j, "rolling_window", &w);
      if (st.ok()) {
        auto x = e.RequantizeKv(db, rb, w);
        st = x.status();
        if (x.ok()) freed = *x;
      }
    } else if (op == "set_context_window") {
      int n = 0;
      st = ReadField(j, "n_ctx", &n);
      if (st.ok()) {
        auto x = e.SetContextWindow(n);
        st = x.status();
        if (x.ok()) r = *x;
      }
    } else if (op == "configure_pruning") {
      tabfit::KvPruneOptions p = h->options.kv_prune_config;
      json cfg = j;
      cfg.erase("op");
      st = ParsePruning(cfg, &p);
      if (st.ok()) st = e.ConfigureKvPruning(p);
    } else if (op == "enable_auto_pruning") {
      int max_tokens = 0, interval = 0;
      st = ReadField(j, "max_tokens", &max_tokens);
      if (st.ok()) st = ReadField(j, "pruning_interval", &interval);
      if (st.ok()) st = e.EnableKvAutoPruning(max_tokens, interval);
    } else if (op != "info") {
      st = tabfit::InvalidArgument("KV operation \"op\" must be info, prune, truncate, requantize, "
                                   "set_context_window, configure_pruning or enable_auto_pruning (got \"" + op + "\")");
    }
    if (!st.ok()) return FromStatus(h, st);
    out["tokens_pruned"] = r.tokens;
    out["bytes_freed"] = op == "requantize" ? freed : r.bytes;
    out["tokens"] = e.kv_cache().size();
    out["bytes"] = e.kv_cache().bytes();
    out["capacity"] = e.kv_cache().config().capacity;
    h->out = out.dump();
    *out_json = h->out.c_str();
    return Ok(h);
  });
}

tabfit_status tabfit_engine_kv_get(tabfit_engine* h, int layer, int position, float* k, float* v, size_t n_floats,
                                   int* bits) {
  return Guard(h, "tabfit_engine_kv_get", [&] {
    if (!h->engine) return Fail(h, TABFIT_INVALID_ARGUMENT, "tabfit_engine_kv_get: no model is loaded");
    const tabfit::KvCacheConfig& c = h->engine->kv_cache().config();
    const size_t need = static_cast<size_t>(c.n_kv_heads) * c.head_dim;
    if (!k || !v || n_floats < need) {
      return Fail(h, TABFIT_INVALID_ARGUMENT,
                  "tabfit_engine_kv_get: k and v must each hold n_kv_heads * head_dim = " + std::to_string(need) +
                      " floats (got " + std::to_string(n_floats) + ")");
    }
    return FromStatus(h, h->engine->KvGet(layer, position, k, v, bits));
  });
}
