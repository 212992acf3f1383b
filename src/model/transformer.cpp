// The decoder-only transformer (GPT-2 / Llama): module tree with Hugging Face names, forward,
// deterministic init and the parameter count. See transformer.h for the contract.
#include "model/transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <optional>
#include <string_view>
#include <tuple>

#include "core/error.h"
#include "core/format.h"
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
  Weights(std::vector<int64_t> weight_shape, int64_t bias_size, Init init) : init(init) {
    weight = register_parameter(
        "weight", init == Init::kOnes ? torch::ones(weight_shape) : torch::zeros(weight_shape));
    if (bias_size > 0) bias = register_parameter("bias", torch::zeros({bias_size}));
  }
  torch::Tensor weight;  // shape as given
  torch::Tensor bias;    // (bias_size) or undefined
  Init init;
};

std::shared_ptr<Weights> add(torch::nn::Module& parent, const std::string& name,
                             std::vector<int64_t> shape, int64_t bias_size, Init init) {
  return parent.register_module(name, std::make_shared<Weights>(std::move(shape), bias_size, init));
}

struct Gpt2Attention : torch::nn::Module {
  explicit Gpt2Attention(const ModelSpec& s) {
    const int64_t c = s.d_model;
    c_attn = add(*this, "c_attn", {c, 3 * c}, 3 * c, Init::kNormal);  // (C, 3C): [q | k | v]
    c_proj = add(*this, "c_proj", {c, c}, c, Init::kResidual);        // (C, C)
  }
  std::shared_ptr<Weights> c_attn, c_proj;
};

struct Gpt2Mlp : torch::nn::Module {
  explicit Gpt2Mlp(const ModelSpec& s) {
    c_fc = add(*this, "c_fc", {s.d_model, s.d_ff}, s.d_ff, Init::kNormal);           // (C, F)
    c_proj = add(*this, "c_proj", {s.d_ff, s.d_model}, s.d_model, Init::kResidual);  // (F, C)
  }
  std::shared_ptr<Weights> c_fc, c_proj;
};

struct Gpt2Block : torch::nn::Module {
  explicit Gpt2Block(const ModelSpec& s) {
    ln_1 = add(*this, "ln_1", {s.d_model}, s.d_model, Init::kOnes);
    attn = register_module("attn", std::make_shared<Gpt2Attention>(s));
    ln_2 = add(*this, "ln_2", {s.d_model}, s.d_model, Init::kOnes);
    mlp = register_module("mlp", std::make_shared<Gpt2Mlp>(s));
  }
  std::shared_ptr<Weights> ln_1, ln_2;
  std::shared_ptr<Gpt2Attention> attn;
  std::shared_ptr<Gpt2Mlp> mlp;
};

struct Gpt2Body : torch::nn::Module {  // HF GPT2Model, "transformer"
  explicit Gpt2Body(const ModelSpec& s) {
    wte = add(*this, "wte", {s.vocab_size, s.d_model}, 0, Init::kNormal);   // (V, C)
    wpe = add(*this, "wpe", {s.max_seq_len, s.d_model}, 0, Init::kNormal);  // (P, C)
    auto list = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < s.n_layers; ++i) {
      blocks.push_back(std::make_shared<Gpt2Block>(s));
      list->push_back(blocks.back());  // registered as "0", "1", ...
    }
    ln_f = add(*this, "ln_f", {s.d_model}, s.d_model, Init::kOnes);
  }
  std::shared_ptr<Weights> wte, wpe, ln_f;
  std::vector<std::shared_ptr<Gpt2Block>> blocks;
};

struct LlamaAttention : torch::nn::Module {  // "self_attn"
  explicit LlamaAttention(const ModelSpec& s) {
    const int64_t c = s.d_model, q = s.n_heads * s.head_dim, kv = s.n_kv_heads * s.head_dim;
    q_proj = add(*this, "q_proj", {q, c}, 0, Init::kNormal);    // (H*D, C)
    k_proj = add(*this, "k_proj", {kv, c}, 0, Init::kNormal);   // (KV*D, C)
    v_proj = add(*this, "v_proj", {kv, c}, 0, Init::kNormal);   // (KV*D, C)
    o_proj = add(*this, "o_proj", {c, q}, 0, Init::kResidual);  // (C, H*D)
  }
  std::shared_ptr<Weights> q_proj, k_proj, v_proj, o_proj;
};

