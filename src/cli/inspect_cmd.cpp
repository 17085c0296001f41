// `tabfit inspect`: metadata, tensors, and the memory a run would need.
#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "kv/kv_factory.h"
#include "model/gguf/gguf.h"
#include "model/llama/hparams.h"
#include "model/llama/llama_model.h"
#include "loader/http_source.h"
#include "model/package/package.h"

namespace tabfit::cli {

namespace {

std::string ComponentOf(const std::string& tensor) {
  if (tensor.rfind("token_embd", 0) == 0) return "embeddings";
  if (tensor.rfind("output_norm", 0) == 0) return "output_norm";
  if (tensor.rfind("output", 0) == 0) return "lm_head";
  if (tensor.rfind("blk.", 0) == 0) {
    size_t dot = tensor.find('.', 4);
    return "layers." + tensor.substr(4, dot - 4);
  }
  return "other";
}

Command MakeInspectCommand() {
  struct State {
    std::string model;
    int n_ctx = 0;
    std::string kv_type = "f16";
    int kv_recent = 256;
    KvFlags kv;
    CLI::Option* o_kv = nullptr;
    bool all_tensors = false;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    CLI::App* sub = app.add_subcommand("inspect", "print a model's metadata, tensors and the memory a run needs");
    sub->add_option("model", st->model, "GGUF model file or tabfit package (default: the bundled demo model)");
    sub->add_option("-c,--ctx-size", st->n_ctx, "context size for the KV-cache figure (default: the model's, max 4096)");
    st->o_kv = sub->add_option("--kv-type", st->kv_type,
                               "KV cache type for the figure: f16, f32, q8_0, q4_0, mixed, kivi2/kivi3/kivi4")
        ->default_val("f16");
    sub->add_option("--kv-recent", st->kv_recent, "with --kv-type mixed: tokens kept at 8 bits")->default_val(256);
    st->kv.Add(sub);
    sub->add_flag("--all", st->all_tensors, "list every tensor (default: the first 24)");
    return sub;
  };
  c.run = [st]() -> int {
    if (st->model.empty()) st->model = DefaultModelPath();
    auto src = OpenAnySource(st->model);  // a GGUF file or a tabfit package directory
    if (!src.ok()) return Fail(src.status());
    auto g = GgufFile::Parse(std::move(*src));
    if (!g.ok()) return Fail(g.status());
    std::printf("%s: GGUF v%u, %zu metadata keys, %zu tensors, data at offset %llu, alignment %llu\n",
                st->model.c_str(), g->version(), g->metadata().size(), g->tensors().size(),
                static_cast<unsigned long long>(g->data_offset()), static_cast<unsigned long long>(g->alignment()));
    std::printf("\nmetadata:\n");
    for (const auto& [key, value] : g->metadata()) {
      std::printf("  %-44s %s\n", key.c_str(), g->DescribeValue(value).c_str());
    }
    std::printf("\ntensors:\n");
    std::map<std::string, uint64_t> by_component;
    std::vector<std::string> order;
    uint64_t total = 0;
    size_t shown = 0;
    for (const auto& t : g->tensors()) {
      std::string comp = ComponentOf(t.name);
      if (!by_component.count(comp)) order.push_back(comp);
      by_component[comp] += t.nbytes;
      total += t.nbytes;
      if (st->all_tensors || shown < 24) {
        std::string shape;
        for (size_t i = 0; i < t.ne.size(); ++i) shape += (i ? " x " : "") + std::to_string(t.ne[i]);
        std::printf("  %-32s %-6s [%s] %s\n", t.name.c_str(), std::string(TensorTypeName(t.type)).c_str(),
                    shape.c_str(), FormatBytes(t.nbytes).c_str());
        ++shown;
      }
    }
    if (shown < g->tensors().size()) std::printf("  ... %zu more (--all)\n", g->tensors().size() - shown);

    std::printf("\nmemory a run needs:\n");
    uint64_t layers = 0;
    for (const auto& comp : order) {
      if (comp.rfind("layers.", 0) == 0) layers += by_component[comp];
      else std::printf("  %-14s %12s\n", comp.c_str(), FormatBytes(by_component[comp]).c_str());
    }
    std::printf("  %-14s %12s\n", "layers (all)", FormatBytes(layers).c_str());
    auto hp = ReadLlamaHParams(*g);
    if (!hp.ok()) {
      std::printf("  (not a runnable llama-family model: %s)\n", hp.status().message().c_str());
      return 0;
    }
    int n_ctx = st->n_ctx > 0 ? st->n_ctx : std::min(hp->n_ctx_train, 4096);
    KvCacheConfig kc{.n_layers = hp->n_layer, .n_kv_heads = hp->n_head_kv, .head_dim = hp->head_dim,
                     .capacity = n_ctx, .type = st->kv_type};
    KvCacheOptions ko;
    ko.recent_window = st->kv_recent;
    if (Status ks = st->kv.Apply(&kc.type, st->o_kv->count() > 0, n_ctx, &ko.lowbit, &ko.prune); !ks.ok()) {
      return Fail(ks);
    }
    const uint64_t kv = KvCacheBytes(kc, ko);
    if (kv == 0) {
      return Fail(InvalidArgument("--kv-type " + st->kv_type + " cannot hold this model's KV cache (types: " +
                                  KvTypeList() + "; quantized types need head_dim a multiple of 32)"));
    }
    uint64_t act = 64ull * 4 * (3 * hp->n_embd + 2 * hp->q_dim() + 2 * hp->kv_dim() + 2 * hp->n_ff) +
                   4ull * hp->n_vocab + 4ull * 2 * n_ctx;
    std::printf("  %-14s %12s  (%d tokens, %s)\n", "kv_cache", FormatBytes(kv).c_str(), n_ctx, kc.type.c_str());
    std::printf("  %-14s %12s  (batch 64, approx.)\n", "activations", FormatBytes(act).c_str());
    std::printf("  %-14s %12s\n", "total", FormatBytes(total + kv + act).c_str());

    // Components and groups as the residency manager sees them (in-memory bytes
    // at the file's types, run-time layouts on), and what streaming needs.
    auto plan = LlamaModel::Plan(*g, ModelLoadOptions{}, 1ull << 30);
    if (plan.ok()) {
      const LlamaModel& m = **plan;
      std::printf("\ncomponents (group \"model\"; load/unload them by name, \"layers\" or \"all\"):\n");
      std::printf("  %-14s %8s %12s %12s\n", "name", "tensors", "in memory", "read");
      uint64_t globals = 0, largest = 0, scratch = 0;
      const int L = m.hparams().n_layer;
      for (int i = 0; i < m.n_components(); ++i) {
        const ComponentPlan& cp = m.component(i);
        if (cp.layer >= 0) largest = std::max(largest, cp.bytes);
        else globals += cp.bytes;
        scratch = std::max(scratch, 2 * cp.scratch_bytes);
        if (cp.layer >= 0 && cp.layer > 1 && cp.layer < L - 1 && !st->all_tensors) {
          if (cp.layer == 2) std::printf("  %-14s %8s %12s %12s\n", "...", "", "", "");
          continue;
        }
        std::printf("  %-14s %8zu %12s %12s\n", cp.name.c_str(), cp.tensors.size(), FormatBytes(cp.bytes).c_str(),
                    FormatBytes(cp.source_bytes).c_str());
      }
      const uint64_t fixed = kv + act + globals + scratch;
      std::printf("  fully resident: about %s; streaming every layer needs about %s (%s with a layer read ahead: "
                  "--budget between these streams the layers that do not fit)\n",
                  FormatBytes(fixed + m.weight_bytes() - globals).c_str(), FormatBytes(fixed + largest).c_str(),
                  FormatBytes(fixed + 2 * largest).c_str());
      if (IsPackageDir(st->model)) std::printf("  (package: chunks are read and verified per component)\n");
    }
    std::printf("\nmodel: %s, %d layers, embd %d, heads %d/%d (head %d), ffn %d, vocab %d, context %d, %.1fM params\n",
                hp->arch.c_str(), hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
                hp->n_vocab, hp->n_ctx_train, hp->ParameterCount(g->FindTensor("output.weight") != nullptr) / 1e6);
    return 0;
  };
  return c;
}

}  // namespace

static const bool kRegistered = RegisterCommand(MakeInspectCommand, 10);

}  // namespace tabfit::cli
