#include "cli/serve.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

namespace fs = std::filesystem;

namespace tabfit {
namespace {

const char kSecret[] = "TOP-SECRET-CONTENT-OUTSIDE-ROOT";

void WriteFile(const fs::path& p, const std::string& data) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
}

// Sends `request_line` byte for byte (no client-side normalisation) and returns
// the raw response.
std::string RawRequest(int port, const std::string& target) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

int StatusOf(const std::string& raw) {
  // "HTTP/1.1 404 Not Found"
  if (raw.size() < 12) return -1;
  return std::atoi(raw.substr(9, 3).c_str());
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("tabfit_serve_test_" + std::to_string(rd()));
    web_ = dir_ / "web";
    models_ = dir_ / "models";
    WriteFile(web_ / "demo" / "index.html", "<!doctype html><title>demo</title>");
    WriteFile(web_ / "src" / "index.js", "export const x = 1;\n");
    WriteFile(web_ / "src" / "worker.mjs", "export {};\n");
    WriteFile(web_ / "dist" / "tabfit.wasm", std::string("\0asm\1\0\0\0", 8));
    WriteFile(web_ / "data.json", "{\"a\":1}");
    WriteFile(web_ / ".hidden", "hidden");
    model_.resize(3 * 1024 * 1024 + 17);  // > one 1 MiB streaming piece
    for (size_t i = 0; i < model_.size(); ++i) model_[i] = static_cast<char>((i * 131 + 7) & 0xff);
    WriteFile(models_ / "tiny.gguf", model_);
    WriteFile(models_ / "notes.txt", "not a model");
    WriteFile(dir_ / "secret.txt", kSecret);
    fs::create_symlink(dir_ / "secret.txt", web_ / "link_out.txt");
    fs::create_directory_symlink(dir_, web_ / "dir_out");
    fs::create_symlink(web_ / "data.json", web_ / "link_in.json");

    ServeOptions o;
    o.port = 0;
    o.web_root = web_.string();
    o.models_dir = models_.string();
    o.log_requests = false;
    auto s = HttpServer::Create(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    ASSERT_TRUE(server_->Bind().ok());
    ASSERT_GT(server_->port(), 0);
    thread_ = std::thread([this] { listen_status_ = server_->Listen(); });
    for (int i = 0; i < 2000 && !server_->running(); ++i) std::this_thread::yield();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (thread_.joinable()) thread_.join();
    EXPECT_TRUE(listen_status_.ok()) << listen_status_.ToString();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static void ExpectIsolationHeaders(const httplib::Result& r) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get_header_value("Cross-Origin-Opener-Policy"), "same-origin");
    EXPECT_EQ(r->get_header_value("Cross-Origin-Embedder-Policy"), "require-corp");
    EXPECT_EQ(r->get_header_value("Cross-Origin-Resource-Policy"), "same-origin");
  }