struct LlamaMlp : torch::nn::Module {
  explicit LlamaMlp(const ModelSpec& s) {
    gate_proj = add(*this, "gate_proj", {s.d_ff, s.d_model}, 0, Init::kNormal);    // (F, C)
    up_proj = add(*this, "up_proj", {s.d_ff, s.d_model}, 0, Init::kNormal);        // (F, C)
    down_proj = add(*this, "down_proj", {s.d_model, s.d_ff}, 0, Init::kResidual);  // (C, F)
  }
  std::shared_ptr<Weights> gate_proj, up_proj, down_proj;
};

struct LlamaBlock : torch::nn::Module {
  explicit LlamaBlock(const ModelSpec& s) {
    self_attn = register_module("self_attn", std::make_shared<LlamaAttention>(s));
    mlp = register_module("mlp", std::make_shared<LlamaMlp>(s));
    input_layernorm = add(*this, "input_layernorm", {s.d_model}, 0, Init::kOnes);
    post_attention_layernorm = add(*this, "post_attention_layernorm", {s.d_model}, 0, Init::kOnes);
  }
  std::shared_ptr<LlamaAttention> self_attn;
  std::shared_ptr<LlamaMlp> mlp;
  std::shared_ptr<Weights> input_layernorm, post_attention_layernorm;
};

struct LlamaBody : torch::nn::Module {  // HF LlamaModel, "model"
  explicit LlamaBody(const ModelSpec& s) {
    embed_tokens = add(*this, "embed_tokens", {s.vocab_size, s.d_model}, 0, Init::kNormal);
    auto list = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < s.n_layers; ++i) {
      blocks.push_back(std::make_shared<LlamaBlock>(s));
      list->push_back(blocks.back());
    }
    norm = add(*this, "norm", {s.d_model}, 0, Init::kOnes);
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
  check_spec(s);
  return s;
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
        detail::add(*this, "lm_head", {spec_.vocab_size, spec_.d_model}, 0, detail::Init::kNormal);
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
  auto gen = at::make_generator<at::CPUGeneratorImpl>(splitmix64(seed ^ splitmix64(fnv1a(name))));
  if (p.is_cpu() && p.scalar_type() == at::kFloat && p.is_contiguous()) {
    p.normal_(0.0, std, gen);
  } else {
    p.copy_(at::empty(p.sizes(), at::kFloat).normal_(0.0, std, gen));
  }
}

}  // namespace

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

// q (B, H, T, D), k/v (B, KV, S, D), mask (B, 1, T, S) bool or undefined -> (B, H, T, D).
// Without a mask: causal (S == T) when `causal`, else every key (one decoding step).
torch::Tensor attend(const torch::Tensor& q, torch::Tensor k, torch::Tensor v,
                     const torch::Tensor& mask, bool causal = true) {
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

}  // namespace

torch::Tensor TransformerImpl::forward(const torch::Tensor& input_ids,
                                       const torch::Tensor& position_ids,
                                       const torch::Tensor& doc_ids) {
  if (input_ids.dim() != 2)
    throw InputError(fmt::format("model input_ids must be (B, T), got {} dims", input_ids.dim()));
  if (!position_ids.sizes().equals(input_ids.sizes()))
    throw InputError("model position_ids must have the shape of input_ids (B, T)");
  if (input_ids.size(1) > spec_.max_seq_len)
    throw InputError(fmt::format("sequence of {} tokens exceeds model.max_seq_len = {}",
                                 input_ids.size(1), spec_.max_seq_len));
  AttentionPlan plan;
  if (doc_ids.defined() && doc_ids.numel() > 0) {
    if (!doc_ids.sizes().equals(input_ids.sizes()))
      throw InputError("model doc_ids must be empty or have the shape of input_ids (B, T)");
    plan.mask = document_mask(doc_ids);
  }
  return spec_.family == ModelFamily::Gpt2 ? gpt2_forward(input_ids, position_ids, plan)
                                           : llama_forward(input_ids, position_ids, plan);
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
  auto logits = spec_.family == ModelFamily::Gpt2 ? gpt2_forward(input_ids, position_ids, plan)
                                                  : llama_forward(input_ids, position_ids, plan);
  cache.advance(t);
  return logits;
}

