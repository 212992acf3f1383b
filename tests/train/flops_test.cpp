// Model FLOPs per token and the GPU peak table (train/flops.h, Note [model FLOPs]).
#include "train/flops.h"

#include <gtest/gtest.h>

namespace {

using pft::Method;
using pft::Precision;

pft::ModelConfig gpt2_124m() {
  pft::ModelConfig m;
  m.family = "gpt2";
  m.vocab_size = 50257;
  m.d_model = 768;
  m.n_layers = 12;
  m.n_heads = 12;
  m.max_seq_len = 1024;
  return m;
}

TEST(Flops, Gpt2SmallByHand) {
  const pft::ModelConfig m = gpt2_124m();
  // Per block: c_attn 768 x 2304, attn c_proj 768 x 768, c_fc 768 x 3072, mlp c_proj 3072 x 768
  // = 7,077,888 weights; 12 blocks = 84,934,656; the (tied) output head 50,257 x 768 = 38,597,376.
  EXPECT_EQ(pft::matmul_params(m), 84934656 + 38597376);
  // 6 N + 12 L T d at T = 1024: 6 x 123,532,032 + 12 x 12 x 1024 x 768 = 741,192,192 + 113,246,208.
  EXPECT_DOUBLE_EQ(pft::training_flops_per_token(m, 1024, Method::kFull), 854438400.0);
  // A frozen base: 4 N for the weights (no weight gradients), attention unchanged.
  EXPECT_DOUBLE_EQ(pft::training_flops_per_token(m, 1024, Method::kLora),
                   4.0 * 123532032 + 113246208);
}

TEST(Flops, LlamaCountsGroupedKeyValueProjectionsAndTheGatedMlp) {
  pft::ModelConfig m;
  m.family = "llama";
  m.vocab_size = 100;
  m.d_model = 8;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.d_ff = 16;
  m.tie_embeddings = false;
  // Per block: q 8 x 8, k and v 8 x 4 each, o 8 x 8, gate/up/down 3 x 8 x 16 = 576; the head 800.
  EXPECT_EQ(pft::matmul_params(m), 2 * 576 + 800);
}

TEST(Flops, PeaksOfKnownGpusByPrecision) {
  EXPECT_DOUBLE_EQ(*pft::gpu_peak_flops("NVIDIA H100 80GB HBM3", Precision::kBf16), 989.4e12);
  EXPECT_DOUBLE_EQ(*pft::gpu_peak_flops("NVIDIA H100 80GB HBM3", Precision::kFp32), 66.9e12);
  EXPECT_DOUBLE_EQ(*pft::gpu_peak_flops("NVIDIA H100 PCIe", Precision::kFp16), 756.0e12);
  EXPECT_DOUBLE_EQ(*pft::gpu_peak_flops("NVIDIA H200 NVL", Precision::kBf16), 835.0e12);
  EXPECT_DOUBLE_EQ(*pft::gpu_peak_flops("NVIDIA H200", Precision::kBf16), 989.4e12);
  EXPECT_DOUBLE_EQ(*pft::gpu_peak_flops("NVIDIA A100-SXM4-80GB", Precision::kBf16), 312.0e12);
  EXPECT_FALSE(pft::gpu_peak_flops("NVIDIA GeForce GTX 1080", Precision::kFp32).has_value());
  EXPECT_EQ(pft::device_name("cpu"), "");
}

}  // namespace
