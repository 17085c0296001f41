#include "model/package/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <unordered_set>

#include "core/f16.h"
#include "core/thread_pool.h"
#include "model/gguf/gguf_writer.h"
#include "quant/formats.h"
#include "quant/kernels.h"

namespace tabfit {

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const SynthShape kShapes[] = {
    {"tinyllama-1.1b", 22, 2048, 5632, 32, 4, 32000, 2048},
    {"llama2-7b", 32, 4096, 11008, 32, 32, 32000, 4096},
    {"llama2-13b", 40, 5120, 13824, 40, 40, 32000, 4096},
    {"tiny", 2, 256, 512, 4, 2, 512, 256},
};

uint64_t SplitMix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// xoshiro256+ seeded from (seed, tensor, row); Box-Muller Gaussians.
class RowRng {
 public:
  RowRng(uint64_t seed, uint64_t tensor_hash, int64_t row) {
    uint64_t s = seed ^ (tensor_hash * 0x9E3779B97F4A7C15ull) ^ (static_cast<uint64_t>(row) * 0xD1B54A32D192ED03ull);
    for (auto& x : s_) x = SplitMix64(s);
  }
  uint64_t Next() {
    const uint64_t r = s_[0] + s_[3], t = s_[1] << 17;
    s_[2] ^= s_[0]; s_[3] ^= s_[1]; s_[1] ^= s_[2]; s_[0] ^= s_[3]; s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return r;
  }
  // Uniform in (0, 1].
  float Uniform() { return (static_cast<float>(Next() >> 40) + 1.0f) * (1.0f / 16777216.0f); }
  void Gaussian(float* out, int64_t n, float stddev) {
    constexpr float kTwoPi = 6.28318530717958647692f;
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
      float r = stddev * std::sqrt(-2.0f * std::log(Uniform()));
      float a = kTwoPi * Uniform();
      out[i] = r * std::cos(a);
      out[i + 1] = r * std::sin(a);
    }
    if (i < n) out[i] = stddev * std::sqrt(-2.0f * std::log(Uniform())) * std::cos(kTwoPi * Uniform());
  }

 private:
  uint64_t s_[4];
};


// ---------------------------------------------------------------- random blocks
// Random weights written straight in a block format: random codes and scales
// chosen so the dequantized weights have mean 0 and RMS `stddev` (like the
// Gaussian path) -- no float rows, no quantizer search, so a 1.1B model at any
// precision is written in seconds. Every scale field is a finite fp16; every
// code is inside its format's range, so the blocks are valid for any reader.
void PutF16(uint8_t* p, float v) {
  const uint16_t h = F32ToF16(v);
  std::memcpy(p, &h, 2);
}

// RMS of an integer uniform on [lo, hi].
double UniformRms(int lo, int hi) {
  double s = 0;
  for (int v = lo; v <= hi; ++v) s += double(v) * v;
  return std::sqrt(s / (hi - lo + 1));
}

// A row-seeded stream of random bytes.
struct ByteRng {
  RowRng rng;
  uint64_t word = 0;
  int left = 0;
  uint8_t Byte() {
    if (left == 0) {
      word = rng.Next();
      left = 8;
    }
    --left;
    const uint8_t b = static_cast<uint8_t>(word);
    word >>= 8;
    return b;
  }
  void Fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = Byte();
  }
  int Range(int lo, int hi) { return lo + static_cast<int>((uint32_t(Byte()) * uint32_t(hi - lo + 1)) >> 8); }
  float Sign() { return (Byte() & 1) ? -1.0f : 1.0f; }
};