torch::Tensor TransformerImpl::gpt2_forward(const torch::Tensor& input_ids,
                                            const torch::Tensor& position_ids,
                                            const AttentionPlan& plan) {
  const int64_t c = spec_.d_model, h = spec_.n_heads, d = spec_.head_dim;
  const auto& body = *gpt2_;
  auto x = at::embedding(body.wte->weight, input_ids) +
           at::embedding(body.wpe->weight, position_ids);  // (B, T, C)
  for (size_t layer = 0; layer < body.blocks.size(); ++layer) {
    const auto& block = body.blocks[layer];
    const auto& attn = *block->attn;
    const auto& mlp = *block->mlp;
    // Conv1D weights are (in, out): .t() gives at::linear its (out, in) view, no copy.
    auto y = at::layer_norm(x, {c}, block->ln_1->weight, block->ln_1->bias, spec_.norm_eps);
    auto qkv = at::linear(y, attn.c_attn->weight.t(), attn.c_attn->bias).split(c, -1);
    auto k = split_heads(qkv[1], h, d), v = split_heads(qkv[2], h, d);
    if (plan.cache != nullptr)
      std::tie(k, v) = plan.cache->append(static_cast<int64_t>(layer), k, v);
    auto a = attend(split_heads(qkv[0], h, d), k, v, plan.mask, plan.causal);  // (B, H, T, D)
    x = x + at::linear(merge_heads(a), attn.c_proj->weight.t(), attn.c_proj->bias);
    y = at::layer_norm(x, {c}, block->ln_2->weight, block->ln_2->bias, spec_.norm_eps);
    y = at::gelu(at::linear(y, mlp.c_fc->weight.t(), mlp.c_fc->bias), "tanh");  // (B, T, F)
    x = x + at::linear(y, mlp.c_proj->weight.t(), mlp.c_proj->bias);
  }
  if (plan.last_only) x = x.narrow(1, x.size(1) - 1, 1);
  x = at::layer_norm(x, {c}, body.ln_f->weight, body.ln_f->bias, spec_.norm_eps);
  return at::linear(x, lm_head_ ? lm_head_->weight : body.wte->weight);  // (B, T, V)
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
  const int64_t h = spec_.n_heads, kv = spec_.n_kv_heads, d = spec_.head_dim;
  const double eps = spec_.norm_eps;
  const auto& body = *llama_;
  auto x = at::embedding(body.embed_tokens->weight, input_ids);  // (B, T, C)
  const auto [cos, sin] = rope_cos_sin(position_ids, x.scalar_type());
  for (size_t layer = 0; layer < body.blocks.size(); ++layer) {
    const auto& block = body.blocks[layer];
    const auto& attn = *block->self_attn;
    const auto& mlp = *block->mlp;
    auto y = rms_norm(x, block->input_layernorm->weight, eps);
    auto q = apply_rope(split_heads(at::linear(y, attn.q_proj->weight), h, d), cos, sin);
    auto k = apply_rope(split_heads(at::linear(y, attn.k_proj->weight), kv, d), cos, sin);
    auto v = split_heads(at::linear(y, attn.v_proj->weight), kv, d);
    if (plan.cache != nullptr)
      std::tie(k, v) = plan.cache->append(static_cast<int64_t>(layer), k, v);
    x = x + at::linear(merge_heads(attend(q, k, v, plan.mask, plan.causal)), attn.o_proj->weight);
    y = rms_norm(x, block->post_attention_layernorm->weight, eps);
    auto gated =
        at::silu(at::linear(y, mlp.gate_proj->weight)) * at::linear(y, mlp.up_proj->weight);
    x = x + at::linear(gated, mlp.down_proj->weight);
  }
  if (plan.last_only) x = x.narrow(1, x.size(1) - 1, 1);
  x = rms_norm(x, body.norm->weight, eps);
  return at::linear(x, lm_head_ ? lm_head_->weight : body.embed_tokens->weight);  // (B, T, V)
}

}  // namespace pft