  fs::path dir_, web_, models_;
  std::string model_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  Status listen_status_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(ServeTest, HeadersAndMimeTypes) {
  struct Case {
    const char* path;
    const char* mime;
  } cases[] = {
      {"/demo/index.html", "text/html; charset=utf-8"},
      {"/src/index.js", "text/javascript; charset=utf-8"},
      {"/src/worker.mjs", "text/javascript; charset=utf-8"},
      {"/dist/tabfit.wasm", "application/wasm"},
      {"/data.json", "application/json"},
      {"/models/tiny.gguf", "application/octet-stream"},
      {"/api/models", "application/json"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    auto r = client_->Get(c.path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), c.mime);
    ExpectIsolationHeaders(r);
  }
  auto wasm = client_->Get("/dist/tabfit.wasm");
  EXPECT_EQ(wasm->body, std::string("\0asm\1\0\0\0", 8));
  // The isolation headers are on errors and redirects too.
  auto missing = client_->Get("/nope.js");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  ExpectIsolationHeaders(missing);
  auto redirect = client_->Get("/");
  ASSERT_TRUE(redirect);
  EXPECT_EQ(redirect->status, 302);
  EXPECT_EQ(redirect->get_header_value("Location"), "/demo/");
  ExpectIsolationHeaders(redirect);
}

TEST_F(ServeTest, WholeFileStreamsExactBytes) {
  auto r = client_->Get("/models/tiny.gguf");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Accept-Ranges"), "bytes");
  EXPECT_EQ(r->get_header_value("Content-Length"), std::to_string(model_.size()));
  EXPECT_TRUE(r->body == model_);
}

TEST_F(ServeTest, RangeRequests) {
  const size_t n = model_.size();
  {
    auto r = client_->Get("/models/tiny.gguf", {{"Range", "bytes=100-199"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
    EXPECT_EQ(r->get_header_value("Content-Range"), "bytes 100-199/" + std::to_string(n));
    EXPECT_EQ(r->body, model_.substr(100, 100));
    ExpectIsolationHeaders(r);
  }
  {  // Across the 1 MiB streaming pieces.
    size_t a = (1 << 20) - 10, b = (2 << 20) + 10;
    auto r = client_->Get("/models/tiny.gguf", {{"Range", "bytes=" + std::to_string(a) + "-" + std::to_string(b)}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
    EXPECT_TRUE(r->body == model_.substr(a, b - a + 1));
  }
  {  // Open-ended.
    auto r = client_->Get("/models/tiny.gguf", {{"Range", "bytes=" + std::to_string(n - 5) + "-"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
    EXPECT_EQ(r->body, model_.substr(n - 5));
    EXPECT_EQ(r->get_header_value("Content-Range"),
              "bytes " + std::to_string(n - 5) + "-" + std::to_string(n - 1) + "/" + std::to_string(n));
  }
  {  // Suffix: the last 8 bytes.
    auto r = client_->Get("/models/tiny.gguf", {{"Range", "bytes=-8"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
    EXPECT_EQ(r->body, model_.substr(n - 8));
  }
  {  // Past the end: 416 with the size.
    auto r = client_->Get("/models/tiny.gguf", {{"Range", "bytes=" + std::to_string(n) + "-"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 416);
    EXPECT_EQ(r->get_header_value("Content-Range"), "bytes */" + std::to_string(n));
    ExpectIsolationHeaders(r);
  }
  {  // Ranges work on web files too (the JS loader may fetch wasm in pieces).
    auto r = client_->Get("/dist/tabfit.wasm", {{"Range", "bytes=0-3"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
    EXPECT_EQ(r->body, std::string("\0asm", 4));
  }
}

TEST_F(ServeTest, NotFoundAndDirectories) {
  EXPECT_EQ(client_->Get("/missing.html")->status, 404);
  EXPECT_EQ(client_->Get("/models/missing.gguf")->status, 404);
  auto d = client_->Get("/demo");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 301);
  EXPECT_EQ(d->get_header_value("Location"), "/demo/");
  auto idx = client_->Get("/demo/");
  ASSERT_TRUE(idx);
  EXPECT_EQ(idx->status, 200);
  EXPECT_NE(idx->body.find("<title>demo</title>"), std::string::npos);
  EXPECT_EQ(client_->Get("/src/")->status, 404);  // folder without index.html: no listing
  // A symlink that stays inside the root is served.
  auto in = client_->Get("/link_in.json");
  ASSERT_TRUE(in);
  EXPECT_EQ(in->status, 200);
  EXPECT_EQ(in->body, "{\"a\":1}");
}

TEST_F(ServeTest, TraversalIsImpossible) {
  const int port = server_->port();
  const char* attacks[] = {
      "/../secret.txt",
      "/demo/../../secret.txt",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/demo/%2e%2e/%2e%2e/secret.txt",
      "/%2e%2e%2fsecret.txt",
      "/demo%2f..%2f..%2fsecret.txt",
      "/..%5csecret.txt",
      "/models/../../secret.txt",
      "/models/%2e%2e/%2e%2e/secret.txt",
      "/models/..%2f..%2fsecret.txt",
      "/link_out.txt",           // symlink to a file outside the root
      "/dir_out/secret.txt",     // symlinked folder outside the root
      "/.hidden",                // dot-files are never served
      "/demo/%00/../../secret.txt",
      "//secret.txt",
      "/./../secret.txt",
  };
  for (const char* a : attacks) {
    SCOPED_TRACE(a);
    std::string raw = RawRequest(port, a);
    ASSERT_FALSE(raw.empty());
    int status = StatusOf(raw);
    EXPECT_TRUE(status == 404 || status == 400) << raw.substr(0, 200);
    EXPECT_EQ(raw.find(kSecret), std::string::npos);
    EXPECT_EQ(raw.find("hidden\n"), std::string::npos);
  }
  // The same through the ordinary client.
  auto r = client_->Get("/link_out.txt");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  // Control: the raw helper does reach real files.
  EXPECT_EQ(StatusOf(RawRequest(port, "/data.json")), 200);
}

TEST(ServePathTest, ResolveUnderRoot) {
  auto root = fs::canonical(fs::temp_directory_path()).string();
  EXPECT_FALSE(ResolveUnderRoot(root, "../etc/passwd").ok());
  EXPECT_FALSE(ResolveUnderRoot(root, "a/../../x").ok());
  EXPECT_FALSE(ResolveUnderRoot(root, std::string("a\0b", 3)).ok());
  EXPECT_FALSE(ResolveUnderRoot(root, "a\\..\\b").ok());
  EXPECT_FALSE(ResolveUnderRoot(root, ".git/config").ok());
  EXPECT_FALSE(ResolveUnderRoot(root, "definitely-not-here-12345").ok());
}

TEST_F(ServeTest, ModelListing) {
  auto r = client_->Get("/api/models");
  ASSERT_TRUE(r);
  auto j = nlohmann::json::parse(r->body);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 1u);  // notes.txt is not a model
  EXPECT_EQ(j[0]["name"], "tiny.gguf");
  EXPECT_EQ(j[0]["kind"], "gguf");
  EXPECT_EQ(j[0]["size"], model_.size());
  EXPECT_EQ(j[0]["url"], "/models/tiny.gguf");
}

TEST(ServeCreateTest, RejectsMissingRootsAndBadPorts) {
  ServeOptions o;
  o.web_root = "/nonexistent/web";
  auto s = HttpServer::Create(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("/nonexistent/web"), std::string::npos);
  o.web_root = fs::temp_directory_path().string();
  o.models_dir = "";
  o.port = 70000;
  EXPECT_FALSE(HttpServer::Create(o).ok());
}

TEST(ServeCreateTest, PortInUseIsAnError) {
  ServeOptions o;
  o.web_root = fs::temp_directory_path().string();
  o.models_dir = "";
  o.port = 0;
  auto a = HttpServer::Create(o);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Bind().ok());
  o.port = (*a)->port();
  auto b = HttpServer::Create(o);
  ASSERT_TRUE(b.ok());
  Status st = (*b)->Bind();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(std::to_string(o.port)), std::string::npos);
}

}  // namespace
}  // namespace tabfit
