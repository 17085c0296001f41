#include "eval/eval_model.h"

#include <algorithm>
#include <thread>

#include "core/thread_pool.h"
#include "eval/importance.h"
#include "eval/precision.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"
#include "model/package/package.h"
#include "model/tokenizer/tokenizer.h"

namespace tabfit {

EvalModel::~EvalModel() {
  model.reset();
  tokenizer.reset();
}

namespace {

Result<std::unique_ptr<EvalModel>> LoadFrom(const GgufFile& g, std::unique_ptr<EvalModel> m) {
  TF_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromGguf(g));
  m->tokenizer = std::make_unique<Tokenizer>(std::move(tok));
  ModelLoadOptions mo;
  TF_ASSIGN_OR_RETURN(m->model, LlamaModel::Load(g, m->ledger, mo));
  if (m->tokenizer->n_vocab() != m->model->hparams().n_vocab) {
    return CorruptData(g.name() + ": tokenizer has " + std::to_string(m->tokenizer->n_vocab()) +
                       " tokens but the model's vocabulary is " + std::to_string(m->model->hparams().n_vocab));
  }
  return m;
}

}  // namespace

Result<std::unique_ptr<EvalModel>> LoadEvalModel(const GgufFile& src, const EvalModelOptions& o) {
  auto m = std::make_unique<EvalModel>();
  m->source_file_bytes = src.source().size();
  if (!o.plan || o.plan->empty()) {
    for (const auto& t : src.tensors()) {
      TensorQuantReport r;
      r.name = t.name;
      r.from = r.to = t.type;
      r.cols = t.ne.empty() ? 0 : t.ne[0];
      r.rows = t.rows();
      r.bytes = t.nbytes;
      m->quant.tensor_bytes += t.nbytes;
      m->quant.parameters += static_cast<uint64_t>(t.n_elements());
      m->quant.tensors.push_back(r);
    }
    m->quant.file_bytes = m->source_file_bytes;
    return LoadFrom(src, std::move(m));
  }
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(threads);
  QuantizeOptions qo;
  const PrecisionPlan* plan = o.plan;
  qo.type_for = [plan](const std::string& name) { return plan->TypeFor(name); };
  qo.importance = o.importance;
  qo.pool = &pool;
  if (!o.save_path.empty()) {
    TF_RETURN_IF_ERROR(QuantizeGguf(src, qo, o.save_path).status());
  }
  TF_ASSIGN_OR_RETURN(m->quant, QuantizeGguf(src, qo));
  std::vector<uint8_t> bytes = std::move(m->quant.bytes);
  m->quant.bytes.clear();
  TF_ASSIGN_OR_RETURN(GgufFile q, GgufFile::Parse(MakeMemorySource(std::move(bytes), src.name() + " (re-quantized)")));
  return LoadFrom(q, std::move(m));
}

Result<std::unique_ptr<EvalModel>> LoadEvalModel(const std::string& path, const EvalModelOptions& o) {
  // A GGUF file or a tabfit package directory (`tabfit convert` output; its size is
  // that of the equivalent single GGUF: header + tensor data).
  TF_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> src, OpenModelSource(path));
  TF_ASSIGN_OR_RETURN(GgufFile g, GgufFile::Parse(std::move(src)));
  return LoadEvalModel(g, o);
}

}  // namespace tabfit
