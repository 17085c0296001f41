#include "memory/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

namespace tabfit {
namespace {

constexpr uint64_t kKiB = 1024;

MemoryTimeline Recorded() {
  MemoryLedger ledger(MemoryLedger::Options{8 * 1024 * kKiB, 1024 * kKiB});
  MemoryMonitor mon(ledger);
  mon.Start();
  {
    std::vector<Buffer> layers;
    for (int i = 0; i < 4; ++i) layers.push_back(std::move(ledger.Allocate("layers." + std::to_string(i), 256 * kKiB).value()));
    auto kv = ledger.Allocate("kv_cache", 512 * kKiB).value();
    mon.Mark("prompt <done>");
    auto odd = ledger.Allocate("we<ird>&\"name", 64 * kKiB).value();
  }
  mon.Stop();
  return mon.Timeline();
}

int Count(const std::string& s, const std::string& needle) {
  int n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

TEST(MemoryReportTest, ComponentGroup) {
  EXPECT_EQ(ComponentGroup("layers.12"), "layers");
  EXPECT_EQ(ComponentGroup("layers.3.attn"), "layers");
  EXPECT_EQ(ComponentGroup("blk.0"), "blk");
  EXPECT_EQ(ComponentGroup("kv_cache"), "kv_cache");
  EXPECT_EQ(ComponentGroup("lm_head"), "lm_head");
  EXPECT_EQ(ComponentGroup("12"), "12");
  EXPECT_EQ(ComponentGroup("a.b2"), "a.b2");
}

TEST(MemoryReportTest, JsonHasTimeTotalComponentsRssAndRoundTrips) {
  MemoryTimeline t = Recorded();
  std::string text = MemoryLogJson(t);
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["budget_bytes"], 8 * 1024 * kKiB);
  EXPECT_EQ(j["peak_total_bytes"], (4 * 256 + 512 + 64) * kKiB);
  ASSERT_EQ(j["samples"].size(), t.samples.size());
  // Sample 5: after kv_cache was allocated.
  const auto& s5 = j["samples"][5];
  EXPECT_EQ(s5["event"], "alloc kv_cache +512.0 KiB");
  EXPECT_EQ(s5["total_bytes"], (4 * 256 + 512) * kKiB);
  EXPECT_EQ(s5["components"]["kv_cache"], 512 * kKiB);
  EXPECT_EQ(s5["components"]["layers.3"], 256 * kKiB);
  EXPECT_TRUE(s5["t"].is_number());
  EXPECT_GT(s5["rss_bytes"].get<uint64_t>(), 0u);

  auto back = ParseMemoryLog(text);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->components, t.components);
  EXPECT_EQ(back->peak_component_bytes, t.peak_component_bytes);
  EXPECT_EQ(back->peak_total_bytes, t.peak_total_bytes);
  ASSERT_EQ(back->samples.size(), t.samples.size());
  for (size_t i = 0; i < t.samples.size(); ++i) {
    EXPECT_EQ(back->samples[i].event, t.samples[i].event);
    EXPECT_EQ(back->samples[i].total_bytes, t.samples[i].total_bytes);
    EXPECT_EQ(back->samples[i].rss_bytes, t.samples[i].rss_bytes);
    for (size_t c = 0; c < t.components.size(); ++c) EXPECT_EQ(back->component_at(i, c), t.component_at(i, c));
  }
}

TEST(MemoryReportTest, ParseErrorsNameTheProblem) {
  EXPECT_NE(ParseMemoryLog("{").status().message().find("byte"), std::string::npos);
  EXPECT_NE(ParseMemoryLog("{\"version\":2}").status().message().find("version"), std::string::npos);
  auto r = ParseMemoryLog(R"({"version":1,"components":[{"name":"a"}],"samples":[{"t":0,"components":{"b":1}}]})");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("samples[0]"), std::string::npos);
  EXPECT_NE(r.status().message().find("'b'"), std::string::npos);
  EXPECT_FALSE(ParseMemoryLog(R"({"version":1,"components":[],"samples":[{"t":0,"total_bytes":-4}]})").ok());
  EXPECT_FALSE(ParseMemoryLog(R"({"version":1,"components":[],"samples":[{"t":0,"total_bytes":1e300}]})").ok());
}

