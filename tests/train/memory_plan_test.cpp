// The memory planner (train/memory_plan.h) on a tiny GPT-2 config, against numbers computed by
// hand in the comments, and the direction each feature moves its component.
#include <gtest/gtest.h>

#include "config/config.h"
#include "train/memory_plan.h"

namespace pft {
namespace {

// GPT-2, V 10, C 4, 2 layers, 2 heads, F = 4C = 16, positions 8; seq 8, micro-batch 1.
Config tiny() {
  Config c;
  c.model.family = "gpt2";
  c.model.vocab_size = 10;
  c.model.d_model = 4;
  c.model.n_layers = 2;
  c.model.n_heads = 2;
  c.model.max_seq_len = 8;
  c.data.seq_len = 8;
  c.train.micro_batch_size = 1;
  c.train.loss_chunk_rows = 0;
  return c;
}

TEST(MemoryPlan, TinyGpt2FullByHand) {
  const MemoryPlan p = plan_memory(tiny(), 1);
  // wte 10*4 + wpe 8*4 + 2 blocks * (ln 4*4 + c_attn 4*12+12 + c_proj 4*4+4 + c_fc 4*16+16 +
  // c_proj 16*4+4 = 244) + ln_f 8 = 568 parameters, all trainable.
  EXPECT_EQ(p.total_params, 568);
  EXPECT_EQ(p.trainable_params, 568);
  EXPECT_EQ(p.parameters, 568 * 4);
  EXPECT_EQ(p.gradients, 568 * 4);
  EXPECT_EQ(p.optimizer, 568 * 8);
  // 8 tokens: outside the blocks 3C = 12 floats each (384 B); each block 9C + 2F = 68 floats
  // (8 * 68 * 4 = 2176 B) and its 8 x 8 fp32 attention mask (256 B).
  EXPECT_EQ(p.tokens, 8);
  EXPECT_EQ(p.activations, 384 + 2 * (2176 + 256));
  // Full logits, whose storage then holds their gradient: 8 * 10 * 4; the hidden-state gradient
  // 8 * 4 * 4; the output weight's gradient 10 * 4 * 4.
  EXPECT_EQ(p.logits, 320 + 128 + 160);
  EXPECT_EQ(p.comm, 0);
  // The asynchronous save's host copy: parameters and two moments, 568 * 12.
  EXPECT_EQ(p.snapshot, 6816);
  // Allocator and library slack: 16 MiB + (activations + logits) / 8.
  EXPECT_EQ(p.slack, (16 << 20) + (5248 + 608) / 8);
  EXPECT_EQ(p.total(), 2272 + 2272 + 4544 + 5248 + 608 + p.slack);  // the host snapshot apart
  Config sync = tiny();
  sync.checkpoint.async = false;
  EXPECT_EQ(plan_memory(sync, 1).snapshot, 0);
}

TEST(MemoryPlan, CheckpointingLowersActivations) {
  Config c = tiny();
  c.train.activation_checkpointing.every_k = 1;
  const MemoryPlan p = plan_memory(c, 1);
  // Two block inputs (8 * 4 * 4 B each) plus one block recomputed (2176 B and its 256 B mask)
  // plus outside (384 B).
  EXPECT_EQ(p.activations, 384 + 2 * 128 + 2176 + 256);
  EXPECT_LT(p.activations, plan_memory(tiny(), 1).activations);
  EXPECT_EQ(p.parameters, plan_memory(tiny(), 1).parameters);
}

TEST(MemoryPlan, ChunkingLowersLogits) {
  Config c = tiny();
  c.train.micro_batch_size = 8;  // 64 tokens: full logits 64 * 10 * 4 = 2560 B
  const MemoryPlan full = plan_memory(c, 1);
  // + the (64, 4) hidden gradient and the (10, 4) weight gradient.
  EXPECT_EQ(full.logits, 2560 + 1024 + 160);
  c.train.loss_chunk_rows = 4;
  const MemoryPlan p = plan_memory(c, 1);
  // One chunk's (4, 10) logits + the (64, 4) hidden gradient + the (10, 4) weight accumulator.
  EXPECT_EQ(p.logits, 160 + 1024 + 160);
  EXPECT_LT(p.logits, full.logits);
  EXPECT_EQ(p.activations, full.activations);
  // A PEFT method trains no output weight: no accumulator.
  c.train.method = Method::kLora;
  EXPECT_EQ(plan_memory(c, 1).logits, 160 + 1024);
}

TEST(MemoryPlan, LoraDropsTheBaseGradientsAndOptimizerState) {
  Config c = tiny();
  c.train.method = Method::kLora;
  c.peft.lora_rank = 2;
  const MemoryPlan p = plan_memory(c, 1);
  // Default target c_attn: 2 layers * rank 2 * (in 4 + out 12) = 64 trainable parameters.
  EXPECT_EQ(p.trainable_params, 64);
  EXPECT_EQ(p.total_params, 568 + 64);
  EXPECT_EQ(p.gradients, 64 * 4);
  EXPECT_EQ(p.optimizer, 64 * 8);
  EXPECT_LT(p.optimizer, plan_memory(tiny(), 1).optimizer);
  // The frozen projections keep no inputs: blocks 7C + F = 44 floats a token (8 * 44 * 4 B),
  // plus the masks.
  EXPECT_EQ(p.activations, 384 + 2 * (1408 + 256));
  // Adapters only in the host snapshot: 64 * 12.
  EXPECT_EQ(p.snapshot, 768);
  c.peft.lora_targets = {"c_proj"};  // attn.c_proj (4 -> 4) and mlp.c_proj (16 -> 4)
  EXPECT_EQ(plan_memory(c, 1).trainable_params, 2 * 2 * (8 + 20));
}

TEST(MemoryPlan, Bf16BaseHalvesTheFrozenParameters) {
  Config c = tiny();
  c.train.method = Method::kLora;
  c.peft.lora_rank = 2;
  EXPECT_EQ(plan_memory(c, 1).parameters, (568 + 64) * 4);
  c.model.base_dtype = Precision::kBf16;
  c.train.precision = Precision::kBf16;
  // The 568 base weights at 2 B, the 64 adapter weights still at 4 B.
  EXPECT_EQ(plan_memory(c, 1).parameters, 568 * 2 + 64 * 4);
  EXPECT_EQ(plan_memory(c, 1).gradients, 64 * 4);
}

TEST(MemoryPlan, Bf16CommBuffersOnlyWithSeveralRanks) {
  Config c = tiny();
  c.dist.grad_comm_dtype = "bf16";
  EXPECT_EQ(plan_memory(c, 1).comm, 0);
  // bf16 copy of the 2272 gradient bytes (1136), receive buffers as large, a 1/2 shard (568).
  EXPECT_EQ(plan_memory(c, 2).comm, 1136 + 1136 + 568);
  EXPECT_EQ(plan_memory(c, 2).gradients, plan_memory(tiny(), 2).gradients);
  c.dist.grad_comm_dtype = "fp32";
  EXPECT_EQ(plan_memory(c, 8).comm, 0);
}

// dist.zero 1 (train/optimizer.h): the moments of 1/W of the 568 trainable parameters per rank;
// the rest unchanged; one rank is the replicated plan.
TEST(MemoryPlan, ZeroOneShardsTheOptimizerState) {
  Config c = tiny();
  c.dist.zero = 1;
  EXPECT_EQ(plan_memory(c, 1).optimizer, 568 * 8);
  EXPECT_EQ(plan_memory(c, 1).comm, 0);
  EXPECT_EQ(plan_memory(c, 2).optimizer, 284 * 8);
  EXPECT_EQ(plan_memory(c, 3).optimizer, 190 * 8);  // ceil(568 / 3)
  EXPECT_EQ(plan_memory(c, 4).optimizer, 142 * 8);
  EXPECT_EQ(plan_memory(c, 2).gradients, plan_memory(tiny(), 2).gradients);
  EXPECT_EQ(plan_memory(c, 2).parameters, plan_memory(tiny(), 2).parameters);
  // The all-gather buffers: 2 pieces received and one sent, of 284 fp32 elements.
  EXPECT_EQ(plan_memory(c, 2).comm, 3 * 284 * 4);
  // Rank 0 gathers both moments whole to save: async adds the parameters' copy as before.
  EXPECT_EQ(plan_memory(c, 2).snapshot, 6816);
  c.checkpoint.async = false;
  EXPECT_EQ(plan_memory(c, 2).snapshot, 568 * 8);
  c.dist.zero = 0;
  EXPECT_EQ(plan_memory(c, 2).snapshot, 0);
  EXPECT_EQ(plan_memory(c, 4).optimizer, 568 * 8);
}

TEST(MemoryPlan, LlamaGroupedQueryShapes) {
  Config c = tiny();
  c.model.family = "llama";
  c.model.n_heads = 2;
  c.model.n_kv_heads = 1;  // head dim 2, KV width 2
  c.model.d_ff = 8;
  c.model.tie_embeddings = false;
  // embed 40 + lm_head 40 + norm 4 + 2 * (norms 8 + q 16 + k 8 + v 8 + o 16 + mlp 3 * 32 = 152).
  EXPECT_EQ(plan_memory(c, 1).total_params, 40 + 40 + 4 + 2 * 152);
}

TEST(MemoryPlan, HumanBytes) {
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1536), "1.50 KiB");
  EXPECT_EQ(human_bytes(int64_t{3} << 30), "3.00 GiB");
}

}  // namespace
}  // namespace pft
