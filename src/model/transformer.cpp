// The decoder-only transformer (GPT-2 / Llama): module tree with Hugging Face names, forward,
// deterministic init and the parameter count. See transformer.h for the contract.
#include "model/transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <optional>
#include <string_view>
#include <tuple>

#include "core/error.h"
#include "core/format.h"
#include "model/adapters.h"
#include "model/checkpoint_block.h"
#include "model/kv_cache.h"

namespace pft {

// ---- Module tree ---------------------------------------------------------------------------
// Each struct mirrors one Hugging Face module, registering its children in HF's order so that
// named_parameters() lists the HF names in the HF order (Note [HF layout] in transformer.h).
// Members hold the registered tensors / modules for direct use in forward.
namespace detail {

// How reset_parameters() fills a weight.
enum class Init { kNormal, kResidual, kOnes };

// A leaf with "weight" and an optional "bias": HF's Embedding, Linear, Conv1D, LayerNorm and
// RMSNorm reduced to their parameters (the math is in forward below).
struct Weights : torch::nn::Module {
  Weights(std::vector<int64_t> weight_shape, int64_t bias_size, Init init, at::ScalarType dtype)
      : init(init) {
    // Allocated in the final dtype: a bf16 base never exists in fp32 (Note [low-precision base]).
    const auto options = torch::TensorOptions().dtype(dtype);
    weight = register_parameter("weight", init == Init::kOnes
                                              ? torch::ones(weight_shape, options)
                                              : torch::zeros(weight_shape, options));
    if (bias_size > 0) bias = register_parameter("bias", torch::zeros({bias_size}, options));
  }
  torch::Tensor weight;  // shape as given
  torch::Tensor bias;    // (bias_size) or undefined
  Init init;
  // LoRA of this projection (model/adapters.h), undefined when none is attached.
  torch::Tensor lora_a, lora_b;  // (r, in), (out, r)
  double lora_scale = 0.0, lora_dropout = 0.0;
};

std::shared_ptr<Weights> add(torch::nn::Module& parent, const std::string& name,
                             std::vector<int64_t> shape, int64_t bias_size, Init init,
                             at::ScalarType dtype) {
  return parent.register_module(
      name, std::make_shared<Weights>(std::move(shape), bias_size, init, dtype));
}

struct Gpt2Attention : torch::nn::Module {
  explicit Gpt2Attention(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    const int64_t c = s.d_model;
    c_attn = add(*this, "c_attn", {c, 3 * c}, 3 * c, Init::kNormal, dt);  // (C, 3C): [q | k | v]
    c_proj = add(*this, "c_proj", {c, c}, c, Init::kResidual, dt);        // (C, C)
  }
  std::shared_ptr<Weights> c_attn, c_proj;
};

struct Gpt2Mlp : torch::nn::Module {
  explicit Gpt2Mlp(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    c_fc = add(*this, "c_fc", {s.d_model, s.d_ff}, s.d_ff, Init::kNormal, dt);           // (C, F)
    c_proj = add(*this, "c_proj", {s.d_ff, s.d_model}, s.d_model, Init::kResidual, dt);  // (F, C)
  }
  std::shared_ptr<Weights> c_fc, c_proj;
};

struct Gpt2Block : torch::nn::Module {
  explicit Gpt2Block(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    ln_1 = add(*this, "ln_1", {s.d_model}, s.d_model, Init::kOnes, dt);
    attn = register_module("attn", std::make_shared<Gpt2Attention>(s));
    ln_2 = add(*this, "ln_2", {s.d_model}, s.d_model, Init::kOnes, dt);
    mlp = register_module("mlp", std::make_shared<Gpt2Mlp>(s));
  }
  std::shared_ptr<Weights> ln_1, ln_2;
  std::shared_ptr<Gpt2Attention> attn;
  std::shared_ptr<Gpt2Mlp> mlp;
};

struct Gpt2Body : torch::nn::Module {  // HF GPT2Model, "transformer"
  explicit Gpt2Body(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    wte = add(*this, "wte", {s.vocab_size, s.d_model}, 0, Init::kNormal, dt);   // (V, C)
    wpe = add(*this, "wpe", {s.max_seq_len, s.d_model}, 0, Init::kNormal, dt);  // (P, C)
    auto list = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < s.n_layers; ++i) {
      blocks.push_back(std::make_shared<Gpt2Block>(s));
      list->push_back(blocks.back());  // registered as "0", "1", ...
    }
    ln_f = add(*this, "ln_f", {s.d_model}, s.d_model, Init::kOnes, dt);
  }
  std::shared_ptr<Weights> wte, wpe, ln_f;
  std::vector<std::shared_ptr<Gpt2Block>> blocks;
};

struct LlamaAttention : torch::nn::Module {  // "self_attn"
  explicit LlamaAttention(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    const int64_t c = s.d_model, q = s.n_heads * s.head_dim, kv = s.n_kv_heads * s.head_dim;
    q_proj = add(*this, "q_proj", {q, c}, 0, Init::kNormal, dt);    // (H*D, C)
    k_proj = add(*this, "k_proj", {kv, c}, 0, Init::kNormal, dt);   // (KV*D, C)
    v_proj = add(*this, "v_proj", {kv, c}, 0, Init::kNormal, dt);   // (KV*D, C)
    o_proj = add(*this, "o_proj", {c, q}, 0, Init::kResidual, dt);  // (C, H*D)
  }
  std::shared_ptr<Weights> q_proj, k_proj, v_proj, o_proj;
};

struct LlamaMlp : torch::nn::Module {
  explicit LlamaMlp(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    gate_proj = add(*this, "gate_proj", {s.d_ff, s.d_model}, 0, Init::kNormal, dt);    // (F, C)
    up_proj = add(*this, "up_proj", {s.d_ff, s.d_model}, 0, Init::kNormal, dt);        // (F, C)
    down_proj = add(*this, "down_proj", {s.d_model, s.d_ff}, 0, Init::kResidual, dt);  // (C, F)
  }
  std::shared_ptr<Weights> gate_proj, up_proj, down_proj;
};

struct LlamaBlock : torch::nn::Module {
  explicit LlamaBlock(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    self_attn = register_module("self_attn", std::make_shared<LlamaAttention>(s));
    mlp = register_module("mlp", std::make_shared<LlamaMlp>(s));
    input_layernorm = add(*this, "input_layernorm", {s.d_model}, 0, Init::kOnes, dt);
    post_attention_layernorm =
        add(*this, "post_attention_layernorm", {s.d_model}, 0, Init::kOnes, dt);
  }
  std::shared_ptr<LlamaAttention> self_attn;
  std::shared_ptr<LlamaMlp> mlp;
  std::shared_ptr<Weights> input_layernorm, post_attention_layernorm;
};

struct LlamaBody : torch::nn::Module {  // HF LlamaModel, "model"
  explicit LlamaBody(const ModelSpec& s) {
    const at::ScalarType dt = s.param_dtype;
    embed_tokens = add(*this, "embed_tokens", {s.vocab_size, s.d_model}, 0, Init::kNormal, dt);
    auto list = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < s.n_layers; ++i) {
      blocks.push_back(std::make_shared<LlamaBlock>(s));
      list->push_back(blocks.back());
    }
    norm = add(*this, "norm", {s.d_model}, 0, Init::kOnes, dt);
  }
  std::shared_ptr<Weights> embed_tokens, norm;
  std::vector<std::shared_ptr<LlamaBlock>> blocks;
};

}  // namespace detail

