// The decoder-only transformer: GPT-2 and Llama families, with Hugging Face parameter names.
//
//   GPT-2: learned positions (wpe indexed by position_ids), pre-LayerNorm blocks with biases,
//          fused qkv projection (c_attn), GELU (tanh approximation) MLP, final LayerNorm,
//          lm_head tied to wte (or a separate lm_head.weight when untied).
//   Llama: RMSNorm (computed in fp32, cast back, times weight -- as HF), RoPE on q and k from
//          position_ids (HF rotate_half layout, so HF checkpoints load one-to-one), grouped-query
//          attention (n_kv_heads), SwiGLU MLP down(silu(gate(x)) * up(x)), no biases,
//          tied or untied lm_head.
// Attention goes through at::scaled_dot_product_attention; see Note [document masking] in
// transformer.cpp. No dropout (but LoRA dropout on adapter inputs, model/adapters.h).
//
// Parameters, names and layout (Note [HF layout]):
//   named_parameters() returns exactly the names and the order of Hugging Face's
//   GPT2LMHeadModel / LlamaForCausalLM, with the same shapes. In particular GPT-2's weights are
//   stored as HF's Conv1D stores them, (in, out):
//     transformer.wte.weight            (V, C)
//     transformer.wpe.weight            (max_seq_len, C)
//     transformer.h.{i}.ln_1.weight/bias          (C)
//     transformer.h.{i}.attn.c_attn.weight        (C, 3C)   bias (3C)   [q | k | v] columns
//     transformer.h.{i}.attn.c_proj.weight        (C, C)    bias (C)
//     transformer.h.{i}.ln_2.weight/bias          (C)
//     transformer.h.{i}.mlp.c_fc.weight           (C, F)    bias (F)
//     transformer.h.{i}.mlp.c_proj.weight         (F, C)    bias (C)
//     transformer.ln_f.weight/bias                (C)
//     lm_head.weight                    (V, C), only when tie_embeddings is false
//   and Llama's are nn.Linear-style (out, in):
//     model.embed_tokens.weight                      (V, C)
//     model.layers.{i}.self_attn.q_proj.weight       (H*D, C)
//     model.layers.{i}.self_attn.k_proj.weight       (KV*D, C)
//     model.layers.{i}.self_attn.v_proj.weight       (KV*D, C)
//     model.layers.{i}.self_attn.o_proj.weight       (C, H*D)
//     model.layers.{i}.mlp.gate_proj.weight          (F, C)
//     model.layers.{i}.mlp.up_proj.weight           (F, C)
//     model.layers.{i}.mlp.down_proj.weight          (C, F)
//     model.layers.{i}.input_layernorm.weight        (C)
//     model.layers.{i}.post_attention_layernorm.weight (C)
//     model.norm.weight                              (C)
//     lm_head.weight                                 (V, C), only when tie_embeddings is false
//   So a safetensors checkpoint from the Hub copies tensor for tensor, with no transposes.
//
// Parameters are fp32 (or spec.param_dtype, the low-precision frozen base of a PEFT method) and
// live where the module was moved (`model->to(device)`). forward() reads
// the registered tensors in place, so storage may be rebound with `param.set_data(view)` (what
// Module::to does, and what flat parameter buffers do) or overwritten with `copy_`; never
// re-register a parameter. Under autocast the matmuls run in the autocast dtype, norms and the
// residual stream stay fp32, as in Hugging Face.
//
// Incremental decoding: forward_cached() runs a chunk of new tokens against a KvCache
// (model/kv_cache.h) holding the keys and values of the tokens before it, for generation
// (train/generate.h). Its logits equal forward()'s on the whole sequence (tests pin 1e-5).
//
// Thread-safety: forward() of one module may not run concurrently with itself on two threads
// (it keeps a small per-device RoPE cache).
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "config/config.h"

