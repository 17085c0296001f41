// A model read over HTTP Range requests, end to end through the Engine: the same
// tokens as the local file, progressive and streamed; a server that starts
// answering 404 or 416 fails the generation in flight with an error naming the
// component, the URL and the range, and the engine works again once it recovers.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "engine/engine.h"
#include "engine/engine_test_util.h"
#include "test_util.h"

namespace tabfit {
namespace {

class ModelServer {
 public:
  explicit ModelServer(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {
    svr_.set_tcp_nodelay(true);
    svr_.Get("/m.gguf", [this](const httplib::Request& req, httplib::Response& res) {
      ++requests_;
      const int fail = fail_with_.load();
      if (fail != 0 && req.has_header("Range") && req.get_header_value("Range") != "bytes=0-0") {
        const_cast<httplib::Request&>(req).ranges.clear();  // answer this one ourselves
        res.status = fail;
        if (fail == 416) res.set_header("Content-Range", "bytes */" + std::to_string(bytes_.size() / 2));
        res.set_content("refused", "text/plain");
        return;
      }
      res.set_header("Accept-Ranges", "bytes");
      res.set_content_provider(bytes_.size(), "application/octet-stream",
                               [this](size_t offset, size_t length, httplib::DataSink& sink) {
                                 if (offset >= bytes_.size()) return false;
                                 length = std::min(length, bytes_.size() - offset);
                                 return sink.write(reinterpret_cast<const char*>(bytes_.data()) + offset, length);
                               });
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::yield();
  }
  ~ModelServer() {
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/m.gguf"; }
  void FailWith(int status) { fail_with_ = status; }
  int requests() const { return requests_; }

 private:
  std::vector<uint8_t> bytes_;
  httplib::Server svr_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> fail_with_{0};
  std::atomic<int> requests_{0};
};




TEST(HttpEngine, ProgressiveAndStreamedOverHttpGiveTheFileTokens) {
  const std::vector<int32_t> want = testing::ReferenceTokens(testing::DemoModel(), "The king said", 16);

  ModelServer server(testing::ReadAll(testing::DemoModel()));
  for (int keep : {0, 1}) {
    SCOPED_TRACE(keep ? "every layer streams" : "progressive, resident");
    EngineOptions o = testing::TwoThreadOptions();
    o.residency.keep_n_layers_loaded = keep;
    auto e = Engine::LoadFile(server.url(), o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ((*e)->residency().streaming(), keep == 1);
    EXPECT_EQ(testing::Greedy(**e, "The king said", 16), want);
  }
}

TEST(HttpEngine, ServerErrorsFailTheGenerationNamingComponentAndRangeThenItRecovers) {
  const std::vector<int32_t> want = testing::ReferenceTokens(testing::DemoModel(), "In the beginning", 8);

  ModelServer server(testing::ReadAll(testing::DemoModel()));
  EngineOptions o = testing::TwoThreadOptions();
  o.residency.keep_n_layers_loaded = 1;  // every layer is read from the server on each pass
  auto e = Engine::LoadFile(server.url(), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
  for (int status : {404, 416}) {
    SCOPED_TRACE(status);
    server.FailWith(status);
    Status st;
    testing::Greedy(**e, "In the beginning", 8, nullptr, &st);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), status == 404 ? StatusCode::kNotFound : StatusCode::kOutOfRange) << st.ToString();
    EXPECT_NE(st.message().find("layers."), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find(server.url()), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find("bytes "), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find(std::to_string(status)), std::string::npos) << st.ToString();
    server.FailWith(0);
    EXPECT_EQ(testing::Greedy(**e, "In the beginning", 8), want);
  }
}

}  // namespace
}  // namespace tabfit