// ---- Spec ----------------------------------------------------------------------------------
namespace {

[[noreturn]] void bad_spec(const std::string& key, const std::string& what) {
  throw InputError(fmt::format("model.{}: {}", key, what));
}

void check_spec(const ModelSpec& s) {
  const auto positive = [](int64_t v, const char* key) {
    if (v <= 0) bad_spec(key, fmt::format("must be positive, got {}", v));
  };
  positive(s.vocab_size, "vocab_size");
  positive(s.d_model, "d_model");
  positive(s.n_layers, "n_layers");
  positive(s.n_heads, "n_heads");
  positive(s.n_kv_heads, "n_kv_heads");
  positive(s.head_dim, "head_dim");
  positive(s.d_ff, "d_ff");
  positive(s.max_seq_len, "max_seq_len");
  if (s.n_heads % s.n_kv_heads != 0)
    bad_spec("n_kv_heads",
             fmt::format("{} key/value heads do not divide n_heads = {}", s.n_kv_heads, s.n_heads));
  if (s.family == ModelFamily::Gpt2) {
    if (s.n_heads * s.head_dim != s.d_model)
      bad_spec("n_heads", fmt::format("{} heads of {} do not make d_model = {}", s.n_heads,
                                      s.head_dim, s.d_model));
    if (s.n_kv_heads != s.n_heads)
      bad_spec("n_kv_heads", "grouped-query attention is a llama-family feature");
  } else if (s.head_dim % 2 != 0) {
    bad_spec("n_heads", fmt::format("RoPE needs an even head dimension, got {}", s.head_dim));
  }
}

}  // namespace

ModelSpec model_spec_from_config(const ModelConfig& m) {
  ModelSpec s;
  if (m.family == "gpt2") {
    s.family = ModelFamily::Gpt2;
  } else if (m.family == "llama") {
    s.family = ModelFamily::Llama;
  } else {
    bad_spec("family", fmt::format("unknown family `{}`; use gpt2 or llama", m.family));
  }
  s.vocab_size = m.vocab_size;
  s.d_model = m.d_model;
  s.n_layers = m.n_layers;
  s.n_heads = m.n_heads;
  s.n_kv_heads = resolved_kv_heads(m);
  if (m.n_heads <= 0 || m.d_model % m.n_heads != 0)
    bad_spec("n_heads", fmt::format("{} heads do not divide d_model = {}", m.n_heads, m.d_model));
  s.head_dim = m.d_model / m.n_heads;
  s.d_ff = resolved_d_ff(m);
  s.max_seq_len = m.max_seq_len;
  s.norm_eps = m.norm_eps;
  s.rope_theta = m.rope_theta;
  s.tie_embeddings = m.tie_embeddings;
  s.init_std = m.init_std;
  s.param_dtype = scalar_type_of(m.base_dtype);
  check_spec(s);
  return s;
}

