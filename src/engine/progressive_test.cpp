// Progressive loading, layer streaming and component groups, end to end through
// the Engine: streamed logits are bit-identical to resident ones, generation
// started before the load ends gives the same tokens, cancel/unload mid-load
// leave nothing behind, source faults fail the generation in flight with an
// error naming the component and the engine stays usable, speculative decoding
// equals plain greedy.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/rss.h"
#include "engine/engine.h"
#include "model/gguf/byte_source.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"
#include "model/package/package.h"
#include "model/tokenizer/tokenizer.h"
#include "engine/engine_test_util.h"
#include "test_util.h"

namespace tabfit {
namespace {

namespace fs = std::filesystem;

int ThreadCount() {
  // A sanitizer runtime may start its own helper thread with the first thread
  // the process creates: make that happen before anything is counted.
  static const bool warmed = [] {
    std::thread([] {}).join();
    return true;
  }();
  (void)warmed;
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/task")) {
    (void)e;
    ++n;
  }
  return n;
}



// Byte ranges [begin, end) of the tensors of layer `il` ("blk.<il>.") in a GGUF.
std::vector<std::pair<uint64_t, uint64_t>> LayerRanges(const std::string& path, int il) {
  auto g = GgufFile::Open(path);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  std::vector<std::pair<uint64_t, uint64_t>> out;
  const std::string prefix = "blk." + std::to_string(il) + ".";
  for (const GgufTensorInfo& t : g->tensors()) {
    if (t.name.rfind(prefix, 0) == 0) out.push_back({t.offset, t.offset + t.nbytes});
  }
  return out;
}

bool Overlaps(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t off, uint64_t n) {
  for (auto [b, e] : ranges) {
    if (off < e && off + n > b) return true;
  }
  return false;
}

// A source over the bytes of a file whose reads touching `gated` ranges block
// until Open(); it counts the reads waiting, and may fail reads of `faulty`
// ranges (fail_reads times, then succeed).
class TestSource : public ByteSource {
 public:
  TestSource(std::vector<uint8_t> bytes, std::string name) : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  Status ReadAt(uint64_t offset, void* dst, size_t n) const override {
    TF_RETURN_IF_ERROR(CheckReadRange(name_, bytes_.size(), offset, n));
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (closed_ && Overlaps(gated_, offset, n)) {
        ++waiting_;
        cv_.notify_all();
        cv_.wait(lk, [&] { return !closed_; });
        --waiting_;
      }
      if (fail_reads_ > 0 && Overlaps(faulty_, offset, n)) {
        --fail_reads_;
        return IoError(name_ + ": injected read failure at offset " + std::to_string(offset));
      }
      ++reads_;
    }
    std::memcpy(dst, bytes_.data() + offset, n);
    return Status::Ok();
  }
  void Gate(std::vector<std::pair<uint64_t, uint64_t>> ranges) {
    std::lock_guard<std::mutex> lk(mu_);
    gated_ = std::move(ranges);
    closed_ = true;
  }
  void Open() {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = false;
    cv_.notify_all();
  }
  // Waits until a read is blocked in the gate.
  void WaitForBlockedRead() const {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return waiting_ > 0; });
  }
  void Fail(std::vector<std::pair<uint64_t, uint64_t>> ranges, int times) {
    std::lock_guard<std::mutex> lk(mu_);
    faulty_ = std::move(ranges);
    fail_reads_ = times;
  }

 private:
  std::vector<uint8_t> bytes_;
  std::string name_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::pair<uint64_t, uint64_t>> gated_, faulty_;
  bool closed_ = false;
  mutable int waiting_ = 0;
  mutable int fail_reads_ = 0;
  mutable uint64_t reads_ = 0;
};

std::unique_ptr<TestSource> DemoSource() {
  return std::make_unique<TestSource>(testing::ReadAll(testing::DemoModel()), testing::DemoModel());
}