namespace pft {

enum class ModelFamily { Gpt2, Llama };

// The resolved architecture (every derived value filled in). Plain data; copyable.
struct ModelSpec {
  ModelFamily family = ModelFamily::Gpt2;
  int64_t vocab_size = 0;   // V
  int64_t d_model = 0;      // C
  int64_t n_layers = 0;     // L
  int64_t n_heads = 0;      // H
  int64_t n_kv_heads = 0;   // KV (== H for GPT-2); divides H
  int64_t head_dim = 0;     // D = C / H
  int64_t d_ff = 0;         // F
  int64_t max_seq_len = 0;  // longest T (rows of wpe for GPT-2)
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_embeddings = true;
  double init_std = 0.02;
  // The dtype every parameter is allocated in: fp32, or model.base_dtype's bf16 / fp16 for the
  // frozen base of a PEFT method (Note [low-precision base] in transformer.cpp).
  at::ScalarType param_dtype = at::kFloat;
};

// kFloat, kBFloat16 or kHalf.
at::ScalarType scalar_type_of(Precision precision);

// Resolves a validated ModelConfig (n_kv_heads and d_ff through resolved_kv_heads/resolved_d_ff).
// Throws InputError naming the model.* key when the shape is inconsistent (a config that went
// through load_config never is).
ModelSpec model_spec_from_config(const ModelConfig& config);

// "gpt2" / "llama".
std::string family_name(ModelFamily family);

// Number of parameters (tied embeddings counted once), from the spec alone: nothing is
// allocated, so it works for any size.
int64_t parameter_count(const ModelSpec& spec);

// The CPU generator of the deterministic init for the tensor `name`, seeded from (seed, name):
// the same values on every rank and device. Adapters (model/adapters.h) draw from it too.
at::Generator init_generator(uint64_t seed, const std::string& name);

class KvCache;
class Adapters;

namespace detail {
struct Gpt2Body;
struct LlamaBody;
struct Weights;
}  // namespace detail

class TransformerImpl : public torch::nn::Module {
 public:
  // Allocates the parameters on the CPU, zero (norm weights one) until reset_parameters() or a
  // weight import fills them. Throws InputError on an inconsistent spec.
  explicit TransformerImpl(const ModelSpec& spec);

  // Logits (B, T, V) in the compute dtype (fp32, or the autocast dtype).
  //   input_ids     int64 (B, T), T <= max_seq_len
  //   position_ids  int64 (B, T), values in [0, max_seq_len)
  //   doc_ids       int32/int64 (B, T) document index per token, or undefined/empty for one
  //                 document per row (causal fast path). Attention never crosses documents.
  // All on the parameters' device. Throws InputError on mismatched shapes.
  //   task_ids      int64 (B, T) task of each token (-1 = none), or undefined: selects the
  //                 prefix block of prefix tuning (model/adapters.h); unused otherwise
  // With a prompt-tuning adapter attached, ids >= vocab_size are virtual tokens (rows of its
  // table); with a prefix adapter, positions are shifted by its n (PEFT's convention).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                        const torch::Tensor& doc_ids, const torch::Tensor& task_ids = {});

  // forward() without the output projection: the final hidden states (B, T, C) after the final
  // norm, for the chunked loss (train/loss.h), which multiplies them by output_weight() chunk by
  // chunk so that the (B, T, V) logits never exist. Same arguments and errors as forward().
  torch::Tensor forward_hidden(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                               const torch::Tensor& doc_ids, const torch::Tensor& task_ids = {});
  // The output projection's weight (V, C): lm_head.weight, or the token embedding when tied
  // (the same tensor, so its gradient lands in the embedding's).
  const torch::Tensor& output_weight() const;

  // Activation checkpointing (train.activation_checkpointing; model/checkpoint_block.h): the
  // blocks it selects keep only their input in forward() and run again in backward. Same
  // outputs and gradients; forward_cached() never checkpoints.
  void set_activation_checkpointing(ActivationCheckpointing checkpointing) {
    checkpointing_ = checkpointing;
  }

  // Incremental decoding. Runs input_ids (B, T) at position_ids (B, T), writing their keys and
  // values to `cache` slots [cache.length(), cache.length() + T) and advancing it by T. Each new
  // token attends to the earlier slots the cache marks valid and causally within the chunk.
  // Returns logits (B, T, V), or (B, 1, V) of the last position when `last_only`. Meant for
  // inference (call under torch::NoGradGuard / InferenceMode). Throws InputError when B differs
  // from the cache's batch or the chunk does not fit its capacity.
  torch::Tensor forward_cached(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                               KvCache& cache, bool last_only = true);