at::ScalarType scalar_type_of(Precision precision) {
  return precision == Precision::kBf16 ? at::kBFloat16
         : precision == Precision::kFp16 ? at::kHalf
                                         : at::kFloat;
}

std::string family_name(ModelFamily family) {
  return family == ModelFamily::Gpt2 ? "gpt2" : "llama";
}

int64_t parameter_count(const ModelSpec& s) {
  const int64_t c = s.d_model, f = s.d_ff, v = s.vocab_size;
  const int64_t head = s.tie_embeddings ? 0 : v * c;
  if (s.family == ModelFamily::Gpt2) {
    const int64_t block = 2 * c                // ln_1
                          + c * 3 * c + 3 * c  // c_attn
                          + c * c + c          // attn.c_proj
                          + 2 * c              // ln_2
                          + c * f + f          // c_fc
                          + f * c + c;         // mlp.c_proj
    return v * c + s.max_seq_len * c + s.n_layers * block + 2 * c + head;
  }
  const int64_t q = s.n_heads * s.head_dim, kv = s.n_kv_heads * s.head_dim;
  const int64_t block = c * q + 2 * c * kv + q * c  // q, k, v, o
                        + 3 * c * f                 // gate, up, down
                        + 2 * c;                    // two RMSNorms
  return v * c + s.n_layers * block + c + head;
}

// ---- Construction and init -----------------------------------------------------------------
TransformerImpl::TransformerImpl(const ModelSpec& spec) : spec_(spec) {
  check_spec(spec_);
  if (spec_.family == ModelFamily::Gpt2)
    gpt2_ = register_module("transformer", std::make_shared<detail::Gpt2Body>(spec_));
  else
    llama_ = register_module("model", std::make_shared<detail::LlamaBody>(spec_));
  if (!spec_.tie_embeddings)
    lm_head_ =
        detail::add(*this, "lm_head", {spec_.vocab_size, spec_.d_model}, 0, detail::Init::kNormal,
                    spec_.param_dtype);
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ULL;
  return h;
}

// normal(0, std) from a CPU generator seeded by (seed, name): identical on every device.
void fill_normal(torch::Tensor& p, double std, uint64_t seed, const std::string& name) {
  auto gen = init_generator(seed, name);
  if (p.is_cpu() && p.scalar_type() == at::kFloat && p.is_contiguous()) {
    p.normal_(0.0, std, gen);
  } else {
    p.copy_(at::empty(p.sizes(), at::kFloat).normal_(0.0, std, gen));
  }
}

}  // namespace

at::Generator init_generator(uint64_t seed, const std::string& name) {
  return at::make_generator<at::CPUGeneratorImpl>(splitmix64(seed ^ splitmix64(fnv1a(name))));
}

void TransformerImpl::reset_parameters(uint64_t seed) {
  torch::NoGradGuard no_grad;
  const double residual_std = spec_.init_std / std::sqrt(2.0 * static_cast<double>(spec_.n_layers));
  for (const auto& item : named_modules()) {
    auto* w = dynamic_cast<detail::Weights*>(item.value().get());
    if (w == nullptr) continue;
    switch (w->init) {
      case detail::Init::kOnes:
        w->weight.fill_(1.0);
        break;
      case detail::Init::kNormal:
        fill_normal(w->weight, spec_.init_std, seed, item.key() + ".weight");
        break;
      case detail::Init::kResidual:
        fill_normal(w->weight, residual_std, seed, item.key() + ".weight");
        break;
    }
    if (w->bias.defined()) w->bias.zero_();
  }
}

// ---- Forward -------------------------------------------------------------------------------
// Note [document masking]
// A packed row holds several documents; a token may attend to earlier tokens of its own
// document only. With doc_ids we build one boolean mask (B, 1, T, T) = causal & same-document
// per forward, shared by every layer, and pass it to SDPA as attn_mask (true = may attend).
// The diagonal is always kept, so no query row is fully masked (which would give NaN on the
// CPU kernels). Without doc_ids, SDPA's is_causal=true path runs (flash / memory-efficient
// kernels, no mask tensor at all). Position ids restart per document, so a packed document sees
// exactly the positions, keys and values it would see alone: its logits equal those of running
// it by itself (tests/model pins this within 1e-5).
//
// Grouped-query attention: as Hugging Face's SDPA path, SDPA's enable_gqa is used when there is
// no mask (the kernels that take it); with a mask the KV heads are repeated, so the masked
// path stays on the memory-efficient kernel instead of falling back to the math one.
//
// Note [grouped decoding]
// A decoding step (forward_cached, T = 1) reads the whole cache. Repeating its KV heads for the
// mask path (or letting SDPA's GQA fallback do it) would copy every layer's cache each step. Instead
// the rep = H / KV query heads that share a KV head become rep query rows of that head:
// q (B, H, 1, D) -> (B, KV, rep, D) against k/v (B, KV, S, D), mask (B, 1, 1, S) broadcast. Every
// dot product is the same; nothing is copied. Training's forward never takes this path.
namespace {

torch::Tensor document_mask(const torch::Tensor& doc_ids) {
  const int64_t t = doc_ids.size(1);
  auto same_doc = doc_ids.unsqueeze(2).eq(doc_ids.unsqueeze(1));  // (B, T, T)
  auto causal = torch::ones({t, t}, doc_ids.options().dtype(at::kBool)).tril_();
  return same_doc.logical_and_(causal).unsqueeze(1);  // (B, 1, T, T)
}

// (B, KV, T, D) -> (B, KV*rep, T, D), each KV head repeated rep times (HF repeat_kv order).
torch::Tensor repeat_kv(const torch::Tensor& x, int64_t rep) {
  const auto b = x.size(0), kv = x.size(1), t = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, kv, rep, t, d}).reshape({b, kv * rep, t, d});
}