// One row of `cols` elements of type t (cols a multiple of its block size).
// Returns false for a type this generator does not know.
bool RandomBlocksRow(TensorType t, RowRng rng, float stddev, uint8_t* dst, int64_t cols) {
  ByteRng r{rng};
  switch (t) {
    case TensorType::kQ8_0: {
      // w = d*q, q uniform in [-127, 127].
      const float d = stddev / static_cast<float>(UniformRms(-127, 127));
      for (int64_t b = 0; b < cols / 32; ++b, dst += 34) {
        PutF16(dst, d);
        for (int j = 0; j < 32; ++j) dst[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(r.Range(-127, 127)));
      }
      return true;
    }
    case TensorType::kQ4_0: {
      // w = d*(q-8), q uniform in [0, 15]; a random sign of d centres the mean.
      const float d = stddev / static_cast<float>(UniformRms(-8, 7));
      for (int64_t b = 0; b < cols / 32; ++b, dst += 18) {
        PutF16(dst, d * r.Sign());
        r.Fill(dst + 2, 16);
      }
      return true;
    }
    case TensorType::kTF_Q8: {
      // w = d*sc*q, sc uniform in [128, 255], q in [-127, 127].
      const float d = stddev / static_cast<float>(UniformRms(128, 255) * UniformRms(-127, 127));
      for (int64_t b = 0; b < cols / 256; ++b, dst += sizeof(BlockTfQ8)) {
        PutF16(dst, d);
        for (int g = 0; g < 8; ++g) dst[2 + g] = static_cast<uint8_t>(r.Range(128, 255));
        for (int j = 0; j < 256; ++j) dst[10 + j] = static_cast<uint8_t>(static_cast<int8_t>(r.Range(-127, 127)));
      }
      return true;
    }
    case TensorType::kTF_Q4:
    case TensorType::kTF_Q3: {
      // w = d*sc*q - dmin*m with m = sc and dmin = d*(qmax/2): w = d*sc*(q - qmax/2).
      const bool q4 = t == TensorType::kTF_Q4;
      const int qmax = q4 ? 15 : 7;
      const size_t bb = q4 ? sizeof(BlockTfQ4) : sizeof(BlockTfQ3);
      const double code_rms = std::sqrt(((qmax + 1.0) * (qmax + 1.0) - 1.0) / 12.0);
      const float d = stddev / static_cast<float>(UniformRms(32, 63) * code_rms);
      for (int64_t b = 0; b < cols / 256; ++b, dst += bb) {
        PutF16(dst, d);
        PutF16(dst + 2, d * 0.5f * qmax);
        uint8_t sc[8];
        for (auto& v : sc) v = static_cast<uint8_t>(r.Range(32, 63));
        PackScales6(sc, sc, dst + 4);
        r.Fill(dst + 16, bb - 16);  // every bit pattern is a valid code
      }
      return true;
    }
    case TensorType::kTF_Q2:
    case TensorType::kTF_Q2R: {
      // w = d*sc*(q - z/4) with z = 6: q - 1.5 in {-1.5, -0.5, 0.5, 1.5}; sc in [8, 15].
      const float d = stddev / static_cast<float>(UniformRms(8, 15) * std::sqrt(1.25));
      uint8_t z[16];
      std::fill(std::begin(z), std::end(z), uint8_t{6});
      for (int64_t b = 0; b < cols / 256; ++b, dst += sizeof(BlockTfQ2)) {
        PutF16(dst, d);
        uint8_t sc[16];
        for (auto& v : sc) v = static_cast<uint8_t>(r.Range(8, 15));
        PackScz(sc, z, dst + 2);
        r.Fill(dst + 16, 64);
      }
      return true;
    }
    case TensorType::kQ2_K: {
      // GGML Q2_K (84 B / 256: scales[16] (sc | m << 4), qs[64], fp16 d, fp16 dmin):
      // w = d*sc*q - dmin*m with m = sc and dmin = 1.5*d: w = d*sc*(q - 1.5).
      const float d = stddev / static_cast<float>(UniformRms(8, 15) * std::sqrt(1.25));
      for (int64_t b = 0; b < cols / 256; ++b, dst += 84) {
        for (int g = 0; g < 16; ++g) {
          const int sc = r.Range(8, 15);
          dst[g] = static_cast<uint8_t>(sc | sc << 4);
        }
        r.Fill(dst + 16, 64);
        PutF16(dst + 80, d);
        PutF16(dst + 82, 1.5f * d);
      }
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

uint64_t SynthShape::ParameterCount() const {
  const uint64_t head_dim = n_embd / n_head, kv = head_dim * n_head_kv;
  const uint64_t per_layer = 2ull * n_embd + 2ull * n_embd * n_embd + 2ull * n_embd * kv + 3ull * n_embd * n_ff;
  return 2ull * n_vocab * n_embd + n_embd + per_layer * n_layer;
}

std::vector<std::string> SynthShapeNames() {
  std::vector<std::string> v;
  for (const auto& s : kShapes) v.push_back(s.name);
  return v;
}

Result<SynthShape> FindSynthShape(const std::string& name) {
  for (const auto& s : kShapes) {
    if (Lower(name) == s.name) return s;
  }
  if (name.find('=') != std::string::npos) {
    SynthShape s{"custom", 0, 0, 0, 0, 0, 0, 0};
    size_t pos = 0;
    while (pos <= name.size()) {
      size_t end = name.find(',', pos);
      if (end == std::string::npos) end = name.size();
      std::string item = name.substr(pos, end - pos);
      size_t eq = item.find('=');
      if (eq == std::string::npos) return InvalidArgument("shape item '" + item + "' is not key=value");
      std::string k = item.substr(0, eq), v = item.substr(eq + 1);
      char* e = nullptr;
      long n = std::strtol(v.c_str(), &e, 10);
      if (v.empty() || *e || n <= 0 || n > (1 << 24)) return InvalidArgument("shape item '" + item + "': bad number");
      int val = static_cast<int>(n);
      if (k == "layers") s.n_layer = val;
      else if (k == "embd") s.n_embd = val;
      else if (k == "ff") s.n_ff = val;
      else if (k == "heads") s.n_head = val;
      else if (k == "kv_heads") s.n_head_kv = val;
      else if (k == "vocab") s.n_vocab = val;
      else if (k == "ctx") s.n_ctx = val;
      else return InvalidArgument("shape key '" + k + "' unknown; use layers, embd, ff, heads, kv_heads, vocab, ctx");
      pos = end + 1;
    }
    if (!s.n_head_kv) s.n_head_kv = s.n_head;
    if (!s.n_ctx) s.n_ctx = 2048;
    if (!s.n_layer || !s.n_embd || !s.n_ff || !s.n_head || !s.n_vocab) {
      return InvalidArgument("shape '" + name + "' needs layers, embd, ff, heads and vocab");
    }
    if (s.n_embd % s.n_head || s.n_head % s.n_head_kv || (s.n_embd / s.n_head) % 2) {
      return InvalidArgument("shape '" + name + "': embd must split into heads of even size, and heads into kv_heads");
    }
    return s;
  }
  std::string names;
  for (const auto& s : kShapes) names += (names.empty() ? "" : ", ") + s.name;
  return InvalidArgument("unknown shape '" + name + "'; use one of " + names +
                         " or layers=N,embd=N,ff=N,heads=N,kv_heads=N,vocab=N[,ctx=N]");
}

Result<TensorType> ParseTensorTypeName(const std::string& name) {
  const std::string n = Lower(name);
  std::string known;
  for (uint32_t id = 0; id < 1007; ++id) {
    if (id == 31) id = 1000;
    auto t = static_cast<TensorType>(id);
    std::string_view tn = TensorTypeName(t);
    if (tn == "?") continue;
    if (Lower(std::string(tn)) == n) return t;
  }
  return InvalidArgument("unknown tensor type '" + name + "'; use f32, f16, bf16, q8_0, q4_0, q2_k, tf_q8, tf_q4, tf_q3, tf_q2 or tf_q2r");
}

Result<SynthVocab> MakeSynthVocab(int n_vocab) {
  if (n_vocab < 260 || n_vocab > 1000000) {
    return InvalidArgument("vocab of " + std::to_string(n_vocab) + " tokens: a synthetic vocab needs 260..1000000");
  }
  SynthVocab v;
  auto add = [&](std::string piece, int32_t type) {
    v.scores.push_back(type == 1 ? -static_cast<float>(v.tokens.size()) : 0.0f);
    v.tokens.push_back(std::move(piece));
    v.types.push_back(type);
  };
  add("<unk>", 2);
  add("<s>", 3);
  add("</s>", 3);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(buf, 6);
  }
  const std::string kSpace = "\xE2\x96\x81";  // U+2581
  add(kSpace, 1);
  // Level 1: single characters and "▁c"; level L >= 2: lowercase L-grams and
  // "▁" + L-gram. Every piece's prefix is in an earlier level, so merges reach it.
  const std::string letters = "etaoinshrdlcumwfgypbvkjxqz";
  std::string chars = letters;
  for (char c : letters) chars += static_cast<char>(c - 'a' + 'A');
  chars += "0123456789.,!?'\"-:;()";
  for (size_t i = 0; i < chars.size() && static_cast<int>(v.tokens.size()) < n_vocab; ++i) add(std::string(1, chars[i]), 1);
  for (size_t i = 0; i < chars.size() && static_cast<int>(v.tokens.size()) < n_vocab; ++i) {
    add(kSpace + std::string(1, chars[i]), 1);
  }
  std::vector<std::string> level(letters.size());
  for (size_t i = 0; i < letters.size(); ++i) level[i] = std::string(1, letters[i]);
  while (static_cast<int>(v.tokens.size()) < n_vocab) {
    std::vector<std::string> next;
    next.reserve(level.size() * letters.size());
    for (const auto& p : level) {
      for (char c : letters) next.push_back(p + c);
    }
    for (const auto& p : next) {
      if (static_cast<int>(v.tokens.size()) >= n_vocab) break;
      add(p, 1);
      if (static_cast<int>(v.tokens.size()) >= n_vocab) break;
      add(kSpace + p, 1);
    }
    level = std::move(next);
  }
  return v;
}

Result<SynthResult> WriteSyntheticModel(const SynthShape& shape, const SynthOptions& opt, const std::string& path) {
  if (shape.n_layer <= 0 || shape.n_embd <= 0 || shape.n_ff <= 0 || shape.n_head <= 0 || shape.n_head_kv <= 0 ||
      shape.n_embd % shape.n_head || shape.n_head % shape.n_head_kv) {
    return InvalidArgument("synthetic shape '" + shape.name + "' is inconsistent");
  }
  const TensorType wt = opt.type;
  const std::string tn(TensorTypeName(wt));
  const bool direct = !opt.quantize && wt != TensorType::kF32 && wt != TensorType::kF16 && wt != TensorType::kBF16;
  if (direct) {
    std::vector<uint8_t> probe(RowBytes(wt, 256));
    if (probe.empty() || !RandomBlocksRow(wt, RowRng(0, 0, 0), 0.02f, probe.data(), 256)) {
      return Unsupported("type " + tn + " has no random-block writer; use quantize mode (--quantize) if it can be "
                         "quantized");
    }
  } else if (!CanQuantize(wt)) {
    return Unsupported("type " + tn + " cannot be written by this build");
  }
  for (int cols : {shape.n_embd, shape.n_ff}) {
    if (RowBytes(wt, cols) == 0) {
      return InvalidArgument("type " + tn + " needs rows that are a multiple of its block size; shape '" + shape.name +
                             "' has rows of " + std::to_string(cols));
    }
  }
  TF_ASSIGN_OR_RETURN(SynthVocab vocab, MakeSynthVocab(shape.n_vocab));
  const int head_dim = shape.n_embd / shape.n_head;
  const int kv_dim = head_dim * shape.n_head_kv;

  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetString("general.name", "tabfit-synth-" + shape.name + "-" + Lower(tn));
  w.SetString("general.description", "random weights (seed " + std::to_string(opt.seed) + "), made by `tabfit synth`; "
              "for speed and format tests only, the text it writes is noise");
  w.SetU32("general.quantization_version", 2);
  uint32_t file_type = 0;
  switch (wt) {
    case TensorType::kF32: file_type = 0; break;
    case TensorType::kF16: file_type = 1; break;
    case TensorType::kQ4_0: file_type = 2; break;
    case TensorType::kQ8_0: file_type = 7; break;
    case TensorType::kQ2_K: file_type = 10; break;
    case TensorType::kBF16: file_type = 32; break;
    default: file_type = 0xFFFFFFFFu; break;
  }
  if (file_type != 0xFFFFFFFFu) w.SetU32("general.file_type", file_type);
  w.SetU32("llama.context_length", shape.n_ctx);
  w.SetU32("llama.embedding_length", shape.n_embd);
  w.SetU32("llama.block_count", shape.n_layer);
  w.SetU32("llama.feed_forward_length", shape.n_ff);
  w.SetU32("llama.rope.dimension_count", head_dim);
  w.SetU32("llama.attention.head_count", shape.n_head);
  w.SetU32("llama.attention.head_count_kv", shape.n_head_kv);
  w.SetF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetF32("llama.rope.freq_base", 10000.0f);
  w.SetU32("llama.vocab_size", shape.n_vocab);
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", std::move(vocab.tokens));
  w.SetF32Array("tokenizer.ggml.scores", vocab.scores);
  w.SetI32Array("tokenizer.ggml.token_type", vocab.types);
  w.SetU32("tokenizer.ggml.unknown_token_id", 0);
  w.SetU32("tokenizer.ggml.bos_token_id", 1);
  w.SetU32("tokenizer.ggml.eos_token_id", 2);
  w.SetBool("tokenizer.ggml.add_bos_token", true);
  w.SetBool("tokenizer.ggml.add_eos_token", false);

  const int threads = opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto pool = std::make_shared<ThreadPool>(threads);
  struct Progress {
    uint64_t done = 0, total = 0;
  };
  auto progress = std::make_shared<Progress>();
  const float stddev = opt.stddev;
  const uint64_t seed = opt.seed;
  auto cb = opt.progress;

  auto add_matrix = [&](const std::string& name, int64_t rows, int64_t cols) -> Status {
    const size_t rb = RowBytes(wt, cols);
    progress->total += rb * rows;
    const uint64_t th = Fnv1a(name);
    return w.AddTensor(name, wt, {cols, rows}, [=](int64_t r0, int64_t n, void* dst) -> Status {
      std::vector<std::vector<float>> tmp(pool->num_threads(),
                                          std::vector<float>(direct ? 0 : static_cast<size_t>(cols)));
      pool->ParallelFor(static_cast<size_t>(n), [&](size_t b, size_t e, int ti) {
        for (size_t i = b; i < e; ++i) {
          RowRng rng(seed, th, r0 + static_cast<int64_t>(i));
          uint8_t* row = static_cast<uint8_t*>(dst) + i * rb;
          if (direct) {
            RandomBlocksRow(wt, rng, stddev, row, cols);
            continue;
          }
          rng.Gaussian(tmp[ti].data(), cols, stddev);
          QuantizeRow(wt, tmp[ti].data(), row, cols, nullptr);
        }
      });
      progress->done += rb * n;
      if (cb) cb(progress->done, progress->total);
      return Status::Ok();
    });
  };
  auto add_norm = [&](const std::string& name) -> Status {
    std::vector<float> ones(shape.n_embd, 1.0f);
    std::vector<uint8_t> bytes(ones.size() * sizeof(float));
    std::memcpy(bytes.data(), ones.data(), bytes.size());
    return w.AddTensor(name, TensorType::kF32, {shape.n_embd}, std::move(bytes));
  };

  TF_RETURN_IF_ERROR(add_matrix("token_embd.weight", shape.n_vocab, shape.n_embd));
  for (int il = 0; il < shape.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    TF_RETURN_IF_ERROR(add_norm(p + "attn_norm.weight"));
    TF_RETURN_IF_ERROR(add_matrix(p + "attn_q.weight", shape.n_embd, shape.n_embd));
    TF_RETURN_IF_ERROR(add_matrix(p + "attn_k.weight", kv_dim, shape.n_embd));
    TF_RETURN_IF_ERROR(add_matrix(p + "attn_v.weight", kv_dim, shape.n_embd));
    TF_RETURN_IF_ERROR(add_matrix(p + "attn_output.weight", shape.n_embd, shape.n_embd));
    TF_RETURN_IF_ERROR(add_norm(p + "ffn_norm.weight"));
    TF_RETURN_IF_ERROR(add_matrix(p + "ffn_gate.weight", shape.n_ff, shape.n_embd));
    TF_RETURN_IF_ERROR(add_matrix(p + "ffn_up.weight", shape.n_ff, shape.n_embd));
    TF_RETURN_IF_ERROR(add_matrix(p + "ffn_down.weight", shape.n_embd, shape.n_ff));
  }
  TF_RETURN_IF_ERROR(add_norm("output_norm.weight"));
  TF_RETURN_IF_ERROR(add_matrix("output.weight", shape.n_vocab, shape.n_embd));

  SynthResult res;
  TF_ASSIGN_OR_RETURN(res.file_bytes, w.FileSize());
  res.n_params = shape.ParameterCount();
  TF_RETURN_IF_ERROR(w.WriteFile(path));
  return res;
}

}  // namespace tabfit
