// The memory planner's arithmetic (memory_plan.h has the contract).
#include "train/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

namespace pft {

namespace {

constexpr int64_t kF32 = 4;

// As model/adapters.cpp: a target matches the end of a module name at a '.' boundary.
bool name_matches(const std::string& module, const std::string& target) {
  return module == target || (module.size() > target.size() && module.ends_with(target) &&
                              module[module.size() - target.size() - 1] == '.');
}

}  // namespace

MemoryPlan plan_memory(const Config& config, int world_size) {
  const ModelConfig& m = config.model;
  const bool gpt2 = m.family == "gpt2";
  const int64_t C = m.d_model, V = m.vocab_size, L = m.n_layers, F = resolved_d_ff(m);
  const int64_t D = C / m.n_heads, KV = resolved_kv_heads(m) * D, Q = m.n_heads * D;

  // Base parameters, and the block's linear projections (name, in, out) for LoRA.
  std::vector<std::tuple<std::string, int64_t, int64_t>> projections;
  int64_t base = 0;
  if (gpt2) {
    projections = {
        {"attn.c_attn", C, 3 * C}, {"attn.c_proj", C, C}, {"mlp.c_fc", C, F}, {"mlp.c_proj", F, C}};
    const int64_t block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * F + F) + (F * C + C);
    base = V * C + m.max_seq_len * C + L * block + 2 * C;
  } else {
    projections = {{"self_attn.q_proj", C, Q},  {"self_attn.k_proj", C, KV},
                   {"self_attn.v_proj", C, KV}, {"self_attn.o_proj", Q, C},
                   {"mlp.gate_proj", C, F},     {"mlp.up_proj", C, F},
                   {"mlp.down_proj", F, C}};
    const int64_t block = 2 * C + C * Q + 2 * C * KV + Q * C + 3 * C * F;
    base = V * C + L * block + C;
  }
  if (!m.tie_embeddings) base += V * C;

  // Adapters (model/adapters.h); prompt and prefix tables have one block of rows per task: the
  // config's task count is not known without the data, so one block is assumed.
  const Method method = config.train.method;
  const PeftConfig& p = config.peft;
  int64_t adapters = 0;
  if (has_prompt(method)) adapters += p.prompt_tokens * C;
  if (has_prefix(method)) {
    const int64_t kv_width = L * 2 * KV;
    if (p.prefix_projection) {
      const int64_t hidden = p.prefix_hidden > 0 ? p.prefix_hidden : KV;
      adapters += p.prefix_tokens * KV + hidden * KV + hidden + kv_width * hidden + kv_width;
    } else {
      adapters += p.prefix_tokens * kv_width;
    }
  }
  if (has_lora(method)) {
    std::vector<std::string> targets = p.lora_targets;
    if (targets.empty())
      targets =
          gpt2 ? std::vector<std::string>{"c_attn"} : std::vector<std::string>{"q_proj", "v_proj"};
    for (const auto& [name, in, out] : projections) {
      bool selected = false;
      for (const std::string& t : targets) selected = selected || name_matches(name, t);
      if (selected) adapters += L * p.lora_rank * (in + out);
    }
  }

  MemoryPlan plan;
  plan.total_params = base + adapters;
  plan.trainable_params = is_peft(method) ? adapters : base;
  // A PEFT method's frozen base is stored in model.base_dtype (2 bytes for bf16/fp16).
  const int64_t base_bytes = is_peft(method) && m.base_dtype != Precision::kFp32 ? 2 : kF32;
  plan.parameters = is_peft(method) ? base * base_bytes + adapters * kF32 : plan.total_params * kF32;
  plan.gradients = plan.trainable_params * kF32;
  // dist.zero 1 on W ranks: each rank's shard of the moments, about 1/W (train/optimizer.h).
  const bool zero = config.dist.zero == 1 && world_size > 1;
  const int64_t shard_params =
      zero ? (plan.trainable_params + world_size - 1) / world_size : plan.trainable_params;
  plan.optimizer = 2 * shard_params * kF32;

