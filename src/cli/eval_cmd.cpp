// `tabfit eval`: perplexity as llama.cpp's llama-perplexity, KL divergence and
// top-1 agreement against saved reference logits, per-tensor quantization error.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/eval_model.h"
#include "eval/importance.h"
#include "eval/perplexity.h"
#include "eval/precision.h"
#include "model/llama/llama_model.h"
#include "model/tokenizer/tokenizer.h"

namespace tabfit::cli {

namespace {

void AddPrecisionFlags(CLI::App* sub, PrecisionFlags* p) {
  sub->add_option("--precision", p->config_path, "precision config JSON (see docs/precision.md)");
  sub->add_option("--weight-type", p->weight_type, "every weight matrix as this type/bits (like --default-bits)");
  sub->add_option("--family", p->family, "what 8 and 4 bits mean: ggml (q8_0/q4_0, default) or tf (tf_q8/tf_q4)");
  sub->add_option("--default-bits", p->default_bits, "bits or type for matrices no other setting covers");
  sub->add_option("--attention-bits", p->attention_bits, "bits or type for attention matrices");
  sub->add_option("--feed-forward-bits", p->feed_forward_bits, "bits or type for MLP matrices");
  sub->add_option("--embedding-bits", p->embedding_bits, "bits or type for token_embd");
  sub->add_option("--lm-head-bits", p->lm_head_bits, "bits or type for the output matrix");
  sub->add_option("--tensor-bits", p->tensor_bits, "PATTERN=BITS, e.g. layers.0-3.mlp.down=8 (repeatable)");
}

Command MakeEvalCommand() {
  struct State {
    std::string model;
    std::string text_file;
    int n_ctx = 512;
    int chunks = 0;
    int threads = 0;
    std::string kv_type = "f16";
    int kv_recent = 256;
    float kv_prune = 0.f;
    int kv_sinks = 4;
    int kv_keep_recent = 0;
    std::string kv_prune_policy = "attention";
    KvFlags kv;
    CLI::Option* o_kv = nullptr;
    std::string save_logits, reference;
    PrecisionFlags precision;
    std::string imatrix;
    std::string save_model;
    bool tensor_errors = false;
    std::string json_out;
    bool quiet = false;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    CLI::App* sub = app.add_subcommand(
        "eval", "perplexity (llama.cpp method), KL divergence and top-1 agreement vs reference logits");
    sub->add_option("-m,--model", st->model, "GGUF model (default: the bundled demo model)");
    sub->add_option("-f,--file", st->text_file, "evaluation text (e.g. wikitext2-test-100k.txt)")->required();
    sub->add_option("-c,--ctx", st->n_ctx, "tokens per chunk")->default_val(512);
    sub->add_option("--chunks", st->chunks, "evaluate only the first N chunks (default: all)");
    sub->add_option("-t,--threads", st->threads, "threads (default: all cores)");
    st->o_kv = sub->add_option("--kv-type", st->kv_type,
                               "KV cache type: f16 (as llama.cpp), f32, q8_0, q4_0, mixed, kivi2/kivi3/kivi4")
                   ->default_val("f16");
    st->kv.Add(sub);
    sub->add_option("--kv-recent", st->kv_recent, "with --kv-type mixed: tokens kept at 8 bits")->default_val(256);
    sub->add_option("--kv-prune", st->kv_prune,
                    "attention-score pruning: the KV cache holds only this fraction of each chunk (e.g. 0.5); the "
                    "chunk runs in 16-token batches, evicting the least-attended tokens; 0 = off")
        ->default_val(0.f);
    sub->add_option("--kv-sinks", st->kv_sinks, "with --kv-prune: first tokens never evicted")->default_val(4);
    sub->add_option("--kv-keep-recent", st->kv_keep_recent,
                    "with --kv-prune: last tokens never evicted (0: 3/4 of the KV cache)")
        ->default_val(0);
    sub->add_option("--kv-prune-policy", st->kv_prune_policy,
                    "with --kv-prune: attention (evict the least-attended) or recent (baseline: evict the oldest "
                    "non-sink tokens, a sliding window)")
        ->check(CLI::IsMember({"attention", "recent"}))
        ->default_val("attention");
    sub->add_option("--save-logits", st->save_logits, "write this model's log-probs as a reference file");
    sub->add_option("--reference", st->reference, "compare against a reference file from --save-logits: KL, top-1");
    AddPrecisionFlags(sub, &st->precision);
    sub->add_option("--imatrix", st->imatrix, "importance statistics from `tabfit calibrate` for quantizing");
    sub->add_option("--save-model", st->save_model, "also write the re-quantized model as GGUF");
    sub->add_flag("--tensor-errors", st->tensor_errors, "print each tensor's relative RMS quantization error");
    sub->add_option("--json", st->json_out, "write the results as JSON to this file");
    sub->add_flag("-q,--quiet", st->quiet, "no per-chunk progress");
    return sub;
  };
  c.run = [st]() -> int {
    if (st->model.empty()) st->model = DefaultModelPath();
    auto plan = st->precision.ToPlan();
    if (!plan.ok()) return Fail(plan.status());
    ImportanceMap imp;
    if (!st->imatrix.empty()) {
      auto l = ImportanceMap::Load(st->imatrix);
      if (!l.ok()) return Fail(l.status());
      imp = std::move(*l);
    }
    std::ifstream tf(st->text_file, std::ios::binary);
    if (!tf) return Fail(NotFound("cannot open text file '" + st->text_file + "'"));
    std::stringstream ss;
    ss << tf.rdbuf();
    const std::string text = ss.str();

    if (!st->imatrix.empty() && imp.text_hash() != 0 && imp.text_hash() == HashBytes(text.data(), text.size())) {
      return Fail(InvalidArgument(st->imatrix + " was computed on this very text (" + st->text_file +
                                  "); never evaluate on the calibration text"));
    }
    EvalModelOptions eo;
    eo.plan = &*plan;
    eo.importance = st->imatrix.empty() ? nullptr : &imp;
    eo.threads = st->threads;
    eo.save_path = st->save_model;
    auto em = LoadEvalModel(st->model, eo);
    if (!em.ok()) return Fail(em.status());
    EvalModel& m = **em;
    const std::vector<int32_t> tokens = m.tokenizer->Encode(text, true);
    std::fprintf(stderr, "%s: %zu tokens of %s, %d-token chunks\n", st->model.c_str(), tokens.size(),
                 st->text_file.c_str(), st->n_ctx);

    const uint64_t weights = m.quant.tensor_bytes;
    for (const auto& t : m.quant.tensors) {
      if (!t.kept_reason.empty()) {
        std::fprintf(stderr, "note: %s keeps %s: %s\n", t.name.c_str(), std::string(TensorTypeName(t.from)).c_str(),
                     t.kept_reason.c_str());
      }
    }
    const double bpw = m.quant.parameters ? 8.0 * weights / m.quant.parameters : 0;
    std::fprintf(stderr, "weights: %s in all tensors (%.2f bits/weight over %llu parameters); as a GGUF file %s\n",
                 FormatBytes(weights).c_str(), bpw, static_cast<unsigned long long>(m.quant.parameters),
                 FormatBytes(m.quant.file_bytes).c_str());
    if (st->tensor_errors) {
      std::printf("%-28s %-26s %-7s %-7s %12s %10s %10s\n", "tensor", "readable", "from", "to", "bytes", "rel_rms",
                  "weighted");
      for (const auto& t : m.quant.tensors) {
        if (!IdentifyTensor(t.name)) continue;
        std::printf("%-28s %-26s %-7s %-7s %12llu %10.6f %10.6f%s\n", t.name.c_str(),
                    ReadableTensorName(t.name).c_str(), std::string(TensorTypeName(t.from)).c_str(),
                    std::string(TensorTypeName(t.to)).c_str(), static_cast<unsigned long long>(t.bytes),
                    t.rel_rms_error, t.weighted_rel_error, t.used_importance ? " (imatrix)" : "");
      }
    }

    PerplexityOptions po;
    po.n_ctx = st->n_ctx;
    po.n_chunks = st->chunks;
    po.threads = st->threads;
    po.kv_type = st->kv_type;
    po.kv_recent = st->kv_recent;
    po.kv_prune = st->kv_prune;
    po.kv_sinks = st->kv_sinks;
    po.kv_keep_recent = st->kv_keep_recent;
    po.kv_prune_recency = st->kv_prune_policy == "recent";
    if (Status ks = st->kv.Apply(&po.kv_type, st->o_kv->count() > 0, st->n_ctx, &po.kv_lowbit, &po.kv_prune_config);
        !ks.ok()) {
      return Fail(ks);
    }
    auto runner = PerplexityRunner::Create(*m.model, po);
    if (!runner.ok()) return Fail(runner.status());
    PerplexityRunner& r = **runner;
    const int n_chunks = r.ChunksFor(tokens.size());
    if (n_chunks < 1) {
      return Fail(InvalidArgument("the text has " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of " +
                                  std::to_string(st->n_ctx)));
    }
    const int n_scored = r.n_scored_per_chunk();
    const uint64_t hash = HashTokens(tokens.data(), static_cast<size_t>(n_chunks) * st->n_ctx);

    std::unique_ptr<ReferenceFileReader> ref;
    if (!st->reference.empty()) {
      auto rr = ReferenceFileReader::Open(st->reference);
      if (!rr.ok()) return Fail(rr.status());
      ref = std::move(*rr);
      const ReferenceHeader& h = ref->header();
      if (h.n_ctx != static_cast<uint32_t>(st->n_ctx) || h.first != static_cast<uint32_t>(r.first()) ||
          h.n_vocab != static_cast<uint32_t>(m.model->hparams().n_vocab)) {
        return Fail(InvalidArgument(st->reference + " was made with n_ctx " + std::to_string(h.n_ctx) + ", vocab " +
                                    std::to_string(h.n_vocab) + "; run with the same --ctx and a model of the same "
                                    "vocabulary"));
      }
      if (h.n_chunks < static_cast<uint32_t>(n_chunks)) {
        return Fail(InvalidArgument(st->reference + " holds " + std::to_string(h.n_chunks) + " chunks but " +
                                    std::to_string(n_chunks) + " would be evaluated; pass --chunks " +
                                    std::to_string(h.n_chunks)));
      }
      const uint64_t ref_hash = HashTokens(tokens.data(), static_cast<size_t>(h.n_chunks) * st->n_ctx);
      if (static_cast<size_t>(h.n_chunks) * st->n_ctx > tokens.size() || ref_hash != h.tokens_hash) {
        return Fail(InvalidArgument(st->reference + " was made from a different text or tokenizer (token hash "
                                    "differs); evaluate the same -f file"));
      }
    }
    std::unique_ptr<ReferenceFileWriter> save;
    if (!st->save_logits.empty()) {
      ReferenceHeader h;
      h.n_vocab = m.model->hparams().n_vocab;
      h.n_ctx = st->n_ctx;
      h.first = r.first();
      h.n_chunks = n_chunks;
      h.tokens_hash = hash;
      auto w = ReferenceFileWriter::Create(st->save_logits, h);
      if (!w.ok()) return Fail(w.status());
      save = std::move(*w);
    }
    std::fprintf(stderr, "scoring %d chunks x %d tokens\n", n_chunks, n_scored);
    auto res = r.Run(tokens, m.tokenizer->bos(), save.get(), ref.get(), [st](int c, int n, double ppl) {
      if (!st->quiet) {
        std::fprintf(stderr, "[%d]%.4f,", c, ppl);
        if (c == n) std::fprintf(stderr, "\n");
      }
      return true;
    });
    if (!res.ok()) return Fail(res.status());
    if (save) {
      Status s = save->Finish();
      if (!s.ok()) return Fail(s);
      std::fprintf(stderr, "saved reference log-probs to %s\n", st->save_logits.c_str());
    }
    std::printf("Final estimate: PPL = %.4f +/- %.5f  (%d chunks, %lld tokens scored, %.1f s)\n", res->ppl(),
                res->ppl_stderr(), res->n_chunks, static_cast<long long>(res->n_scored), res->seconds);
    if (ref) {
      std::printf("Reference PPL: %.4f   ln(PPL/PPL_ref) = %.6f\n", std::exp(res->ref_nll_mean),
                  res->nll_mean - res->ref_nll_mean);
      std::printf("Mean KLD: %.6f +/- %.6f  (max %.4f)\n", res->kl_mean, res->kl_stderr, res->kl_max);
      std::printf("Same top: %.3f +/- %.3f %%\n", 100 * res->top1, 100 * res->top1_stderr);
    }
    // The cache's own bytes at the end of the last chunk; bytes/token counts whole
    // chunks and, for the low-bit cache, its staging scratch.
    std::printf("KV cache: %llu bytes for %d tokens (%.1f bytes/token, %s)\n",
                static_cast<unsigned long long>(r.kv_bytes()), r.kv_tokens(),
                r.kv_tokens() ? static_cast<double>(r.kv_bytes()) / r.kv_tokens() : 0.0, po.kv_type.c_str());
    std::printf("Weights: %llu bytes (%.3f bits/weight), file %llu bytes\n",
                static_cast<unsigned long long>(weights), bpw, static_cast<unsigned long long>(m.quant.file_bytes));
    if (!st->json_out.empty()) {
      nlohmann::ordered_json j;
      j["model"] = st->model;
      j["text"] = st->text_file;
      j["n_ctx"] = st->n_ctx;
      j["chunks"] = res->n_chunks;
      j["tokens_scored"] = res->n_scored;
      j["ppl"] = res->ppl();
      j["kv_type"] = po.kv_type;
      j["kv_bytes"] = r.kv_bytes();
      j["kv_tokens"] = r.kv_tokens();
      j["ppl_stderr"] = res->ppl_stderr();
      if (ref) {
        j["ref_ppl"] = std::exp(res->ref_nll_mean);
        j["kl_mean"] = res->kl_mean;
        j["kl_stderr"] = res->kl_stderr;
        j["top1"] = res->top1;
        j["top1_stderr"] = res->top1_stderr;
      }
      j["weight_bytes"] = weights;
      j["file_bytes"] = m.quant.file_bytes;
      j["parameters"] = m.quant.parameters;
      j["bits_per_weight"] = bpw;
      j["precision"] = nlohmann::ordered_json::parse(plan->ToJson());
      nlohmann::ordered_json tj = nlohmann::ordered_json::array();
      for (const auto& t : m.quant.tensors) {
        if (!IdentifyTensor(t.name)) continue;
        tj.push_back({{"name", t.name}, {"type", TypeNameLower(t.to)}, {"bytes", t.bytes},
                      {"rel_rms_error", t.rel_rms_error}, {"weighted_rel_error", t.weighted_rel_error}});
      }
      j["tensors"] = tj;
      std::ofstream o(st->json_out);
      o << j.dump(2) << "\n";
      if (!o) return Fail(IoError("cannot write " + st->json_out));
    }
    return 0;
  };
  return c;
}

}  // namespace

static const bool kRegistered = RegisterCommand(MakeEvalCommand, 40);

}  // namespace tabfit::cli