// One decoding step (T = 1) against the cache: q (B, H, 1, D), k/v (B, KV, S, D), mask
// (B, 1, 1, S) bool or undefined (every key) -> (B, H, 1, D). See Note [grouped decoding].
torch::Tensor attend_one_step(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, const torch::Tensor& mask) {
  const int64_t b = q.size(0), h = q.size(1), kv = k.size(1), d = q.size(3);
  const auto grouped = q.reshape({b, kv, h / kv, d});  // the rep query heads of each KV head
  const auto m = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
  return at::scaled_dot_product_attention(grouped, k, v, m, 0.0, /*is_causal=*/false)
      .reshape({b, h, 1, d});
}

// q (B, H, T, D), k/v (B, KV, S, D), mask (B, 1, T, S) bool or undefined -> (B, H, T, D).
// Without a mask: causal (S == T) when `causal`, else every key (one decoding step).
torch::Tensor attend(const torch::Tensor& q, torch::Tensor k, torch::Tensor v,
                     const torch::Tensor& mask, bool causal = true, bool decoding = false) {
  if (decoding && q.size(2) == 1) return attend_one_step(q, k, v, mask);
  const int64_t rep = q.size(1) / k.size(1);
  if (!mask.defined())
    return at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, /*is_causal=*/causal,
                                            std::nullopt, /*enable_gqa=*/rep > 1);
  if (rep > 1) {
    k = repeat_kv(k, rep);
    v = repeat_kv(v, rep);
  }
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, /*is_causal=*/false);
}

// (B, T, N*D) -> (B, N, T, D), a view.
torch::Tensor split_heads(const torch::Tensor& x, int64_t n, int64_t d) {
  return x.view({x.size(0), x.size(1), n, d}).transpose(1, 2);
}

// (B, N, T, D) -> (B, T, N*D).
torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

// y = x W^T + b (W (out, in)), or x W + b for a Conv1D weight (in, out), plus the LoRA update
// (alpha / r) B A dropout(x) when one is attached.
torch::Tensor project(const torch::Tensor& x, const detail::Weights& w, bool conv1d, bool training) {
  auto y = at::linear(x, conv1d ? w.weight.t() : w.weight, w.bias);
  if (!w.lora_a.defined()) return y;
  const auto& in = w.lora_dropout > 0 && training ? at::dropout(x, w.lora_dropout, true) : x;
  return y + at::linear(at::linear(in, w.lora_a), w.lora_b) * w.lora_scale;
}

// `t` in `x`'s dtype: a low-precision base's norm weights against the fp32 residual stream
// (Note [low-precision base]); a no-op otherwise.
torch::Tensor like(const torch::Tensor& x, const torch::Tensor& t) {
  return t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type());
}

// HF LlamaRMSNorm: normalise in fp32, cast back to the input dtype, then times the weight.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto xf = x.to(at::kFloat);
  auto inv_rms = at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * (xf * inv_rms).to(x.scalar_type());
}

// HF rotate_half: [x1, x2] -> [-x2, x1] over the last dimension.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

// The leaves a block reads (model/checkpoint_block.h): its weights and biases, and the LoRA
// matrices attached to its projections.
std::vector<torch::Tensor> block_leaves(torch::nn::Module& block) {
  std::vector<torch::Tensor> out = block.parameters();
  for (const auto& m : block.modules())
    if (auto* w = dynamic_cast<detail::Weights*>(m.get()); w != nullptr && w->lora_a.defined()) {
      out.push_back(w->lora_a);
      out.push_back(w->lora_b);
    }
  return out;
}

}  // namespace

