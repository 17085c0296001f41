#include "model/gguf/gguf.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace tabfit {
namespace {

TEST(GgufReal, Stories260K) {
  const std::string path = testing::SharedModel("stories260K.gguf");
  TABFIT_REQUIRE_FILE(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->data_offset(), 14176u);
  EXPECT_EQ(f->alignment(), 32u);
  auto bc = f->GetU64("llama.block_count");
  ASSERT_TRUE(bc.ok()) << bc.status().ToString();
  EXPECT_EQ(*bc, 5u);
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  const GgufTensorInfo* t = f->FindTensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ne, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(t->type, TensorType::kF32);
  EXPECT_EQ(t->nbytes, 64u * 512u * 4u);
}

}  // namespace
}  // namespace tabfit