  // Activations of one micro-batch.
  const int64_t T = config.train.micro_batch_size * config.data.seq_len;
  plan.tokens = T;
  const bool frozen = is_peft(method);
  const int64_t block_floats =
      gpt2 ? (frozen ? kGpt2FrozenBlockD * C + kGpt2FrozenBlockF * F
                     : kGpt2BlockD * C + kGpt2BlockF * F)
           : (frozen ? kLlamaFrozenBlockD * C + kLlamaBlockKv * KV + kLlamaFrozenBlockF * F
                     : kLlamaBlockD * C + kLlamaBlockKv * KV + kLlamaBlockF * F);
  const int64_t block_bytes = T * block_floats * kF32;
  const int64_t outside = T * 3 * C * kF32;  // embedding output, final norm input and output
  int64_t checkpointed = 0;
  for (int64_t i = 0; i < L; ++i)
    checkpointed += config.train.activation_checkpointing.checkpoints(i);
  // Training always passes document ids, so every attention builds an additive (B, 1, T, T)
  // mask in fp32 that SDPA keeps for backward: one per block whose activations are kept.
  const int64_t mask_bytes =
      config.train.micro_batch_size * config.data.seq_len * config.data.seq_len * kF32;
  const int64_t kept_blocks = (L - checkpointed) + (checkpointed > 0 ? 1 : 0);
  plan.activations = outside + (L - checkpointed) * block_bytes + checkpointed * T * C * kF32 +
                     (checkpointed > 0 ? block_bytes : 0) + kept_blocks * mask_bytes;

  // Logits and loss.
  // Both paths also hold the (B T, C) hidden-state gradient and, when the output projection is
  // trained, its (V, C) weight gradient while the logits (or a chunk of them) are alive.
  const int64_t chunk = config.train.loss_chunk_rows;
  const bool output_trained = !is_peft(method);
  plan.logits = (chunk == 0 ? T : std::min(chunk, T)) * V * kF32 + T * C * kF32 +
                (output_trained ? V * C * kF32 : 0);

  // Reducer buffers.
  // bf16: each bucket's bf16 copy, the receive buffers of its reduce-scatter (as large, all in
  // flight together, then pooled), and its 1/W shard.
  if (world_size > 1 && config.dist.grad_comm_dtype == "bf16")
    plan.comm = plan.gradients + plan.gradients / 2 / world_size;
  // ZeRO-1's all-gather of the updated shards: a receive buffer of W pieces and a send buffer,
  // each piece at most 2^20 elements (kGatherChunk in train/optimizer.cpp).
  if (zero) plan.comm += (world_size + 1) * std::min<int64_t>(shard_params, int64_t{1} << 20) * kF32;

  plan.slack = kSlackFixed + (plan.activations + plan.logits) / kSlackDivisor;

  // An asynchronous checkpoint clones the trainable parameters and both moments to the host.
  if (config.checkpoint.async) plan.snapshot = 3 * plan.trainable_params * kF32;
  // ZeRO-1: rank 0 gathers both moments whole for every save (the other ranks send their shard),
  // so a synchronous save takes them too.
  if (zero && !config.checkpoint.async) plan.snapshot = 2 * plan.trainable_params * kF32;
  return plan;
}

std::string human_bytes(int64_t bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 3) v /= 1024.0, ++u;
  return fmt::format("{:.2f} {}", v, kUnits[u]);
}

std::string format_memory_plan(const MemoryPlan& plan, const Config& config, int world_size) {
  const auto& t = config.train;
  std::string out = fmt::format(
      "memory plan per rank (estimate; world {}; method {}; base_dtype {}; micro-batch {} x seq "
      "{} = {} tokens; activation_checkpointing {}; loss_chunk_rows {}; dist.zero {})\n",
      world_size, config_text(t.method), config_text(config.model.base_dtype),
      t.micro_batch_size, config.data.seq_len, plan.tokens,
      config_text(t.activation_checkpointing), t.loss_chunk_rows, config.dist.zero);
  if (t.precision != Precision::kFp32)
    out += fmt::format(
        "  note: train.precision {}'s autocast is not modelled (its 16-bit copies of fp32 "
        "weights, its 16-bit activations): activations are the fp32 figures\n",
        config_text(t.precision));
  out += fmt::format("  params       {:>14} elements, {} trainable\n", plan.total_params,
                     plan.trainable_params);
  const auto line = [&](const char* name, int64_t bytes) {
    out += fmt::format("  {:<12} {:>12}  ({} B)\n", name, human_bytes(bytes), bytes);
  };
  line("parameters", plan.parameters);
  line("gradients", plan.gradients);
  line("optimizer", plan.optimizer);
  line("activations", plan.activations);
  line("logits", plan.logits);
  line("comm", plan.comm);
  line("slack", plan.slack);
  line("total", plan.total());
  if (plan.snapshot > 0)
    out += fmt::format("  host snapshot of a checkpoint.async save: {} (host memory, not in the "
                       "total)\n",
                       human_bytes(plan.snapshot));
  return out;
}

}  // namespace pft