// BOS + prompt, then `steps` greedy single-token steps: every step's logits.
std::vector<std::vector<float>> RunLogits(Engine& e, const std::string& prompt, int steps) {
  std::vector<std::vector<float>> out;
  const int nv = e.model().hparams().n_vocab;
  e.ResetContext();
  std::vector<int32_t> ids = e.tokenizer().Encode(prompt, true);
  Status s = e.Eval(ids);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;
  for (int i = 0; i < steps; ++i) {
    const float* l = e.logits();
    out.emplace_back(l, l + nv);
    int32_t best = static_cast<int32_t>(std::max_element(l, l + nv) - l);
    s = e.Eval({best});
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) break;
  }
  return out;
}


struct StreamCase {
  const char* label;
  int keep_n_layers_loaded;
  int ring_slots;
  bool naive;
  bool background;
  bool mapped = false;
};

TEST(Streaming, StreamedLogitsAreBitIdenticalToResident) {
  auto ref = Engine::LoadFile(testing::DemoModel(), testing::TwoThreadOptions());
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  ASSERT_TRUE((*ref)->WaitUntilLoaded().ok());
  ASSERT_FALSE((*ref)->residency().streaming());
  const auto want = RunLogits(**ref, "The king said", 6);
  ASSERT_EQ(want.size(), 6u);

  const StreamCase cases[] = {
      {"keep 1 layer (one ring slot, no pinned layer)", 1, 2, false, true},
      {"keep 3 layers, ring of 2", 3, 2, false, true},
      {"keep 5 layers, ring of 3", 5, 3, false, true},
      {"ring of 1, no background thread", 2, 1, false, false},
      {"naive streaming", 0, 2, true, true},
      {"keep 3 layers, streamed layers mapped from the file", 3, 2, false, true, true},
      {"keep 1 layer, mapped, no background thread", 1, 1, false, false, true},
  };
  for (const StreamCase& c : cases) {
    SCOPED_TRACE(c.label);
    EngineOptions o = testing::TwoThreadOptions();
    o.residency.keep_n_layers_loaded = c.keep_n_layers_loaded;
    o.residency.ring_slots = c.ring_slots;
    o.residency.naive_streaming = c.naive;
    o.residency.background_loading = c.background;
    o.residency.map_streamed_layers = c.mapped;
    auto e = Engine::LoadFile(testing::DemoModel(), o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const Residency& r = (*e)->residency();
    ASSERT_TRUE(r.streaming()) << r.Summary();
    if (c.keep_n_layers_loaded > 0) EXPECT_LE(r.pinned_layers(), c.keep_n_layers_loaded - 1) << r.Summary();
    const auto got = RunLogits(**e, "The king said", 6);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(0, std::memcmp(got[i].data(), want[i].data(), want[i].size() * sizeof(float))) << "step " << i;
    }
    // Each pass (the prompt batch, then every step) read each streamed layer once.
    EXPECT_EQ(r.streamed_bytes_read(), 7 * r.streamed_bytes_per_pass()) << r.Summary();
    // Layers never held by more than the slots: the ledger's layer bytes are the pinned ones.
    uint64_t pinned_bytes = 0;
    for (const ComponentInfo& ci : r.Components()) {
      if (ci.pinned && ci.name.rfind("layers.", 0) == 0) pinned_bytes += ci.bytes;
    }
    EXPECT_EQ((*e)->ledger().bytes_with_prefix("layers."), pinned_bytes);
    // Mapped where asked (the demo model's F16 layers need no conversion unless
    // this CPU gives them a run-time layout), copied otherwise.
    uint64_t maps = 0, loads = 0;
    for (const ComponentInfo& ci : r.Components()) {
      maps += ci.maps;
      if (!ci.pinned) loads += ci.loads;
    }
    const bool direct = (*e)->model().component(0).direct();
    EXPECT_EQ(maps, c.mapped && direct ? loads : 0u);
  }
}