  // Deterministic init, the same on every rank and device: every weight ~ normal(0, init_std),
  // the residual projections (GPT-2 attn.c_proj, mlp.c_proj; Llama o_proj, down_proj) with
  // std init_std / sqrt(2 * n_layers); biases 0; norm weights 1. Each parameter draws from its
  // own CPU generator seeded from (seed, parameter name), so values do not depend on the
  // device, on tying, or on the other parameters.
  void reset_parameters(uint64_t seed);

  const ModelSpec& spec() const { return spec_; }

  // Adapters (model/adapters.h). lora_candidates(): (module name, in, out, conv1d) of every
  // linear projection in module order, what LoRA may target. attach_adapters() makes forward()
  // use `adapters` (kept alive here; null detaches); their tensors must be on the model's device.
  std::vector<std::tuple<std::string, int64_t, int64_t, bool>> lora_candidates();
  void attach_adapters(std::shared_ptr<Adapters> adapters);
  const std::shared_ptr<Adapters>& adapters() const { return adapters_; }
  // Adds every attached LoRA update (alpha / r) B A into its base weight and stops applying it
  // (inference and export). The prompt and prefix adapters stay attached.
  void merge_lora();
  // Generation with a prefix adapter: writes block `block`'s prefix keys and values at the first
  // n slots of an empty cache and advances it by n (forward_cached then shifts positions by n).
  void prefill_prefix(KvCache& cache, int64_t block);

 private:
  // `mask` (B, 1, T, S) bool or undefined (then causal when `causal`, else every key); `cache`
  // null for training; `last_only` keeps the last position's logits.
  struct AttentionPlan {
    torch::Tensor mask;
    bool causal = true;
    KvCache* cache = nullptr;
    bool last_only = false;
    torch::Tensor prefix;  // prefix tuning: (L, 2, KV, P, D) keys/values put before each layer's
    bool hidden_only = false;  // return the final hidden states (B, T, C), not the logits
  };
  torch::Tensor gpt2_forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                             const AttentionPlan& plan);
  torch::Tensor llama_forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                              const AttentionPlan& plan);
  // One block: input (B, T, C) -> output (B, T, C); `prefix` (2, KV, P, D) this layer's prefix
  // keys/values or undefined. A pure function of its arguments, the weights and the RNG (LoRA
  // dropout), so that a checkpointed block can run again in backward.
  torch::Tensor gpt2_block(size_t layer, const torch::Tensor& input, const torch::Tensor& prefix,
                           const AttentionPlan& plan, bool training);
  torch::Tensor llama_block(size_t layer, const torch::Tensor& input, const torch::Tensor& prefix,
                            const torch::Tensor& cos, const torch::Tensor& sin,
                            const AttentionPlan& plan, bool training);
  // RoPE cos/sin (B, 1, T, D) in `dtype`, shared by all layers of one forward.
  std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& position_ids,
                                                       at::ScalarType dtype);

  ModelSpec spec_;
  std::shared_ptr<detail::Gpt2Body> gpt2_;    // "transformer" (GPT-2 only)
  std::shared_ptr<detail::LlamaBody> llama_;  // "model" (Llama only)
  std::shared_ptr<detail::Weights> lm_head_;  // "lm_head" (untied only)
  torch::Tensor inv_freq_;                    // (D/2) fp32 RoPE frequencies, per device (cache)
  std::shared_ptr<Adapters> adapters_;        // or null
  ActivationCheckpointing checkpointing_;     // none by default
  bool hidden_only_ = false;                  // set by forward_hidden() for its forward()

  // Token embeddings, virtual tokens (ids >= V) from the prompt table.
  torch::Tensor embed(const torch::Tensor& table, const torch::Tensor& input_ids);
};
TORCH_MODULE(Transformer);

}  // namespace pft