// Note [prefix attention]
// Prefix tuning puts P = blocks * n learned keys and values in front of every layer's own. The
// mask (B, 1, T, P + T) lets a token of task k see the n slots of block k (of block 0 when the
// blocks are shared; none for padding, task -1) and its own document causally. Every block is
// passed to every row: a row may pack documents of several tasks. Masked slots get exactly zero
// attention, so blocks no token used get exactly zero gradient.
namespace {

// `prefix` (2, KV, P, D): one layer's prefix keys and values.
std::pair<torch::Tensor, torch::Tensor> with_prefix(const torch::Tensor& prefix,
                                                    const torch::Tensor& k, const torch::Tensor& v) {
  const auto b = k.size(0);
  auto pk = prefix[0].to(k.scalar_type()).unsqueeze(0);  // (1, KV, P, D)
  auto pv = prefix[1].to(v.scalar_type()).unsqueeze(0);
  pk = pk.expand({b, pk.size(1), pk.size(2), pk.size(3)});
  pv = pv.expand({b, pv.size(1), pv.size(2), pv.size(3)});
  return {at::cat({pk, k}, 2), at::cat({pv, v}, 2)};
}

}  // namespace

// Note [low-precision base]
// With model.base_dtype bf16/fp16 every parameter of the frozen base is allocated in that dtype
// (ModelSpec::param_dtype; the importers dequantise or read fp32 and copy_ into it, tensor by
// tensor, so no fp32 copy of the model ever exists) and forward() runs under autocast of the same
// dtype (config.cpp refuses a train.precision that differs). The design is that of train.precision
// with an fp32 base, only without the per-step weight casts: the matmuls run in the low precision
// (their weights already are), while the residual stream, the norms and the adapters stay fp32 -
// embed() returns fp32 rows under autocast and the norm weights are cast up to the stream's dtype.
// Without autocast (pft generate --dtype bf16 converts the whole model) the stream takes the
// weights' dtype, as before. The adapters are fp32 leaves, so gradients and AdamW state stay fp32.
// A bf16 base is a different base: its hash (adapter checkpoints' base_model_hash) is that of the
// bf16 bytes, which train/adapter_checkpoint.cpp reproduces from an fp32 base by casting it.

torch::Tensor TransformerImpl::embed(const torch::Tensor& table, const torch::Tensor& input_ids) {
  const bool fp32_stream = table.scalar_type() != at::kFloat &&
                           at::autocast::is_autocast_enabled(table.device().type());
  if (!adapters_ || !adapters_->prompt().defined()) {
    auto rows = at::embedding(table, input_ids);
    return fp32_stream ? rows.to(at::kFloat) : rows;
  }
  const int64_t v = spec_.vocab_size;
  auto is_virtual = input_ids.ge(v);
  auto words = at::embedding(table, input_ids.clamp_max(v - 1));
  if (fp32_stream) words = words.to(at::kFloat);
  auto virtual_rows =
      at::embedding(adapters_->prompt(), (input_ids - v).clamp(0, adapters_->prompt().size(0) - 1));
  return at::where(is_virtual.unsqueeze(-1), virtual_rows.to(words.scalar_type()), words);
}

std::vector<std::tuple<std::string, int64_t, int64_t, bool>> TransformerImpl::lora_candidates() {
  std::vector<std::tuple<std::string, int64_t, int64_t, bool>> out;
  const bool conv1d = spec_.family == ModelFamily::Gpt2;
  for (const auto& item : named_modules()) {
    auto* w = dynamic_cast<detail::Weights*>(item.value().get());
    if (w == nullptr || w->weight.dim() != 2) continue;
    const std::string& name = item.key();
    if (name.ends_with("wte") || name.ends_with("wpe") || name.ends_with("embed_tokens") ||
        name == "lm_head")
      continue;
    const int64_t in = conv1d ? w->weight.size(0) : w->weight.size(1);
    const int64_t out_features = conv1d ? w->weight.size(1) : w->weight.size(0);
    out.emplace_back(name, in, out_features, conv1d);
  }
  return out;
}

void TransformerImpl::attach_adapters(std::shared_ptr<Adapters> adapters) {
  for (const auto& item : named_modules())
    if (auto* w = dynamic_cast<detail::Weights*>(item.value().get())) {
      w->lora_a = w->lora_b = torch::Tensor();
      if (!adapters) continue;
      for (const Adapters::Lora& l : adapters->lora())
        if (l.module == item.key()) {
          w->lora_a = l.a;
          w->lora_b = l.b;
          w->lora_scale = adapters->spec().lora_scale();
          w->lora_dropout = adapters->spec().lora_dropout;
        }
    }
  adapters_ = std::move(adapters);
}

void TransformerImpl::merge_lora() {
  torch::NoGradGuard no_grad;
  for (const auto& item : named_modules()) {
    auto* w = dynamic_cast<detail::Weights*>(item.value().get());
    if (w == nullptr || !w->lora_a.defined()) continue;
    // Into fp32: rounding W + delta to a low-precision base's dtype would erase every update
    // below half a unit in the last place of W (Note [low-precision base]).
    if (w->weight.scalar_type() != at::kFloat) w->weight.set_data(w->weight.to(at::kFloat));
    auto delta = at::mm(w->lora_b, w->lora_a) * w->lora_scale;  // (out, in)
    w->weight.add_(spec_.family == ModelFamily::Gpt2 ? delta.t() : delta);
    w->lora_a = w->lora_b = torch::Tensor();
  }
}