TEST(Streaming, BudgetThatForcesStreamingKeepsTheLedgerUnderItAndTheTokens) {
  auto ref = Engine::LoadFile(testing::DemoModel(), testing::TwoThreadOptions());
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  ASSERT_TRUE((*ref)->WaitUntilLoaded().ok());
  const std::vector<int32_t> want = testing::Greedy(**ref, "It is a truth universally acknowledged", 24);
  // The KV cache grows with the tokens; the plan reserves it at full context
  // (8 layers x 512 x 128 x K,V x f16).
  const uint64_t resident_total = (*ref)->ledger().current_bytes() -
                                  (*ref)->ledger().component_bytes("kv_cache") + 8ull * 512 * 128 * 2 * 2;
  const uint64_t layer = (*ref)->model().component(0).bytes;
  ref->reset();
  // Budgets from "three layers short" down to room for one layer only (one ring
  // slot, no read-ahead: the minimum the load error names).
  for (uint64_t cut : {layer * 3, layer * 5, layer * 6, layer * 7 - (64u << 10)}) {
    SCOPED_TRACE("budget = resident - " + std::to_string(cut));
    EngineOptions o = testing::TwoThreadOptions();
    o.budget_bytes = resident_total - cut;
    auto e = Engine::LoadFile(testing::DemoModel(), o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_TRUE((*e)->residency().streaming());
    GenerateStats st;
    EXPECT_EQ(testing::Greedy(**e, "It is a truth universally acknowledged", 24, &st), want);
    EXPECT_GT(st.streamed_bytes, 0u);
    EXPECT_LE((*e)->ledger().peak_bytes(), o.budget_bytes);
  }
}

TEST(Streaming, ThirtyMillionModelUnder32MiBGivesTheResidentText) {
  const std::string path = testing::SharedModel("tabfit-test-30m-f16.gguf");
  TABFIT_REQUIRE_FILE(path);
  auto ref = Engine::LoadFile(path, testing::TwoThreadOptions());
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  const auto want_logits = RunLogits(**ref, "It is a truth universally acknowledged", 3);
  const std::vector<int32_t> want = testing::Greedy(**ref, "It is a truth universally acknowledged", 16);
  ref->reset();
  EngineOptions o = testing::TwoThreadOptions();
  o.budget_bytes = 32ull << 20;
  auto e = Engine::LoadFile(path, o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE((*e)->residency().streaming());
  const auto got_logits = RunLogits(**e, "It is a truth universally acknowledged", 3);
  ASSERT_EQ(got_logits.size(), want_logits.size());
  for (size_t i = 0; i < want_logits.size(); ++i) {
    ASSERT_EQ(0, std::memcmp(got_logits[i].data(), want_logits[i].data(), want_logits[i].size() * sizeof(float)));
  }
  EXPECT_EQ(testing::Greedy(**e, "It is a truth universally acknowledged", 16), want);
  EXPECT_LE((*e)->ledger().peak_bytes(), o.budget_bytes);
}

TEST(Progressive, GenerationStartedBeforeTheLoadEndsGivesTheSameTokens) {
  const std::vector<int32_t> want = testing::ReferenceTokens(testing::DemoModel(), "She looked at him and", 20);

  auto src = DemoSource();
  TestSource* s = src.get();
  std::vector<std::pair<uint64_t, uint64_t>> later;
  for (int il = 1; il < 8; ++il) {
    for (auto r : LayerRanges(testing::DemoModel(), il)) later.push_back(r);
  }
  s->Gate(later);
  std::vector<std::string> arrived;
  std::mutex am;
  EngineOptions o = testing::TwoThreadOptions();
  o.on_load_event = [&](const LoadEvent& ev) {
    if (ev.state == ComponentState::kResident) {
      std::lock_guard<std::mutex> lk(am);
      arrived.push_back(ev.component);
    }
    return true;
  };
  auto e = Engine::Load(std::move(src), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  // Load returned with the priority components in and layers 1..7 still out.
  {
    std::lock_guard<std::mutex> lk(am);
    EXPECT_NE(std::find(arrived.begin(), arrived.end(), "embeddings"), arrived.end());
    EXPECT_NE(std::find(arrived.begin(), arrived.end(), "layers.0"), arrived.end());
    EXPECT_EQ(std::find(arrived.begin(), arrived.end(), "layers.1"), arrived.end());
  }
  EXPECT_GT((*e)->ledger().component_bytes("layers.0"), 0u);
  for (const EngineComponent& c : (*e)->components()) {
    if (c.name == "layers.3") EXPECT_NE(c.state, "resident");
  }
  // Generation starts now; it waits for each layer as the gate lets it through.
  std::vector<int32_t> got;
  std::thread gen([&] { got = testing::Greedy(**e, "She looked at him and", 20); });
  s->WaitForBlockedRead();
  s->Open();
  gen.join();
  EXPECT_EQ(got, want);
  ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
  std::lock_guard<std::mutex> lk(am);
  EXPECT_NE(std::find(arrived.begin(), arrived.end(), "layers.7"), arrived.end());
}

TEST(Progressive, CancelMidLoadLeavesNoLedgerBytesAndNoThread) {
  const int threads_before = ThreadCount();
  MemoryLedger* seen = nullptr;
  EngineOptions o = testing::TwoThreadOptions();
  o.ledger_hook = [&](MemoryLedger* l) {
    if (l) seen = l;
  };
  int events = 0;
  o.on_load_event = [&](const LoadEvent& ev) {
    // Cancel once layers.0 is being read (a priority component: Load fails).
    ++events;
    return !(ev.component == "layers.0" && ev.state == ComponentState::kLoading && ev.loaded > 0);
  };
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kCancelled) << e.status().ToString();
  EXPECT_GT(events, 0);
  EXPECT_EQ(ThreadCount(), threads_before);
  (void)seen;  // the ledger is gone with the failed engine; its destructor checked zero in debug builds
}

TEST(Progressive, UnloadDuringBackgroundLoadingFreesEverythingAndJoinsTheLoader) {
  const int threads_before = ThreadCount();
  auto src = DemoSource();
  TestSource* s = src.get();
  s->Gate(LayerRanges(testing::DemoModel(), 4));
  auto e = Engine::Load(std::move(src), testing::TwoThreadOptions());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  s->WaitForBlockedRead();  // the loader thread is inside a read of layers.4
  EXPECT_GT(ThreadCount(), threads_before);
  std::thread unload([&] { (*e)->Unload(); });
  s->Open();  // the read in flight ends; the loader sees it was stopped
  unload.join();
  EXPECT_EQ((*e)->ledger().current_bytes(), 0u);
  EXPECT_FALSE((*e)->loaded());
  EXPECT_EQ(ThreadCount(), threads_before);
  GenerateOptions go;
  EXPECT_FALSE((*e)->Generate("x", go, nullptr).ok());
}

TEST(Faults, BackgroundReadFailureNamesTheComponentAndARetrySucceeds) {
  const std::vector<int32_t> want = testing::ReferenceTokens(testing::DemoModel(), "In the beginning", 12);

  auto src = DemoSource();
  src->Fail(LayerRanges(testing::DemoModel(), 5), 1);
  auto e = Engine::Load(std::move(src), testing::TwoThreadOptions());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  Status wait = (*e)->WaitUntilLoaded();
  ASSERT_FALSE(wait.ok());
  EXPECT_NE(wait.message().find("layers.5"), std::string::npos) << wait.ToString();
  EXPECT_NE(wait.message().find("offset"), std::string::npos) << wait.ToString();
  bool failed_listed = false;
  for (const EngineComponent& c : (*e)->components()) failed_listed |= c.name == "layers.5" && c.state == "failed";
  EXPECT_TRUE(failed_listed);
  // The component is read again when the forward pass needs it; the fault is gone.
  EXPECT_EQ(testing::Greedy(**e, "In the beginning", 12), want);
}

TEST(Faults, StreamedLayerReadFailureFailsTheGenerationInFlightThenWorks) {
  const std::vector<int32_t> want = testing::ReferenceTokens(testing::DemoModel(), "In the beginning", 12);

  auto src = DemoSource();
  TestSource* s = src.get();
  EngineOptions o = testing::TwoThreadOptions();
  o.residency.keep_n_layers_loaded = 2;  // one pinned layer at most; the rest stream
  auto e = Engine::Load(std::move(src), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
  int streamed = -1;
  for (const ComponentInfo& ci : (*e)->residency().Components()) {
    if (!ci.pinned && ci.name.rfind("layers.", 0) == 0) streamed = std::stoi(ci.name.substr(7));
  }
  ASSERT_GE(streamed, 0);
  // Fail enough reads that a retry within the same step fails too.
  s->Fail(LayerRanges(testing::DemoModel(), streamed), 1000);
  Status st;
  testing::Greedy(**e, "In the beginning", 12, nullptr, &st);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("layers." + std::to_string(streamed)), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("injected read failure at offset"), std::string::npos) << st.ToString();
  s->Fail({}, 0);
  EXPECT_EQ(testing::Greedy(**e, "In the beginning", 12), want);
}

TEST(Faults, FileTruncatedAfterLoadFailsWithTheOffsetAndReloadWorks) {
  const fs::path dir = fs::temp_directory_path() / ("tabfit_trunc_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path copy = dir / "demo.gguf";
  fs::copy_file(testing::DemoModel(), copy, fs::copy_options::overwrite_existing);
  EngineOptions o = testing::TwoThreadOptions();
  o.residency.keep_n_layers_loaded = 1;  // every layer streams from the file
  {
    auto e = Engine::LoadFile(copy.string(), o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
    // Cut the file in the middle of the last layer's tensors.
    auto last = LayerRanges(testing::DemoModel(), 7);
    ASSERT_FALSE(last.empty());
    fs::resize_file(copy, last.front().first + 16);
    Status st;
    testing::Greedy(**e, "In the beginning", 4, nullptr, &st);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("layers.7"), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find(copy.string()), std::string::npos) << st.ToString();
  }
  // Restore the file: a reload works.
  fs::copy_file(testing::DemoModel(), copy, fs::copy_options::overwrite_existing);
  auto e = Engine::LoadFile(copy.string(), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(testing::Greedy(**e, "In the beginning", 4).size(), 4u);
  fs::remove_all(dir);
}

TEST(Faults, CorruptedPackageChunkFailsNamingTheChunkAndTheComponent) {
  auto g = GgufFile::Open(testing::DemoModel());
  ASSERT_TRUE(g.ok());
  const fs::path dir = fs::temp_directory_path() / ("tabfit_pkg_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  PackageOptions po;
  po.max_chunk_bytes = 1 << 20;
  po.threads = 2;
  auto sum = WritePackageWithSummary(*g, dir.string(), po);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  // A chunk that holds only layers.6 bytes.
  std::string victim;
  for (const PackageChunk& c : sum->chunks) {
    if (c.components.size() == 1 && c.components[0] == "layers.6") {
      victim = c.file;
      break;
    }
  }
  ASSERT_FALSE(victim.empty());
  {
    std::fstream f(dir / victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char b = 0;
    f.read(&b, 1);
    f.seekp(100);
    b = static_cast<char>(b ^ 0x5a);
    f.write(&b, 1);
  }
  auto e = Engine::LoadFile(dir.string(), testing::TwoThreadOptions());
  ASSERT_TRUE(e.ok()) << e.status().ToString();  // layers.6 is not a priority component
  Status st;
  testing::Greedy(**e, "In the beginning", 4, nullptr, &st);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kCorruptData) << st.ToString();
  EXPECT_NE(st.message().find("layers.6"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find(victim), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("sha256"), std::string::npos) << st.ToString();
  e->reset();
  fs::remove_all(dir);
}

TEST(Components, UnloadLoadAndSwapAreIdempotentAndMoveLedgerBytes) {
  const std::vector<int32_t> want = testing::ReferenceTokens(testing::DemoModel(), "The king said", 10);

  auto e = Engine::LoadFile(testing::DemoModel(), testing::TwoThreadOptions());
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
  MemoryLedger& l = (*e)->ledger();
  const uint64_t layers = l.bytes_with_prefix("layers.");
  ASSERT_GT(layers, 0u);
  const uint64_t total = l.current_bytes();
  const uint64_t rss = ProcessResidentBytes();
  const uint64_t one_layer = l.component_bytes("layers.0");

  ASSERT_TRUE((*e)->UnloadComponents({"layers"}).ok());
  // The layers' bytes left the ledger (and the process); the loader may already
  // be reading the first layers to stream into the ring's slots.
  const uint64_t ring = static_cast<uint64_t>(EngineOptions().residency.ring_slots) * one_layer;
  EXPECT_EQ(l.bytes_with_prefix("layers."), 0u);
  EXPECT_LE(l.current_bytes(), total - layers + ring);
  EXPECT_LE(l.component_bytes("stream_buffers"), ring);
  if (rss > 0) EXPECT_LT(ProcessResidentBytes() + (layers - ring) / 2, rss);  // RSS has other noise
  ASSERT_TRUE((*e)->UnloadComponents({"layers"}).ok());  // idempotent
  EXPECT_EQ(l.bytes_with_prefix("layers."), 0u);
  EXPECT_LE(l.current_bytes(), total - layers + ring);
  // Unloaded layers stream: same tokens.
  EXPECT_EQ(testing::Greedy(**e, "The king said", 10), want);
  EXPECT_FALSE((*e)->UnloadComponents({"embeddings"}).ok());  // read every step: refused
  EXPECT_FALSE((*e)->UnloadComponents({"layers.99"}).ok());

  ASSERT_TRUE((*e)->LoadComponents({"layers"}).ok());
  EXPECT_EQ(l.bytes_with_prefix("layers."), layers);
  ASSERT_TRUE((*e)->LoadComponents({"layers"}).ok());
  EXPECT_EQ(l.bytes_with_prefix("layers."), layers);

  const uint64_t one = l.component_bytes("layers.2");
  ASSERT_TRUE((*e)->Swap({"layers.2"}, {"layers.2"}).ok());
  EXPECT_EQ(l.component_bytes("layers.2"), one);
  ASSERT_TRUE((*e)->Swap({"layers.2", "layers.3"}, {}).ok());
  EXPECT_EQ(l.bytes_with_prefix("layers."), layers - 2 * one);
  EXPECT_EQ(testing::Greedy(**e, "The king said", 10), want);
}

TEST(Components, DraftGroupLoadsAndUnloadsThroughTheLedger) {
  EngineOptions o = testing::TwoThreadOptions();
  o.draft_model = testing::DemoModel();
  o.draft_at_load = false;
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
  MemoryLedger& l = (*e)->ledger();
  EXPECT_FALSE((*e)->draft_loaded());
  EXPECT_EQ(l.bytes_with_prefix("draft."), 0u);
  ASSERT_TRUE((*e)->LoadComponents({"draft"}).ok());
  EXPECT_TRUE((*e)->draft_loaded());
  const uint64_t draft = l.bytes_with_prefix("draft.");
  EXPECT_GT(draft, (*e)->model().weight_bytes());  // weights + its KV cache and scratch
  ASSERT_TRUE((*e)->LoadComponents({"draft"}).ok());
  EXPECT_EQ(l.bytes_with_prefix("draft."), draft);
  bool listed = false;
  for (const EngineComponent& c : (*e)->components()) listed |= c.name == "draft" && c.group == "draft" && c.state == "resident";
  EXPECT_TRUE(listed);
  const uint64_t before = l.current_bytes();
  ASSERT_TRUE((*e)->UnloadComponents({"draft"}).ok());
  EXPECT_EQ(l.bytes_with_prefix("draft."), 0u);
  EXPECT_EQ(before - l.current_bytes(), draft);
  ASSERT_TRUE((*e)->UnloadComponents({"draft"}).ok());
  EXPECT_FALSE((*e)->draft_loaded());
}

TEST(Components, ManifestGroupsLoadAndUnloadByName) {
  auto g = GgufFile::Open(testing::DemoModel());
  ASSERT_TRUE(g.ok());
  const fs::path dir = fs::temp_directory_path() / ("tabfit_groups_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  PackageOptions po;
  po.threads = 2;
  po.groups = {{"late", {"layers.6", "layers.7"}}};
  ASSERT_TRUE(WritePackage(*g, dir.string(), po).ok());
  auto groups = ReadPackageGroups(dir.string());
  ASSERT_TRUE(groups.ok()) << groups.status().ToString();
  EXPECT_EQ(*groups, po.groups);
  // A group naming something that is not a component is refused at convert time.
  PackageOptions bad = po;
  bad.groups = {{"late", {"layers.60"}}};
  EXPECT_EQ(WritePackage(*g, (dir / "bad").string(), bad).code(), StatusCode::kInvalidArgument);
  bad.groups = {{"layers.1", {"layers.6"}}};
  EXPECT_EQ(WritePackage(*g, (dir / "bad").string(), bad).code(), StatusCode::kInvalidArgument);

  auto e = Engine::LoadFile(dir.string(), testing::TwoThreadOptions());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
  ASSERT_EQ((*e)->options().groups.count("late"), 1u);
  MemoryLedger& l = (*e)->ledger();
  const uint64_t two = l.component_bytes("layers.6") + l.component_bytes("layers.7");
  ASSERT_GT(two, 0u);
  auto state_of = [&](const std::string& name) {
    for (const EngineComponent& c : (*e)->components()) {
      if (c.name == name) return c.state + "/" + c.group + "/" + std::to_string(c.bytes);
    }
    return std::string("absent");
  };
  EXPECT_EQ(state_of("late"), "resident/group/" + std::to_string(two));
  ASSERT_TRUE((*e)->UnloadComponents({"late"}).ok());
  EXPECT_EQ(l.component_bytes("layers.6") + l.component_bytes("layers.7"), 0u);
  EXPECT_GT(l.component_bytes("layers.5"), 0u);
  EXPECT_EQ(state_of("late").substr(0, 8), "evicted/");
  ASSERT_TRUE((*e)->LoadComponents({"late"}).ok());
  EXPECT_EQ(l.component_bytes("layers.6") + l.component_bytes("layers.7"), two);
  e->reset();
  fs::remove_all(dir);
}

// Speculative decoding (8M drafting 30M) gives plain greedy's tokens on the golden prompts.
TEST(Speculative, EqualsGreedyOnTheGoldenPromptsResidentAndStreamed) {
  const std::string big = testing::SharedModel("tabfit-test-30m-f16.gguf");
  TABFIT_REQUIRE_FILE(big);
  const std::vector<std::string> prompts = {"The king said", "It is a truth universally acknowledged",
                                            "In the beginning", "She looked at him and"};
  std::vector<std::vector<int32_t>> want;
  {
    auto e = Engine::LoadFile(big, testing::TwoThreadOptions());
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    for (const auto& p : prompts) want.push_back(testing::Greedy(**e, p, 40));
  }
  for (bool streamed : {false, true}) {
    SCOPED_TRACE(streamed ? "streamed" : "resident");
    EngineOptions o = testing::TwoThreadOptions();
    o.draft_model = testing::DemoModel();
    o.draft_tokens = 4;
    if (streamed) o.residency.keep_n_layers_loaded = 3;
    auto e = Engine::LoadFile(big, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_TRUE((*e)->draft_loaded());
    EXPECT_EQ((*e)->residency().streaming(), streamed);
    int proposed = 0, accepted = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      GenerateStats st;
      EXPECT_EQ(testing::Greedy(**e, prompts[i], 40, &st), want[i]) << prompts[i];
      EXPECT_EQ(st.generated_tokens, 40);
      EXPECT_LT(st.verify_passes, 40);  // some passes verified more than one token
      proposed += st.draft_proposed;
      accepted += st.draft_accepted;
    }
    EXPECT_GT(proposed, 0);
    EXPECT_GT(accepted, 0);
    EXPECT_LE(accepted, proposed);
  }
}

}  // namespace
}  // namespace tabfit
