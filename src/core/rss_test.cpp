#include "core/rss.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

namespace tabfit {
namespace {

TEST(Rss, ResetPeakResidentForgetsAnEarlierPeak) {
#if !defined(__linux__)
  GTEST_SKIP() << "the peak resident size can only be restarted on Linux";
#endif
  constexpr size_t kBytes = size_t{256} << 20;
  {
    std::unique_ptr<char[]> big(new char[kBytes]);
    std::memset(big.get(), 1, kBytes);  // resident
    EXPECT_GE(ProcessPeakResidentBytes(), kBytes);
  }
  ASSERT_TRUE(ResetPeakResident());
  const uint64_t peak = ProcessPeakResidentBytes(), now = ProcessResidentBytes();
  // Freed pages left the process (unless a sanitizer's quarantine keeps them):
  // the restarted peak is this moment's size, not the 256 MiB one.
  EXPECT_LE(peak, now + (uint64_t{16} << 20)) << "peak " << peak << " now " << now;
}

}  // namespace
}  // namespace tabfit
