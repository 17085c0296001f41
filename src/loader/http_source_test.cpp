// Tests for the HTTP(S) Range-request ByteSource against an in-process httplib
// server on 127.0.0.1: a well-behaved endpoint (httplib's own Range slicing) and
// endpoints that misbehave after the open probe.
#include "loader/http_source.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT  // set by httplib's pkg-config flags
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#endif

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "model/gguf/gguf.h"
#include "test_util.h"

namespace tabfit {
namespace {

constexpr uint64_t kSize = 10007;  // prime, so chunk boundaries never line up

std::vector<uint8_t> TestBytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 131u) ^ (i >> 8));
  return v;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Serves `bytes` from memory; httplib answers Range requests itself (206, Content-Range).
void ServeWithHttplibRanges(const std::vector<uint8_t>& bytes, httplib::Response& res) {
  res.set_header("Accept-Ranges", "bytes");
  res.set_content_provider(bytes.size(), "application/octet-stream",
                           [&bytes](size_t offset, size_t length, httplib::DataSink& sink) {
                             if (offset >= bytes.size()) return false;
                             length = std::min(length, bytes.size() - offset);
                             return sink.write(reinterpret_cast<const char*>(bytes.data()) + offset, length);
                           });
}

// httplib slices any body by the request's Range; an endpoint that answers
// itself clears the parsed ranges. (The server's Request is a non-const local
// object handed to handlers by const reference, so this is well defined.)
void TakeOverRanges(const httplib::Request& req) { const_cast<httplib::Request&>(req).ranges.clear(); }

// Answers "Range: bytes=A-B" by hand with Content-Range shifted by `shift`,
// claiming `total`, and a body `delta` bytes off (-1 short, +1 long).
void Serve206(const httplib::Request& req, httplib::Response& res, const std::vector<uint8_t>& bytes, uint64_t total,
              int shift, int delta) {
  TakeOverRanges(req);
  unsigned long long a = 0, b = 0;
  if (std::sscanf(req.get_header_value("Range").c_str(), "bytes=%llu-%llu", &a, &b) != 2 || a > b ||
      b >= bytes.size()) {
    res.status = 400;
    return;
  }
  res.status = 206;
  res.set_header("Content-Range",
                 "bytes " + std::to_string(a + shift) + "-" + std::to_string(b + shift) + "/" + std::to_string(total));
  std::string body(bytes.begin() + a, bytes.begin() + b + 1);
  if (delta < 0) body.pop_back();
  if (delta > 0) body.push_back('x');
  res.set_content(body, "application/octet-stream");
}

// An httplib server (plain or TLS) on 127.0.0.1, a random port, its own thread.
class TestServer {
 public:
  explicit TestServer(std::unique_ptr<httplib::Server> svr) : svr_(std::move(svr)) {}
  ~TestServer() { Stop(); }
  httplib::Server& svr() { return *svr_; }
  void Start() {
    svr_->set_keep_alive_timeout(1);
    svr_->set_tcp_nodelay(true);  // else Nagle + delayed ACK add ~40 ms per request
    port_ = svr_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { svr_->listen_after_bind(); });
    while (!svr_->is_running()) std::this_thread::yield();  // stop() is a no-op before this
  }
  void Stop() {
    if (!thread_.joinable()) return;
    svr_->stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  std::unique_ptr<httplib::Server> svr_;
  std::thread thread_;
  int port_ = 0;
};

class HttpSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = TestBytes(kSize);
    for (const char* p : {"/file.bin", "/gone.bin", "/shrunk.bin", "/badrange.bin", "/short.bin", "/long.bin",
                          "/chunked-short.bin", "/chunked-long.bin", "/changed.bin", "/flaky.bin", "/down.bin"}) {
      hits_[p] = 0;
    }
    httplib::Server& s = server_.svr();
    s.Get("/file.bin", [this](const httplib::Request&, httplib::Response& res) {
      ++hits_["/file.bin"];
      ServeWithHttplibRanges(data_, res);
    });
    s.Get("/norange.bin", [this](const httplib::Request& req, httplib::Response& res) {
      TakeOverRanges(req);
      res.status = 200;
      res.set_content(std::string(data_.begin(), data_.end()), "application/octet-stream");
    });
    // After the open probe (the first request), each of these misbehaves.
    auto after_probe = [this](const char* path, std::function<void(const httplib::Request&, httplib::Response&)> bad) {
      server_.svr().Get(path, [this, path, bad](const httplib::Request& req, httplib::Response& res) {
        if (hits_[path]++ == 0) return Serve206(req, res, data_, kSize, 0, 0);
        bad(req, res);
      });
    };
    after_probe("/gone.bin", [](const httplib::Request& req, httplib::Response& res) {
      TakeOverRanges(req);
      res.status = 404;
    });
    after_probe("/shrunk.bin", [](const httplib::Request& req, httplib::Response& res) {
      TakeOverRanges(req);
      res.status = 416;
      res.set_header("Content-Range", "bytes */100");
    });
    after_probe("/badrange.bin", [this](const auto& req, auto& res) { Serve206(req, res, data_, kSize, 1, 0); });
    after_probe("/short.bin", [this](const auto& req, auto& res) { Serve206(req, res, data_, kSize, 0, -1); });
    after_probe("/long.bin", [this](const auto& req, auto& res) { Serve206(req, res, data_, kSize, 0, +1); });
    for (int delta : {-1, +1}) {  // chunked: no Content-Length, so only the received bytes tell
      after_probe(delta < 0 ? "/chunked-short.bin" : "/chunked-long.bin", [this, delta](const auto& req, auto& res) {
        Serve206(req, res, data_, kSize, 0, delta);
        auto body = std::make_shared<std::string>(std::move(res.body));
        res.body.clear();
        res.set_chunked_content_provider("application/octet-stream", [body](size_t, httplib::DataSink& sink) {
          sink.write(body->data(), body->size());
          sink.done();
          return true;
        });
      });
    }
    after_probe("/changed.bin", [this](const auto& req, auto& res) { Serve206(req, res, data_, kSize + 10, 0, 0); });
    after_probe("/flaky.bin", [this](const httplib::Request& req, httplib::Response& res) {
      if (hits_["/flaky.bin"] == 2) {  // the first read's first attempt
        TakeOverRanges(req);
        res.status = 503;
        return;
      }
      Serve206(req, res, data_, kSize, 0, 0);
    });
    after_probe("/down.bin", [](const httplib::Request& req, httplib::Response& res) {
      TakeOverRanges(req);
      res.status = 503;
    });
    server_.Start();
  }
  void TearDown() override { server_.Stop(); }

  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + path;
  }
  static HttpSourceOptions FastOptions() {
    HttpSourceOptions o;
    o.timeout_seconds = 10;
    o.max_retries = 2;
    o.retry_backoff_ms = 1;
    return o;
  }
  std::unique_ptr<ByteSource> MustOpen(const std::string& path, const HttpSourceOptions& o = FastOptions()) {
    auto r = OpenHttpSource(Url(path), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  // Opens `path` (the probe succeeds), reads bytes 100-199, returns the failure.
  Status ReadAfterOpen(const std::string& path) {
    auto src = MustOpen(path);
    if (!src) return Internal("open failed");
    std::vector<uint8_t> buf(100);
    Status s = src->ReadAt(100, buf.data(), buf.size());
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(Contains(s.message(), Url(path))) << s.message();
    EXPECT_TRUE(Contains(s.message(), "bytes 100-199")) << s.message();
    return s;
  }

  std::vector<uint8_t> data_;
  std::map<std::string, std::atomic<int>> hits_;  // filled before the server starts
  TestServer server_{std::make_unique<httplib::Server>()};
};

TEST_F(HttpSourceTest, LearnsSizeAndName) {
  auto src = MustOpen("/file.bin");
  ASSERT_TRUE(src);
  EXPECT_EQ(src->size(), kSize);
  EXPECT_EQ(src->name(), Url("/file.bin"));
  EXPECT_EQ(src->data(), nullptr);
}

TEST_F(HttpSourceTest, ReadsMatchTheBytes) {
  HttpSourceOptions o = FastOptions();
  o.max_request_bytes = 1000;  // the larger reads span several requests
  auto src = MustOpen("/file.bin", o);
  ASSERT_TRUE(src);
  const std::pair<uint64_t, size_t> cases[] = {{0, 1},    {0, 16},        {1, 999},   {999, 2},  {4096, 3000},
                                               {0, kSize}, {kSize - 1, 1}, {kSize - 7, 7}, {kSize, 0}, {50, 0}};
  for (auto [off, n] : cases) {
    std::vector<uint8_t> buf(n + 1, 0xEE);
    ASSERT_TRUE(src->ReadAt(off, buf.data(), n).ok()) << off << "+" << n;
    EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + n, data_.begin() + off)) << off << "+" << n;
    EXPECT_EQ(buf[n], 0xEE) << "wrote past n at " << off << "+" << n;
  }
}

