// tabfit model/package: the tabfit package format (a directory of chunk files
// that together ARE a GGUF; see docs/package-format.md).
//
//   OUT_DIR/manifest.json   format name + version, model config, tokenizer
//                           summary, every tensor (component, shape, type,
//                           file/offset/length of each part, sha256) and every
//                           chunk (file, size, sha256, components).
//   OUT_DIR/header.gguf     chunk 0: GGUF header, metadata, tensor infos and
//                           the alignment padding — bytes [0, data_offset).
//   OUT_DIR/data-000.bin... the GGUF data section, cut into chunks of at most
//                           max_chunk_bytes, tensors in load-priority order.
// The virtual concatenation header.gguf + data-000.bin + data-001.bin + ... is
// byte for byte a valid GGUF, so GgufFile::Parse reads a package unchanged
// through the ByteSource that OpenPackage returns.
//
// Integrity: OpenPackage checks every chunk's size against the manifest at open
// time; each chunk's sha256 is verified once, on the first read that touches
// it (so a loader that never reads a chunk never pays for hashing it). A bad
// chunk fails every read of it with CorruptData naming the chunk file, the
// expected and actual hash or size, and the remedy.
//
// Thread-safety: the returned ByteSource is safe for concurrent ReadAt calls
// (pread on per-chunk descriptors; verification under a per-chunk mutex).
// WritePackage is single-threaded apart from the conversion work it hands to
// its own thread pool (PackageOptions::threads).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/gguf/byte_source.h"
#include "model/gguf/gguf.h"
#include "quant/types.h"

namespace tabfit {

inline constexpr const char* kPackageFormatName = "tabfit-package";
inline constexpr int kPackageFormatVersion = 1;
inline constexpr uint64_t kDefaultMaxChunkBytes = 64ull << 20;  // browser-friendly fetch size
inline constexpr uint64_t kMaxChunkLimit = 2ull << 30;          // never larger (ArrayBuffer / fetch limits)
inline constexpr uint64_t kMinChunkBytes = 4096;

// Component a tensor belongs to (the ledger's names): "embeddings" (token_embd),
// "layers.N" (blk.N.*), "lm_head" (output.*), "output_norm", else "other".
std::string TensorComponent(const std::string& tensor_name);

// Load-priority rank of a component: embeddings, "other" (e.g. rope_freqs,
// needed by every layer), layers.0, output_norm, lm_head, layers.1..N-1.
// Smaller loads first.
int64_t ComponentPriority(const std::string& component);

// Target type for a tensor: nullopt keeps the source type.
using TensorTypeFn = std::function<std::optional<TensorType>(const GgufTensorInfo& tensor)>;

// The default policy of `tabfit convert --weight-type T`: every 2-D tensor whose
// rows fit T's block size (and whose type can be dequantized) becomes T; 1-D
// tensors (norms, biases) keep their type.
TensorTypeFn UniformWeightType(TensorType t);

// Per-column importance of a tensor's input (e.g. `tabfit calibrate` statistics):
// [tensor.ne[0]] non-negative floats handed to QuantizeRow for every row, or nullptr
// (quantize without). Called once per converted tensor; the pointer must stay valid
// until the write returns.
using ImportanceFn = std::function<const float*(const GgufTensorInfo& tensor)>;

// Group name -> component names ("embeddings", "layers.N", "output_norm", "lm_head", "other").
using PackageGroups = std::map<std::string, std::vector<std::string>>;

struct PackageOptions {
  uint64_t max_chunk_bytes = kDefaultMaxChunkBytes;  // [kMinChunkBytes, kMaxChunkLimit]
  TensorTypeFn target_type;                          // null: keep every type
  ImportanceFn importance;                           // null: no importance weighting
  int threads = 0;                                   // conversion threads; 0 = hardware concurrency
  // Progress: tensor bytes written so far / total, and the tensor being written.
  std::function<void(uint64_t done, uint64_t total, const std::string& tensor)> progress;
  // Named component groups written to the manifest's "groups" section (e.g.
  // "early" -> {"layers.0", "layers.1"}, later a vision encoder's components):
  // an engine loads/unloads a group by its name. Members must be components of
  // the model; names must not be a component name, "layers", "all" or "draft".
  PackageGroups groups;
};

// What WritePackage produced (also recorded in manifest.json).
struct PackageTensorPart {
  std::string file;
  uint64_t offset = 0;  // within `file`
  uint64_t length = 0;
  int64_t row_begin = 0, row_end = 0;  // rows [row_begin, row_end) of the tensor
};
struct PackageTensor {
  std::string name;
  std::string component;
  std::vector<int64_t> ne;
  TensorType type = TensorType::kF32;
  TensorType source_type = TensorType::kF32;
  bool used_importance = false;  // converted with PackageOptions::importance statistics
  uint64_t nbytes = 0;
  uint64_t data_offset = 0;  // relative to the GGUF data section
  std::string sha256;        // hex, of the tensor's nbytes
  std::vector<PackageTensorPart> parts;
};
struct PackageChunk {
  std::string file;
  uint64_t offset = 0;  // virtual offset (position in the concatenated GGUF)
  uint64_t size = 0;
  std::string sha256;   // hex
  std::vector<std::string> components;
};
struct PackageSummary {
  std::vector<PackageTensor> tensors;  // priority order
  std::vector<PackageChunk> chunks;    // chunk 0 = header.gguf
  uint64_t total_bytes = 0;            // all chunk files
  uint64_t tensor_bytes = 0;
  uint64_t n_weights = 0;              // elements of all tensors
};

// Writes `src` (any GGUF: a file or a package) as a package into `dir`.
// `dir` is created if missing; it must be empty or hold a previous package
// (whose files are replaced). manifest.json is written last, so a directory
// without one is an incomplete package. Errors: InvalidArgument (options, a
// type that cannot be applied to a tensor, a row larger than max_chunk),
// IoError, and whatever reading `src` returns.
Result<PackageSummary> WritePackageWithSummary(const GgufFile& src, const std::string& dir,
                                               const PackageOptions& options);
Status WritePackage(const GgufFile& src, const std::string& dir, const PackageOptions& options);

// True iff `path` is a directory containing manifest.json.
bool IsPackageDir(const std::string& path);

// Opens a package directory as one ByteSource (the virtual GGUF). Validates the
// manifest (format name/version, contiguous chunks, sizes on disk). name() is
// the directory path. Errors: NotFound (no dir / manifest / chunk file),
// CorruptData (malformed manifest, wrong chunk size), Unsupported (newer format
// version).
Result<std::unique_ptr<ByteSource>> OpenPackage(const std::string& dir);

// A GGUF file -> OpenFileSource; a package directory -> OpenPackage; a
// directory without manifest.json -> NotFound explaining what is expected.
Result<std::unique_ptr<ByteSource>> OpenModelSource(const std::string& path);

// The manifest's optional "groups" section (empty when absent). CorruptData when
// it is malformed (not an object of name -> array of component names).
Result<PackageGroups> ReadPackageGroups(const std::string& dir);

// Reads every chunk once and checks all hashes (`tabfit convert` runs it on its
// output; useful after a download). Returns the first failure.
Status VerifyPackage(const std::string& dir);

}  // namespace tabfit
