// Parameter-efficient adapters of a frozen transformer: soft prompts (prompt tuning), per-layer
// key/value prefixes (prefix tuning / P-tuning v2) and LoRA. docs/peft.md is the user's guide.
//
// The base model's weights stay frozen (requires_grad false); an Adapters object owns the only
// trainable tensors and the transformer reads them in forward() once attached
// (TransformerImpl::attach_adapters). Conventions follow Hugging Face PEFT, so one step of each
// method matches PEFT within 1e-4 (tests/peft/peft_parity_test.cpp):
//
// Prompt tuning (Lester et al., 2021). A table `prompt_embeddings` (blocks * n, C): block k holds
// the n virtual tokens of task k (or one block shared by every task). Virtual tokens are tokens:
// id V + row (V = vocab_size) names row `row` of the table, so the data layer puts n of them in
// front of every document (train/task_source.h) and packing, document masks and positions work
// unchanged. As PEFT, the virtual tokens take positions 0 .. n-1 and the document's own tokens
// start at n.
//
// Prefix tuning (Li & Liang, 2021; P-tuning v2). Per block, n learned keys and values for every
// layer: `prefix_embeddings` (blocks * n, L * 2 * KV * D), element (row, ((l * 2 + j) * KV + h) *
// D + d) = layer l's key (j = 0) or value (j = 1) of KV head h, PEFT's past_key_values layout.
// Prefix keys get no RoPE (they enter like a cache). A token of task k attends to block k's n
// prefix slots and to its own document causally. As PEFT (where the prefix is the past of the
// cache) a document's positions start at n. With prefix_projection the table is computed by
// PEFT's PrefixEncoder MLP, embedding (blocks * n, KV * D) -> Linear(KV * D, hidden) -> tanh ->
// Linear(hidden, L * 2 * KV * D), whose output fold_prefix() returns (what inference and exports
// keep; PEFT saves the folded table too).
//
// LoRA (Hu et al., 2021). For each targeted projection y = W x + b:
//   y += (alpha / r) * B (A dropout(x)),   A (r, in) ~ kaiming_uniform(a = sqrt(5)), B (out, r) = 0
// named "<module>.lora_A.weight" / "<module>.lora_B.weight" as PEFT names them (GPT-2's Conv1D
// weights are (in, out) but A and B keep the (r, in) / (out, r) shapes: PEFT's fan_in_fan_out).
// Merging adds (alpha / r) B A to W (transposed for Conv1D).
//
// Names are stable (checkpoints store adapters under them): prompt_embeddings,
// prefix_embeddings | prefix_encoder.{embedding.weight, transform.0.weight, transform.0.bias,
// transform.2.weight, transform.2.bias}, then the LoRA pairs in the model's module order.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

namespace pft {

struct ModelSpec;

// Which adapters, and their sizes. Plain data.
struct AdapterSpec {
  bool prompt = false;
  bool prefix = false;
  bool lora = false;
  int64_t blocks = 1;          // prompt / prefix blocks: tasks, or 1 when shared
  int64_t prompt_tokens = 0;   // n of prompt tuning
  int64_t prefix_tokens = 0;   // n of prefix tuning
  bool prefix_projection = false;
  int64_t prefix_hidden = 0;
  int64_t lora_rank = 0;
  double lora_alpha = 0.0;
  double lora_dropout = 0.0;
  std::vector<std::string> lora_targets;  // suffixes of module names

  bool any() const { return prompt || prefix || lora; }
  double lora_scale() const { return lora_alpha / static_cast<double>(lora_rank); }
};

// train.method and peft.*: `blocks` = the number of tasks (ignored when peft.prompt_shared).
// Throws InputError naming the key for a method it does not know.
AdapterSpec adapter_spec_from_config(const Config& config, const ModelSpec& model, int64_t blocks);

// "full", or the methods joined by '+' in a fixed order.
std::string method_name(const AdapterSpec& spec);

class Adapters {
 public:
  struct Lora {
    std::string module;  // e.g. "transformer.h.0.attn.c_attn"
    at::Tensor a, b;     // (r, in), (out, r)
    bool conv1d = false; // the base weight is (in, out) (GPT-2)
  };

  // `lora_modules`: (module name, in, out, conv1d) of every linear projection the LoRA targets
  // select (TransformerImpl::lora_candidates gives all of them); a target matching none throws
  // InputError naming peft.lora_targets. Tensors are zero until reset_parameters() or a load.
  Adapters(const ModelSpec& model, const AdapterSpec& spec,
           const std::vector<std::tuple<std::string, int64_t, int64_t, bool>>& lora_modules);

  // Deterministic init from `seed` (each tensor from its own generator, as the model's init):
  // prompt rows per peft.prompt_init (`vocab`: rows of `embedding` (V, C) at random token ids;
  // `text`: rows of `text_ids` repeated; `random`: normal(0, init_std)), prefixes
  // normal(0, init_std), LoRA A kaiming-uniform and B zero.
  void reset_parameters(uint64_t seed, const std::string& prompt_init, const at::Tensor& embedding,
                        const std::vector<int32_t>& text_ids);

  const AdapterSpec& spec() const { return spec_; }
  // Every trainable tensor, name order above (FlatParameters takes this list).
  std::vector<std::pair<std::string, at::Tensor>> named() const;
  int64_t numel() const;

  const at::Tensor& prompt() const { return prompt_; }  // (blocks * n, C) or undefined
  // Prefix keys/values (blocks * n, L * 2 * KV * D) (through the MLP with prefix_projection).
  at::Tensor fold_prefix() const;
  const std::vector<Lora>& lora() const { return lora_; }

  void to(at::Device device);

 private:
  AdapterSpec spec_;
  int64_t d_model_ = 0, kv_width_ = 0;  // C, L * 2 * KV * D
  double init_std_ = 0.02;
  at::Tensor prompt_;
  at::Tensor prefix_;                    // without projection
  at::Tensor enc_embedding_, enc_w1_, enc_b1_, enc_w2_, enc_b2_;  // with projection
  std::vector<Lora> lora_;
};

}  // namespace pft