TEST_F(HttpSourceTest, ZeroLengthAndPastEndReadsSendNoRequest) {
  auto src = MustOpen("/file.bin");
  ASSERT_TRUE(src);
  const int before = hits_["/file.bin"];
  uint8_t buf[4] = {};
  EXPECT_TRUE(src->ReadAt(kSize, buf, 0).ok());
  EXPECT_EQ(src->ReadAt(kSize - 1, buf, 2).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(src->ReadAt(kSize, buf, 1).code(), StatusCode::kOutOfRange);
  Status s = src->ReadAt(UINT64_MAX, buf, 2);  // offset + n overflows
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(Contains(s.message(), Url("/file.bin"))) << s.message();
  EXPECT_EQ(hits_["/file.bin"], before);
}

TEST_F(HttpSourceTest, ServerIgnoringRangesIsRefusedAtOpen) {
  auto r = OpenHttpSource(Url("/norange.bin"), FastOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(Contains(r.status().message(), "must answer HTTP Range requests")) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), Url("/norange.bin"))) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "200")) << r.status().message();
}

TEST_F(HttpSourceTest, MissingFileIsNotFoundAtOpen) {
  auto r = OpenHttpSource(Url("/missing.bin"), FastOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(r.status().message(), Url("/missing.bin") + ": bytes 0-0: not found on the server (404)"))
      << r.status().message();
}

TEST_F(HttpSourceTest, Read404IsNotFound) {
  Status s = ReadAfterOpen("/gone.bin");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s.message(), "not found on the server (404); check the URL")) << s.message();
}

TEST_F(HttpSourceTest, Read416IsOutOfRange) {
  Status s = ReadAfterOpen("/shrunk.bin");
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(Contains(s.message(), "range not satisfiable (416)")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "reload the model")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "the server now says 100;")) << s.message();
  EXPECT_EQ(hits_["/shrunk.bin"], 2);  // 416 is not retried
}

TEST_F(HttpSourceTest, WrongContentRangeIsCorruptData) {
  Status s = ReadAfterOpen("/badrange.bin");
  EXPECT_EQ(s.code(), StatusCode::kCorruptData);
  EXPECT_TRUE(Contains(s.message(), "Content-Range 'bytes 101-200/10007'")) << s.message();
}

TEST_F(HttpSourceTest, ShortAndLongBodiesAreCorruptData) {
  const std::pair<const char*, const char*> cases[] = {
      {"/short.bin", "Content-Length 99 for a 100-byte range"},
      {"/long.bin", "Content-Length 101 for a 100-byte range"},
      {"/chunked-short.bin", "sent 99 of the 100 bytes"},
      {"/chunked-long.bin", "sent more than the 100 bytes"}};
  for (auto [path, expected] : cases) {
    Status s = ReadAfterOpen(path);
    EXPECT_EQ(s.code(), StatusCode::kCorruptData) << path;
    EXPECT_TRUE(Contains(s.message(), expected)) << s.message();
  }
}

TEST_F(HttpSourceTest, ChangedFileIsCorruptData) {
  Status s = ReadAfterOpen("/changed.bin");
  EXPECT_EQ(s.code(), StatusCode::kCorruptData);
  EXPECT_TRUE(Contains(s.message(), "changed since it was opened")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "10017")) << s.message();
}

TEST_F(HttpSourceTest, Transient503IsRetried) {
  auto src = MustOpen("/flaky.bin");
  ASSERT_TRUE(src);
  std::vector<uint8_t> buf(500);
  Status s = src->ReadAt(1234, buf.data(), buf.size());
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data_.begin() + 1234));
  EXPECT_EQ(hits_["/flaky.bin"], 3);  // probe, 503, retry
}

TEST_F(HttpSourceTest, Persistent503GivesUpAfterMaxRetries) {
  Status s = ReadAfterOpen("/down.bin");
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_TRUE(Contains(s.message(), "HTTP 503")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "after 3 attempts")) << s.message();
  EXPECT_EQ(hits_["/down.bin"], 1 + 3);
}

TEST_F(HttpSourceTest, ConnectionRefusedIsIoError) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);  // a port that was free a moment ago
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x.gguf";
  HttpSourceOptions o = FastOptions();
  o.max_retries = 1;
  auto r = OpenHttpSource(url, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_TRUE(Contains(r.status().message(), url + ": bytes 0-0: request failed: could not connect to the server"))
      << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "(after 2 attempts)")) << r.status().message();
}