TEST(MemoryReportTest, HtmlIsSelfContainedWithStackedChartAndPeakTable) {
  MemoryTimeline t = Recorded();
  std::string html = MemoryReportHtml(t);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // only the SVG namespace
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  // layers.0..3 are one band: 3 groups -> 3 polygons.
  EXPECT_EQ(Count(html, "<polygon"), 3);
  EXPECT_NE(html.find("<title>layers: peak 1.0 MiB</title>"), std::string::npos);
  EXPECT_NE(html.find("class=\"rss\""), std::string::npos);
  // The peak table lists every component with its peak.
  EXPECT_NE(html.find("<td>layers.2</td><td>layers</td><td>256.0 KiB</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>kv_cache</td><td>kv_cache</td><td>512.0 KiB</td>"), std::string::npos);
  // Names are escaped; the Mark is drawn as a marker line.
  EXPECT_NE(html.find("we&lt;ird&gt;&amp;&quot;name"), std::string::npos);
  EXPECT_EQ(html.find("we<ird>"), std::string::npos);
  EXPECT_NE(html.find("prompt &lt;done&gt;"), std::string::npos);
  EXPECT_NE(html.find("class=\"mark\""), std::string::npos);

  MemoryReportOptions ungrouped;
  ungrouped.group_layers = false;
  EXPECT_EQ(Count(MemoryReportHtml(t, ungrouped), "<polygon"), 6);
}

TEST(MemoryReportTest, StackedBandsMatchTheBytes) {
  // Two samples, two components, no RSS: check the polygon coordinates.
  MemoryTimeline t;
  t.components = {"a", "b"};
  t.peak_component_bytes = {100, 300};
  t.peak_total_bytes = 400;
  MemorySample s0, s1;
  s0.t = 0;
  s0.total_bytes = 400;
  s0.component_bytes = {100, 300};
  s1.t = 1;
  s1.total_bytes = 400;
  s1.component_bytes = {100, 300};
  t.samples = {s0, s1};
  std::string html = MemoryReportHtml(t);
  std::smatch m;
  std::regex poly("<polygon fill=\"[^\"]+\" points=\"([^\"]+)\"");
  std::vector<std::vector<double>> ys;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), poly); it != std::sregex_iterator(); ++it) {
    std::istringstream in((*it)[1].str());
    std::string pt;
    std::vector<double> y;
    while (in >> pt) y.push_back(std::stod(pt.substr(pt.find(',') + 1)));
    ys.push_back(y);
  }
  ASSERT_EQ(ys.size(), 2u);
  // Band a spans [0, 100] bytes, band b [100, 400]: b's height is 3x a's.
  double a_h = ys[0].back() - ys[0].front();  // bottom - top in SVG coordinates
  double b_h = ys[1].back() - ys[1].front();
  EXPECT_GT(a_h, 0);
  EXPECT_NEAR(b_h / a_h, 3.0, 0.05);
  EXPECT_NEAR(ys[1].back(), ys[0].front(), 0.11);  // b sits on top of a
}

TEST(MemoryReportTest, DownsamplesLongTimelinesKeepingPeaks) {
  MemoryTimeline t;
  t.components = {"x"};
  for (int i = 0; i < 20000; ++i) {
    MemorySample s;
    s.t = i * 0.001;
    s.total_bytes = (i == 12345) ? 1000000 : 1000;
    s.component_bytes = {s.total_bytes};
    t.samples.push_back(s);
  }
  t.peak_component_bytes = {1000000};
  t.peak_total_bytes = 1000000;
  MemoryReportOptions o;
  o.max_points = 100;
  std::string html = MemoryReportHtml(t, o);
  auto p = html.find("points=\"");
  auto e = html.find('"', p + 8);
  std::string pts = html.substr(p + 8, e - p - 8);
  int n = Count(pts, ",");
  EXPECT_LE(n, 4 * 101);
  // The spike is kept: some point is at the top of the 1 MB band.
  double min_y = 1e9;
  std::istringstream in(pts);
  std::string pt;
  while (in >> pt) min_y = std::min(min_y, std::stod(pt.substr(pt.find(',') + 1)));
  EXPECT_LT(min_y, 100.0);  // near the top of a 380-pixel chart
}

TEST(MemoryReportTest, WritesFiles) {
  MemoryTimeline t = Recorded();
  auto dir = std::filesystem::temp_directory_path();
  std::string log = (dir / "tabfit_memory_test_log.json").string();
  std::string html = (dir / "tabfit_memory_test_report.html").string();
  ASSERT_TRUE(WriteMemoryLog(t, log).ok());
  ASSERT_TRUE(WriteMemoryReport(t, html).ok());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(ParseMemoryLog(ss.str()).ok());
  EXPECT_GT(std::filesystem::file_size(html), 1000u);
  std::filesystem::remove(log);
  std::filesystem::remove(html);
  Status bad = WriteMemoryLog(t, "/nonexistent-dir/x.json");
  EXPECT_EQ(bad.code(), StatusCode::kIoError);
  EXPECT_NE(bad.message().find("/nonexistent-dir/x.json"), std::string::npos);
}

}  // namespace
}  // namespace tabfit
