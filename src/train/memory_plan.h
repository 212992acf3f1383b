// Memory planner: the per-rank memory a training run of a config needs, estimated from the config
// alone (no weights loaded, nothing allocated): `pft config show CONFIG --memory [--world N]`.
//
// What it counts (bytes per rank; pft keeps everything in fp32 today, autocast included: fp32
// master weights, train/precision.h):
//   parameters   every parameter of the model (frozen base included) and the adapters, 4 B each;
//                a PEFT method's frozen base 2 B each with model.base_dtype bf16/fp16;
//   gradients    the trainable parameters' flat gradient buffers (model/flat_params.h), 4 B each;
//                a PEFT method's frozen base has none;
//   optimizer    AdamW's two fp32 moments of the trainable parameters (8 B each); with
//                dist.zero 1 on W > 1 ranks a rank's shard of them: ceil(trainable / W) x 8 B
//                (train/optimizer.h; shard boundaries at 64 elements per group add a little);
//   activations  what autograd keeps for one micro-batch (micro_batch_size x seq_len tokens):
//                per transformer block a per-token count of saved d_model / d_ff / kv vectors
//                (kGpt2Block* / kLlamaBlock* below: layer norm inputs and outputs,
//                q/k/v, attention output, MLP hidden states; a PEFT method's frozen projections
//                keep no input for a weight gradient: kGpt2FrozenBlock* / kLlamaFrozenBlock*); with
//                train.activation_checkpointing only the input of a checkpointed block (B T C)
//                plus one block's full activations while it is recomputed in backward;
//                attention takes the fused SDPA path (no T x T scores kept) but keeps the
//                additive (B, 1, T, T) fp32 mask built from the document ids, per kept block;
//   logits       train.loss_chunk_rows = 0: the (B T, V) fp32 logits, whose storage then holds
//                their gradient (masked_cross_entropy's consume_logits, train/loss.h);
//                N > 0: one chunk's (N, V) logits (Note [chunked cross entropy] in
//                train/loss.cpp); both plus the (B T, C) hidden-state gradient and, when the
//                output projection is trained, its (V, C) weight gradient;
//   comm         the reducer's buffers (comm/reducer.h): fp32 buckets are views of the gradient
//                buffers (0 extra); with dist.grad_comm_dtype bf16 on W > 1 ranks every bucket
//                has a bf16 copy and reduce-scatter receive buffers (half the gradient bytes
//                each) plus its 1/W shard; with dist.zero 1 on W > 1 ranks the all-gather
//                buffers of the updated shards, (W + 1) x min(shard, 2^20) x 4 B; 1 rank: 0;
//   slack        what the process holds beyond live tensors while it trains, measured on CPU
//                (docs/performance.md, "Memory planner": heaptrack's live tensors at the peak
//                against the growth of anonymous memory): MKL's GEMM buffers (about 25 MiB at
//                d_model 256) and the freed activation memory glibc keeps for reuse, which grows
//                with the activations: kSlackFixed + (activations + logits) / kSlackDivisor.
//                On a GPU the caching allocator's own slack plays this part (not measured);
//   total        the sum of the above;
//   snapshot     printed apart, not in the total: with checkpoint.async, the host copy of the
//                trainable parameters and both moments a save takes (12 B each). Host memory:
//                on the CPU it adds to the resident set while a save is in flight. With
//                dist.zero 1 on W > 1 ranks, rank 0 gathers both moments whole for every save,
//                synchronous ones included (8 B each for those).
// fp32 only: with train.precision bf16/fp16 the table says so (autocast's 16-bit weight copies
// and activations are not modelled).
// Not counted: the data pipeline, the process itself (tests/bench/memory_plan_check.sh measures
// the growth of anonymous memory over a process that only loads torch and the config).
// Pure function of the config and the world size (the world size changes comm, and with
// dist.zero 1 the optimizer and snapshot). The model's shape must be resolved first
// (apply_pretrained_architecture, as `pft config show` does).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace pft {

struct MemoryPlan {
  int64_t total_params = 0;      // elements, base + adapters
  int64_t trainable_params = 0;  // elements
  int64_t tokens = 0;            // micro_batch_size x seq_len
  int64_t parameters = 0;        // bytes, as every field below
  int64_t gradients = 0;
  int64_t optimizer = 0;
  int64_t activations = 0;
  int64_t logits = 0;
  int64_t comm = 0;
  int64_t slack = 0;
  int64_t snapshot = 0;  // host memory (not in total(): on a GPU it is not the device's)
  int64_t total() const {
    return parameters + gradients + optimizer + activations + logits + comm + slack;
  }
};

// Saved floats per token per block, in units of the shapes named (GPT-2's fit against measured RSS
// in docs/performance.md, "Memory planner"; Llama's counted from the code, not yet measured).
inline constexpr int64_t kGpt2BlockD = 9, kGpt2BlockF = 2;  // 9 C + 2 F
inline constexpr int64_t kLlamaBlockD = 10, kLlamaBlockKv = 3,
                         kLlamaBlockF = 4;                                // 10 C + 3 KV + 4 F
inline constexpr int64_t kGpt2FrozenBlockD = 7, kGpt2FrozenBlockF = 1;    // 7 C + F
inline constexpr int64_t kLlamaFrozenBlockD = 8, kLlamaFrozenBlockF = 3;  // 8 C + 3 KV + 3 F

// The slack term (above): fitted to the five GPT-2 configs of tests/bench/memory_plan_check.sh and
// checked on the Llama ones it was not fitted to.
inline constexpr int64_t kSlackFixed = int64_t{16} << 20;
inline constexpr int64_t kSlackDivisor = 8;

MemoryPlan plan_memory(const Config& config, int world_size);

// "1.50 GiB" (binary units; "512 B" below 1 KiB).
std::string human_bytes(int64_t bytes);

// The table `pft config show --memory` prints: one line per component, then the total.
std::string format_memory_plan(const MemoryPlan& plan, const Config& config, int world_size);

}  // namespace pft