TEST_F(HttpSourceTest, ConcurrentReadsFromFourThreads) {
  HttpSourceOptions o = FastOptions();
  o.max_request_bytes = 700;
  auto src = MustOpen("/file.bin", o);
  ASSERT_TRUE(src);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      for (int i = 0; i < 40; ++i) {
        uint64_t off = rng() % kSize;
        size_t n = static_cast<size_t>(rng() % std::min<uint64_t>(2000, kSize - off + 1));
        std::vector<uint8_t> buf(n);
        if (!src->ReadAt(off, buf.data(), n).ok() || !std::equal(buf.begin(), buf.end(), data_.begin() + off)) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(HttpSourceUrlTest, MalformedUrlsAreInvalidArgument) {
  for (const char* url : {"http://", "http:///path", "http://host:0/", "http://host:65536/", "http://host:12ab/",
                          "http://host:/", "http://user:pw@host/", "http://ho st/", "http://[::1/"}) {
    auto r = OpenHttpSource(url);
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << url << ": " << r.status().ToString();
    EXPECT_TRUE(Contains(r.status().message(), url)) << r.status().message();
  }
  HttpSourceOptions o;
  o.headers = {{"X-Bad", "a\r\nInjected: 1"}};
  EXPECT_EQ(OpenHttpSource("http://127.0.0.1:1/", o).status().code(), StatusCode::kInvalidArgument);
  o.headers = {{"range", "bytes=0-10"}};
  EXPECT_EQ(OpenHttpSource("http://127.0.0.1:1/", o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsHttpUrl("HTTPS://example.com/a.gguf"));
  EXPECT_FALSE(IsHttpUrl("models/a.gguf"));
  EXPECT_FALSE(IsHttpUrl("ftp://example.com/a.gguf"));
}

TEST(HttpSourceUrlTest, ContentRangeParsing) {
  uint64_t a = 0, b = 0, t = 0;
  bool uns = false;
  using http_internal::ParseContentRange;
  EXPECT_TRUE(ParseContentRange("bytes 0-0/1", &a, &b, &t, &uns));
  EXPECT_TRUE(ParseContentRange(" Bytes  5 - 9 / 100 ", &a, &b, &t, &uns));
  EXPECT_EQ(a, 5u);
  EXPECT_EQ(b, 9u);
  EXPECT_EQ(t, 100u);
  EXPECT_FALSE(uns);
  EXPECT_TRUE(ParseContentRange("bytes 0-18446744073709551614/18446744073709551615", &a, &b, &t, &uns));
  EXPECT_TRUE(ParseContentRange("bytes */42", &a, &b, &t, &uns));
  EXPECT_TRUE(uns);
  EXPECT_EQ(t, 42u);
  for (const char* bad : {"", "bytes", "bytes 0-0", "bytes 0-0/*", "bytes 1-0/5", "bytes 0-5/5", "bits 0-0/1",
                          "bytes 0-0/18446744073709551616", "bytes -1-0/5", "bytes 0-+1/5", "bytes0-0/1",
                          "bytes 99999999999999999999999-0/1", "bytes 0-0/1x"}) {
    EXPECT_FALSE(ParseContentRange(bad, &a, &b, &t, &uns)) << bad;
  }
}

TEST(HttpSourceAnyTest, LocalGgufPathStillWorks) {
  const std::string path = testing::DemoModel();
  TABFIT_REQUIRE_FILE(path);
  auto r = OpenAnySource(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value()->size(), std::filesystem::file_size(path));
  EXPECT_EQ(r.value()->name(), path);
  EXPECT_EQ(OpenAnySource(path + ".absent").status().code(), StatusCode::kNotFound);
}

// The demo model served over HTTP parses to the same GGUF as the local file.
TEST(HttpSourceAnyTest, GgufOverHttpMatchesLocalFile) {
  const std::string path = testing::DemoModel();
  TABFIT_REQUIRE_FILE(path);
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.size(), std::filesystem::file_size(path));
  TestServer server(std::make_unique<httplib::Server>());
  server.svr().Get("/models/demo.gguf",
                   [&](const httplib::Request&, httplib::Response& res) { ServeWithHttplibRanges(bytes, res); });
  server.Start();
  auto local = GgufFile::Open(path);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  {
    auto src = OpenAnySource("http://127.0.0.1:" + std::to_string(server.port()) + "/models/demo.gguf");
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    EXPECT_EQ(src.value()->size(), bytes.size());
    auto remote = GgufFile::Parse(std::move(src).value());
    ASSERT_TRUE(remote.ok()) << remote.status().ToString();
    ASSERT_EQ(remote->tensors().size(), local->tensors().size());
    EXPECT_EQ(remote->metadata().size(), local->metadata().size());
    EXPECT_EQ(remote->data_offset(), local->data_offset());
    const GgufTensorInfo& t = remote->tensors().back();  // the last tensor's bytes, end of file included
    std::vector<uint8_t> a(t.nbytes), b(t.nbytes);
    ASSERT_TRUE(remote->ReadTensor(t, a.data()).ok());
    ASSERT_TRUE(local->ReadTensor(local->tensors().back(), b.data()).ok());
    EXPECT_EQ(a, b);
  }
  server.Stop();
}

#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
// A self-signed certificate for 127.0.0.1 (IP subjectAltName), its key, and its
// PEM in a temporary file, for an https:// server the client can verify.
class SelfSignedCert {
 public:
  SelfSignedCert() {
    key_ = EVP_EC_gen("P-256");
    cert_ = X509_new();
    if (!key_ || !cert_) return;
    X509_set_version(cert_, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert_), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert_), 24 * 3600);
    X509_set_pubkey(cert_, key_);
    X509_NAME* name = X509_get_subject_name(cert_);
    const auto* cn = reinterpret_cast<const unsigned char*>("127.0.0.1");
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, cn, -1, -1, 0);
    X509_set_issuer_name(cert_, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert_, cert_, nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1"},
                              std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
      if (!ext) return;
      X509_add_ext(cert_, ext, -1);
      X509_EXTENSION_free(ext);
    }
    if (X509_sign(cert_, key_, EVP_sha256()) == 0) return;
    pem_path_ = (std::filesystem::temp_directory_path() /
                 ("tabfit_http_source_test_" + std::to_string(::getpid()) + ".pem")).string();
    FILE* f = std::fopen(pem_path_.c_str(), "w");
    if (!f) return;
    ok_ = PEM_write_X509(f, cert_) == 1;
    ok_ = std::fclose(f) == 0 && ok_;
  }
  ~SelfSignedCert() {
    if (!pem_path_.empty()) std::remove(pem_path_.c_str());
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  bool ok() const { return ok_; }
  X509* cert() const { return cert_; }
  EVP_PKEY* key() const { return key_; }
  const std::string& pem_path() const { return pem_path_; }

 private:
  EVP_PKEY* key_ = nullptr;
  X509* cert_ = nullptr;
  std::string pem_path_;
  bool ok_ = false;
};