void TransformerImpl::prefill_prefix(KvCache& cache, int64_t block) {
  PFT_ASSERT(adapters_ && adapters_->spec().prefix, "prefill_prefix: no prefix adapter attached");
  PFT_ASSERT(cache.length() == 0, "prefill_prefix: the cache must be empty");
  torch::NoGradGuard no_grad;
  const int64_t n = adapters_->spec().prefix_tokens;
  const int64_t kv = spec_.n_kv_heads, d = spec_.head_dim;
  // In the weights' dtype (the cache takes the dtype of its first append).
  auto rows = adapters_->fold_prefix().narrow(0, block * n, n).to(
      parameters().front().scalar_type());  // (n, L*2*KV*D)
  auto prefix = rows.view({n, spec_.n_layers, 2, kv, d}).permute({1, 2, 3, 0, 4});
  for (int64_t l = 0; l < spec_.n_layers; ++l) {
    auto k = prefix[l][0].unsqueeze(0).expand({cache.batch(), kv, n, d});
    auto v = prefix[l][1].unsqueeze(0).expand({cache.batch(), kv, n, d});
    cache.append(l, k, v);
  }
  cache.advance(n);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& input_ids,
                                       const torch::Tensor& position_ids,
                                       const torch::Tensor& doc_ids,
                                       const torch::Tensor& task_ids) {
  if (input_ids.dim() != 2)
    throw InputError(fmt::format("model input_ids must be (B, T), got {} dims", input_ids.dim()));
  if (!position_ids.sizes().equals(input_ids.sizes()))
    throw InputError("model position_ids must have the shape of input_ids (B, T)");
  if (input_ids.size(1) > spec_.max_seq_len)
    throw InputError(fmt::format("sequence of {} tokens exceeds model.max_seq_len = {}",
                                 input_ids.size(1), spec_.max_seq_len));
  AttentionPlan plan;
  plan.hidden_only = hidden_only_;
  if (doc_ids.defined() && doc_ids.numel() > 0) {
    if (!doc_ids.sizes().equals(input_ids.sizes()))
      throw InputError("model doc_ids must be empty or have the shape of input_ids (B, T)");
    plan.mask = document_mask(doc_ids);
  }
  if (!adapters_ || !adapters_->spec().prefix)
    return spec_.family == ModelFamily::Gpt2 ? gpt2_forward(input_ids, position_ids, plan)
                                             : llama_forward(input_ids, position_ids, plan);
  // Prefix tuning (Note [prefix attention]).
  const AdapterSpec& a = adapters_->spec();
  const int64_t n = a.prefix_tokens, p = a.blocks * n, t = input_ids.size(1);
  if (t + n > spec_.max_seq_len)
    throw InputError(fmt::format("{} tokens after a prefix of {} exceed model.max_seq_len = {}", t,
                                 n, spec_.max_seq_len));
  plan.prefix = adapters_->fold_prefix()
                    .view({p, spec_.n_layers, 2, spec_.n_kv_heads, spec_.head_dim})
                    .permute({1, 2, 3, 0, 4});  // (L, 2, KV, P, D)
  const auto long_opts = input_ids.options().dtype(at::kLong);
  at::Tensor block = task_ids.defined() && task_ids.numel() > 0
                         ? task_ids.to(at::kLong)
                         : at::zeros(input_ids.sizes(), long_opts);
  if (a.blocks == 1) block = at::where(block.ge(0), at::zeros_like(block), block);
  auto slot_block = at::arange(p, long_opts).div(n, "floor");                   // (P)
  auto to_prefix = block.unsqueeze(-1).eq(slot_block.view({1, 1, p}));        // (B, T, P)
  auto own = plan.mask.defined()
                 ? plan.mask.squeeze(1)
                 : at::ones({t, t}, long_opts.dtype(at::kBool)).tril_().unsqueeze(0).expand(
                       {input_ids.size(0), t, t});
  plan.mask = at::cat({to_prefix, own}, -1).unsqueeze(1);  // (B, 1, T, P + T)
  plan.causal = false;
  const auto shifted = position_ids + n;
  return spec_.family == ModelFamily::Gpt2 ? gpt2_forward(input_ids, shifted, plan)
                                           : llama_forward(input_ids, shifted, plan);
}

torch::Tensor TransformerImpl::forward_hidden(const torch::Tensor& input_ids,
                                              const torch::Tensor& position_ids,
                                              const torch::Tensor& doc_ids,
                                              const torch::Tensor& task_ids) {
  hidden_only_ = true;
  try {
    torch::Tensor hidden = forward(input_ids, position_ids, doc_ids, task_ids);
    hidden_only_ = false;
    return hidden;
  } catch (...) {
    hidden_only_ = false;
    throw;
  }
}

const torch::Tensor& TransformerImpl::output_weight() const {
  if (lm_head_) return lm_head_->weight;
  return spec_.family == ModelFamily::Gpt2 ? gpt2_->wte->weight : llama_->embed_tokens->weight;
}