TEST(HttpSourceTlsTest, HttpsReadsVerifyTheServer) {
  SelfSignedCert cert;
  ASSERT_TRUE(cert.ok());
  const std::vector<uint8_t> bytes = TestBytes(kSize);
  TestServer server(std::make_unique<httplib::SSLServer>(cert.cert(), cert.key()));
  ASSERT_TRUE(server.svr().is_valid());
  server.svr().Get("/file.bin",
                   [&](const httplib::Request&, httplib::Response& res) { ServeWithHttplibRanges(bytes, res); });
  server.Start();
  const std::string url = "https://127.0.0.1:" + std::to_string(server.port()) + "/file.bin";
  {
    HttpSourceOptions o;
    o.ca_cert_path = cert.pem_path();
    auto src = OpenHttpSource(url, o);
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    EXPECT_EQ(src.value()->size(), kSize);
    std::vector<uint8_t> buf(3000);
    ASSERT_TRUE(src.value()->ReadAt(kSize - 3000, buf.data(), buf.size()).ok());
    EXPECT_TRUE(std::equal(buf.begin(), buf.end(), bytes.end() - 3000));
  }
  // The system's CA store does not know this certificate: refused, not retried.
  auto r = OpenHttpSource(url);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_TRUE(Contains(r.status().message(), url + ": bytes 0-0: request failed: the server's TLS certificate"))
      << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "self-signed")) << r.status().message();
  EXPECT_FALSE(Contains(r.status().message(), "attempts")) << r.status().message();
  server.Stop();
}
#endif  // CPPHTTPLIB_OPENSSL_SUPPORT

}  // namespace
}  // namespace tabfit