// Note [cached attention]
// The chunk's T queries sit at slots [L, L + T) of the cache (L = cache.length()); query i may
// attend to slot j when j <= L + i and the slot is valid (not left padding). Its own slot is
// always allowed, so a padding query never has an empty row (NaN on the CPU kernels); its output
// is never used. Without padding the two common cases need no mask tensor: the prompt (L = 0)
// is plain causal attention, one decoding step (T = 1) attends to every slot.
torch::Tensor TransformerImpl::forward_cached(const torch::Tensor& input_ids,
                                              const torch::Tensor& position_ids, KvCache& cache,
                                              bool last_only) {
  if (input_ids.dim() != 2 || !position_ids.sizes().equals(input_ids.sizes()))
    throw InputError("forward_cached: input_ids and position_ids must both be (B, T)");
  const int64_t b = input_ids.size(0), t = input_ids.size(1), l = cache.length();
  if (b != cache.batch() || cache.n_layers() != spec_.n_layers)
    throw InputError(fmt::format("forward_cached: a cache for {} rows and {} layers cannot serve "
                                 "{} rows of a {}-layer model",
                                 cache.batch(), cache.n_layers(), b, spec_.n_layers));
  if (l + t > cache.capacity())
    throw InputError(fmt::format("forward_cached: {} + {} tokens exceed the cache capacity {}", l,
                                 t, cache.capacity()));
  AttentionPlan plan;
  plan.cache = &cache;
  plan.last_only = last_only;
  const at::Tensor& valid = cache.key_valid();
  if (valid.defined() || (l > 0 && t > 1)) {
    const auto opts = input_ids.options().dtype(at::kLong);
    auto query_slot = at::arange(l, l + t, opts).unsqueeze(1);  // (T, 1)
    auto key_slot = at::arange(0, l + t, opts).unsqueeze(0);    // (1, S)
    auto allowed = key_slot.le(query_slot);                     // (T, S) causal
    if (valid.defined())
      allowed = allowed.unsqueeze(0).logical_and(valid.narrow(1, 0, l + t).unsqueeze(1))
                    .logical_or_(key_slot.eq(query_slot).unsqueeze(0));  // (B, T, S)
    else
      allowed = allowed.unsqueeze(0).expand({b, t, l + t});
    plan.mask = allowed.unsqueeze(1);  // (B, 1, T, S)
  } else {
    plan.causal = l == 0;  // the prompt: causal; one step (T = 1): every slot
  }
  // With a prefix adapter the cache starts with its n slots (prefill_prefix) and positions shift.
  const auto positions = adapters_ && adapters_->spec().prefix
                             ? position_ids + adapters_->spec().prefix_tokens
                             : position_ids;
  auto logits = spec_.family == ModelFamily::Gpt2 ? gpt2_forward(input_ids, positions, plan)
                                                  : llama_forward(input_ids, positions, plan);
  cache.advance(t);
  return logits;
}

torch::Tensor TransformerImpl::gpt2_forward(const torch::Tensor& input_ids,
                                            const torch::Tensor& position_ids,
                                            const AttentionPlan& plan) {
  const int64_t c = spec_.d_model;
  const auto& body = *gpt2_;
  auto x = embed(body.wte->weight, input_ids);  // (B, T, C)
  x = x + like(x, at::embedding(body.wpe->weight, position_ids));
  const bool training = is_training();
  for (size_t layer = 0; layer < body.blocks.size(); ++layer) {
    // Captures by value: a checkpointed block runs again in backward, after forward returned.
    auto run = [this, layer, plan, training](const std::vector<torch::Tensor>& in) {
      return gpt2_block(layer, in[0], in[1], plan, training);
    };
    const torch::Tensor prefix = plan.prefix.defined() ? plan.prefix[layer] : torch::Tensor();
    if (plan.cache == nullptr && checkpointing_.checkpoints(static_cast<int64_t>(layer)))
      x = checkpoint_block(run, {x, prefix}, block_leaves(*body.blocks[layer]));
    else
      x = run({x, prefix});
  }
  if (plan.last_only) x = x.narrow(1, x.size(1) - 1, 1);
  x = at::layer_norm(x, {c}, like(x, body.ln_f->weight), like(x, body.ln_f->bias),
                     spec_.norm_eps);
  if (plan.hidden_only) return x;                                       // (B, T, C)
  return at::linear(x, lm_head_ ? lm_head_->weight : body.wte->weight);  // (B, T, V)
}

torch::Tensor TransformerImpl::gpt2_block(size_t layer, const torch::Tensor& input,
                                          const torch::Tensor& prefix, const AttentionPlan& plan,
                                          bool training) {
  const int64_t c = spec_.d_model, h = spec_.n_heads, d = spec_.head_dim;
  const auto& block = gpt2_->blocks[layer];
  const auto& attn = *block->attn;
  const auto& mlp = *block->mlp;
  torch::Tensor x = input;
  // Conv1D weights are (in, out): .t() gives at::linear its (out, in) view, no copy.
  auto y = at::layer_norm(x, {c}, like(x, block->ln_1->weight), like(x, block->ln_1->bias),
                          spec_.norm_eps);
  auto qkv = project(y, *attn.c_attn, true, training).split(c, -1);
  auto k = split_heads(qkv[1], h, d), v = split_heads(qkv[2], h, d);
  if (plan.cache != nullptr)
    std::tie(k, v) = plan.cache->append(static_cast<int64_t>(layer), k, v);
  if (prefix.defined()) std::tie(k, v) = with_prefix(prefix, k, v);
  auto a = attend(split_heads(qkv[0], h, d), k, v, plan.mask, plan.causal,
                  plan.cache != nullptr);  // (B, H, T, D)
  x = x + project(merge_heads(a), *attn.c_proj, true, training);
  y = at::layer_norm(x, {c}, like(x, block->ln_2->weight), like(x, block->ln_2->bias),
                     spec_.norm_eps);
  y = at::gelu(project(y, *mlp.c_fc, true, training), "tanh");  // (B, T, F)
  return x + project(y, *mlp.c_proj, true, training);
}

std::pair<torch::Tensor, torch::Tensor> TransformerImpl::rope_cos_sin(
    const torch::Tensor& position_ids, at::ScalarType dtype) {
  if (!inv_freq_.defined() || inv_freq_.device() != position_ids.device()) {
    // As HF: 1 / theta^(2i/D) in fp32, computed on the CPU.
    const int64_t d = spec_.head_dim;
    auto exponents = at::arange(0, d, 2, at::kFloat) / static_cast<double>(d);
    inv_freq_ = at::reciprocal(at::pow(spec_.rope_theta, exponents)).to(position_ids.device());
  }
  auto freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // (B, T, D/2)
  auto angles = at::cat({freqs, freqs}, -1).unsqueeze(1);              // (B, 1, T, D)
  return {angles.cos().to(dtype), angles.sin().to(dtype)};
}

torch::Tensor TransformerImpl::llama_forward(const torch::Tensor& input_ids,
                                             const torch::Tensor& position_ids,
                                             const AttentionPlan& plan) {
  const auto& body = *llama_;
  auto x = embed(body.embed_tokens->weight, input_ids);  // (B, T, C)
  const auto [cos, sin] = rope_cos_sin(position_ids, x.scalar_type());
  const bool training = is_training();
  for (size_t layer = 0; layer < body.blocks.size(); ++layer) {
    // Captures by value: a checkpointed block runs again in backward, after forward returned.
    auto run = [this, layer, plan, training, cos = cos,
                sin = sin](const std::vector<torch::Tensor>& in) {
      return llama_block(layer, in[0], in[1], cos, sin, plan, training);
    };
    const torch::Tensor prefix = plan.prefix.defined() ? plan.prefix[layer] : torch::Tensor();
    if (plan.cache == nullptr && checkpointing_.checkpoints(static_cast<int64_t>(layer)))
      x = checkpoint_block(run, {x, prefix}, block_leaves(*body.blocks[layer]));
    else
      x = run({x, prefix});
  }
  if (plan.last_only) x = x.narrow(1, x.size(1) - 1, 1);
  x = rms_norm(x, body.norm->weight, spec_.norm_eps);
  if (plan.hidden_only) return x;                                                // (B, T, C)
  return at::linear(x, lm_head_ ? lm_head_->weight : body.embed_tokens->weight);  // (B, T, V)
}

torch::Tensor TransformerImpl::llama_block(size_t layer, const torch::Tensor& input,
                                           const torch::Tensor& prefix, const torch::Tensor& cos,
                                           const torch::Tensor& sin, const AttentionPlan& plan,
                                           bool training) {
  const int64_t h = spec_.n_heads, kv = spec_.n_kv_heads, d = spec_.head_dim;
  const double eps = spec_.norm_eps;
  const auto& block = llama_->blocks[layer];
  const auto& attn = *block->self_attn;
  const auto& mlp = *block->mlp;
  torch::Tensor x = input;
  auto y = rms_norm(x, block->input_layernorm->weight, eps);
  auto q = apply_rope(split_heads(project(y, *attn.q_proj, false, training), h, d), cos, sin);
  auto k = apply_rope(split_heads(project(y, *attn.k_proj, false, training), kv, d), cos, sin);
  auto v = split_heads(project(y, *attn.v_proj, false, training), kv, d);
  if (plan.cache != nullptr)
    std::tie(k, v) = plan.cache->append(static_cast<int64_t>(layer), k, v);
  if (prefix.defined()) std::tie(k, v) = with_prefix(prefix, k, v);
  auto a = attend(q, k, v, plan.mask, plan.causal, plan.cache != nullptr);  // (B, H, T, D)
  x = x + project(merge_heads(a), *attn.o_proj, false, training);
  y = rms_norm(x, block->post_attention_layernorm->weight, eps);
  auto gated = at::silu(project(y, *mlp.gate_proj, false, training)) *
               project(y, *mlp.up_proj, false, training);
  return x + project(gated, *mlp.down_proj, false, training);
}

}  // namespace pft
