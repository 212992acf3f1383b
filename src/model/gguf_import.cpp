// GGUF -> ModelSpec and weights (contract: model/gguf_import.h).
#include "model/gguf_import.h"

#include <torch/torch.h>

#include <chrono>
#include <map>
#include <set>

#include "core/error.h"
#include "core/format.h"
#include "data/gguf_tokenizer.h"

namespace pft {

namespace fs = std::filesystem;

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

ModelSpec llama_spec(const gguf::File& f, const std::string& a) {
  const auto key = [&](const char* k) { return fmt::format("{}.{}", a, k); };
  ModelSpec s;
  s.family = ModelFamily::Llama;
  s.d_model = f.get_int(key("embedding_length"));
  s.n_layers = f.get_int(key("block_count"));
  s.d_ff = f.get_int(key("feed_forward_length"));
  s.n_heads = f.get_int(key("attention.head_count"));
  s.n_kv_heads = f.get_int_opt(key("attention.head_count_kv")).value_or(s.n_heads);
  if (s.n_heads <= 0 || s.d_model <= 0 || s.d_model % s.n_heads != 0)
    f.fail(fmt::format("{} = {} is not a multiple of {} = {}", key("embedding_length"), s.d_model,
                       key("attention.head_count"), s.n_heads));
  s.head_dim = f.get_int_opt(key("attention.key_length")).value_or(s.d_model / s.n_heads);
  if (const auto vl = f.get_int_opt(key("attention.value_length")); vl && *vl != s.head_dim)
    f.fail(fmt::format("{} = {} differs from the key length {}; pft needs them equal",
                       key("attention.value_length"), *vl, s.head_dim));
  if (const auto rd = f.get_int_opt(key("rope.dimension_count")); rd && *rd != s.head_dim)
    f.fail(fmt::format("{} = {}: partial rotary embeddings are not supported (pft rotates all "
                       "{} dimensions of a head)",
                       key("rope.dimension_count"), *rd, s.head_dim));
  s.norm_eps = f.get_float(key("attention.layer_norm_rms_epsilon"));
  s.rope_theta = f.get_float_opt(key("rope.freq_base")).value_or(10000.0);
  s.max_seq_len = f.get_int(key("context_length"));
  if (const auto scaling = f.get_string_opt(key("rope.scaling.type"));
      scaling && *scaling != "none")
    f.fail(fmt::format("{} = `{}`: RoPE scaling is not supported", key("rope.scaling.type"),
                       *scaling));
  if (f.get_float_opt(key("rope.scaling.factor")).value_or(1.0) != 1.0 &&
      f.get_string_opt(key("rope.scaling.type")).value_or("") != "none")
    f.fail(fmt::format("{}: RoPE scaling is not supported", key("rope.scaling.factor")));
  if (f.find_tensor("rope_freqs.weight") != nullptr)
    f.fail("tensor `rope_freqs.weight` (Llama 3.1 RoPE frequency scaling) is not supported");
  if (f.get_int_opt(key("expert_count")).value_or(0) > 0)
    f.fail(fmt::format("{} = {}: mixture-of-experts models are not supported", key("expert_count"),
                       *f.get_int_opt(key("expert_count"))));
  return s;
}

ModelSpec gpt2_spec(const gguf::File& f) {
  ModelSpec s;
  s.family = ModelFamily::Gpt2;
  s.d_model = f.get_int("gpt2.embedding_length");
  s.n_layers = f.get_int("gpt2.block_count");
  s.d_ff = f.get_int_opt("gpt2.feed_forward_length").value_or(4 * s.d_model);
  s.n_heads = f.get_int("gpt2.attention.head_count");
  s.n_kv_heads = s.n_heads;
  if (s.n_heads <= 0 || s.d_model <= 0 || s.d_model % s.n_heads != 0)
    f.fail(fmt::format("gpt2.embedding_length = {} is not a multiple of "
                       "gpt2.attention.head_count = {}",
                       s.d_model, s.n_heads));
  s.head_dim = s.d_model / s.n_heads;
  s.norm_eps = f.get_float("gpt2.attention.layer_norm_epsilon");
  s.max_seq_len = f.get_int("gpt2.context_length");
  return s;
}

// How a stored tensor becomes a parameter.
enum class Transform { kCopy, kTranspose, kUnpermuteQ, kUnpermuteK };

struct Target {
  std::string param;  // pft's name
  Transform transform = Transform::kCopy;
};

// GGUF name -> (pft name, transform) for every tensor a model of `s` has.
std::map<std::string, Target> name_map(const ModelSpec& s) {
  std::map<std::string, Target> m;
  if (s.family == ModelFamily::Llama) {
    m["token_embd.weight"] = {"model.embed_tokens.weight"};
    for (int64_t i = 0; i < s.n_layers; ++i) {
      const std::string b = fmt::format("blk.{}.", i), p = fmt::format("model.layers.{}.", i);
      m[b + "attn_q.weight"] = {p + "self_attn.q_proj.weight", Transform::kUnpermuteQ};
      m[b + "attn_k.weight"] = {p + "self_attn.k_proj.weight", Transform::kUnpermuteK};
      m[b + "attn_v.weight"] = {p + "self_attn.v_proj.weight"};
      m[b + "attn_output.weight"] = {p + "self_attn.o_proj.weight"};
      m[b + "ffn_gate.weight"] = {p + "mlp.gate_proj.weight"};
      m[b + "ffn_up.weight"] = {p + "mlp.up_proj.weight"};
      m[b + "ffn_down.weight"] = {p + "mlp.down_proj.weight"};
      m[b + "attn_norm.weight"] = {p + "input_layernorm.weight"};
      m[b + "ffn_norm.weight"] = {p + "post_attention_layernorm.weight"};
    }
    m["output_norm.weight"] = {"model.norm.weight"};
  } else {
    m["token_embd.weight"] = {"transformer.wte.weight"};
    m["position_embd.weight"] = {"transformer.wpe.weight"};
    for (int64_t i = 0; i < s.n_layers; ++i) {
      const std::string b = fmt::format("blk.{}.", i), p = fmt::format("transformer.h.{}.", i);
      m[b + "attn_norm.weight"] = {p + "ln_1.weight"};
      m[b + "attn_norm.bias"] = {p + "ln_1.bias"};
      m[b + "attn_qkv.weight"] = {p + "attn.c_attn.weight", Transform::kTranspose};
      m[b + "attn_qkv.bias"] = {p + "attn.c_attn.bias"};
      m[b + "attn_output.weight"] = {p + "attn.c_proj.weight", Transform::kTranspose};
      m[b + "attn_output.bias"] = {p + "attn.c_proj.bias"};
      m[b + "ffn_norm.weight"] = {p + "ln_2.weight"};
      m[b + "ffn_norm.bias"] = {p + "ln_2.bias"};
      m[b + "ffn_up.weight"] = {p + "mlp.c_fc.weight", Transform::kTranspose};
      m[b + "ffn_up.bias"] = {p + "mlp.c_fc.bias"};
      m[b + "ffn_down.weight"] = {p + "mlp.c_proj.weight", Transform::kTranspose};
      m[b + "ffn_down.bias"] = {p + "mlp.c_proj.bias"};
    }
    m["output_norm.weight"] = {"transformer.ln_f.weight"};
    m["output_norm.bias"] = {"transformer.ln_f.bias"};
  }
  if (!s.tie_embeddings) m["output.weight"] = {"lm_head.weight"};
  return m;
}

// The stored (torch) shape of a tensor that becomes a parameter of shape `param` by `t`.
std::vector<int64_t> stored_shape(const std::vector<int64_t>& param, Transform t) {
  if (t == Transform::kTranspose && param.size() == 2) return {param[1], param[0]};
  return param;
}

// Note [GGUF Q/K permutation]: stored rows (head, D/2, 2) -> HF rows (head, 2, D/2).
at::Tensor unpermute(const at::Tensor& w, int64_t heads) {
  const int64_t rows = w.size(0), cols = w.size(1);
  return w.view({heads, rows / heads / 2, 2, cols}).transpose(1, 2).reshape({rows, cols});
}

}  // namespace

bool is_gguf_model(const fs::path& path) { return gguf::is_gguf_file(path); }

HfModelInfo read_gguf_model_info(const gguf::File& f) {
  HfModelInfo info;
  info.dir = f.path();
  const std::string arch = f.get_string("general.architecture");
  info.architecture = arch;
  if (arch == "llama") {
    info.spec = llama_spec(f, arch);
  } else if (arch == "gpt2") {
    info.spec = gpt2_spec(f);
  } else if (arch == "qwen2") {
    f.fail("general.architecture `qwen2` is not supported: its attention q/k/v projections "
           "have biases (blk.N.attn_q.bias, ...), which pft's Llama family does not compute. "
           "pft loads llama (SmolLM2, Llama 3) and gpt2 GGUF files");
  } else {
    f.fail(fmt::format("general.architecture `{}` is not supported; pft loads llama (SmolLM2, "
                       "Llama 3) and gpt2 GGUF files",
                       arch));
  }
  info.model_type = arch;
  info.spec.init_std = 0.02;
  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr || embd->ne.size() != 2)
    f.fail(fmt::format("missing tensor `token_embd.weight` (a 2-D token embedding), which a {} "
                       "model needs",
                       arch));
  info.spec.vocab_size = embd->ne[1];
  if (const auto v = f.get_int_opt(arch + ".vocab_size"); v && *v != info.spec.vocab_size)
    f.fail(fmt::format("{}.vocab_size = {} but token_embd.weight has {} rows", arch, *v,
                       info.spec.vocab_size));
  info.spec.tie_embeddings = f.find_tensor("output.weight") == nullptr;
  if (info.spec.n_kv_heads <= 0 || info.spec.n_heads % info.spec.n_kv_heads != 0)
    f.fail(fmt::format("{}.attention.head_count_kv = {} does not divide head_count = {}", arch,
                       info.spec.n_kv_heads, info.spec.n_heads));

  std::set<std::string> types;
  for (const gguf::TensorInfo& t : f.tensors()) types.insert(gguf::type_name(t.type));
  for (const auto& t : types) info.dtype += (info.dtype.empty() ? "" : "+") + t;

  if (gguf_has_tokenizer(f)) {
    GgufTokenizerInfo tok;
    const BpeTokenizerConfig config = read_gguf_tokenizer(f, &tok);
    info.has_tokenizer = true;
    info.prompt_prefix_ids = tok.prompt_prefix_ids;
    info.bos_token_id = tok.bos_id;
    info.pad_token_id = config.pad_id;
    if (config.eos_id >= 0) info.eos_token_ids.push_back(config.eos_id);
    info.chat_template = tok.chat_template;
  }
  return info;
}

HfModelInfo read_gguf_model_info(const fs::path& path) {
  const gguf::File f(path);
  return read_gguf_model_info(f);
}

HfLoadReport load_gguf_weights(TransformerImpl& model, const gguf::File& f) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelSpec& spec = model.spec();
  HfLoadReport report;
  report.files = 1;
  const std::string what =
      fmt::format("a {} model with {} layers, d_model {}, vocab {}", family_name(spec.family),
                  spec.n_layers, spec.d_model, spec.vocab_size);
  std::map<std::string, at::Tensor> params;
  for (const auto& item : model.named_parameters()) params[item.key()] = item.value();
  const std::map<std::string, Target> names = name_map(spec);

  // Pass 1: every tensor has a place with the right shape and a type pft converts, before any
  // weight is touched.
  struct Item {
    const gguf::TensorInfo* info;
    at::Tensor param;
    Transform transform;
  };
  std::vector<Item> plan;
  std::set<std::string> filled, dtypes;
  int64_t largest = 0;
  for (const gguf::TensorInfo& t : f.tensors()) {
    const auto it = names.find(t.name);
    if (it == names.end()) {
      std::string hint;
      if (t.name.ends_with(".bias"))
        hint = " (a bias, which pft's Llama family does not have)";
      f.fail(fmt::format("unexpected tensor `{}`{}: {} has no place for it", t.name, hint, what));
    }
    const auto p = params.find(it->second.param);
    PFT_ASSERT(p != params.end(), t.name);
    const std::vector<int64_t> want = stored_shape(p->second.sizes().vec(), it->second.transform);
    if (t.shape() != want)
      f.fail(fmt::format("tensor `{}` has shape {} (torch order), but {} needs {}", t.name,
                         shape_str(t.shape()), what, shape_str(want)));
    const auto traits = gguf::type_traits(t.type);
    if (!traits || !traits->dequantizable)
      f.fail(fmt::format(
          "tensor `{}` is stored as {}, which pft cannot dequantize (it reads {}). HINT: "
          "requantize the model to one of those with llama.cpp's llama-quantize",
          t.name, gguf::type_name(t.type), gguf::dequantizable_type_names()));
    dtypes.insert(traits->name);
    report.bytes += t.nbytes;
    largest = std::max(largest, t.numel);
    filled.insert(it->second.param);
    plan.push_back({&t, p->second, it->second.transform});
  }
  for (const auto& [gguf_name, target] : names)
    if (!filled.count(target.param))
      f.fail(fmt::format("missing tensor `{}`, which {} needs", gguf_name, what));

  // Pass 2: dequantize into one buffer, transform, copy (converting device).
  torch::NoGradGuard no_grad;
  std::vector<float> buffer(static_cast<size_t>(largest));
  for (const Item& item : plan) {
    f.dequantize(*item.info, buffer.data());
    at::Tensor w = at::from_blob(buffer.data(), item.info->shape(), at::kFloat);
    switch (item.transform) {
      case Transform::kCopy: break;
      case Transform::kTranspose: w = w.t(); break;
      case Transform::kUnpermuteQ: w = unpermute(w, spec.n_heads); break;
      case Transform::kUnpermuteK: w = unpermute(w, spec.n_kv_heads); break;
    }
    item.param.copy_(w);
  }
  report.tensors = static_cast<int64_t>(plan.size());
  for (const auto& d : dtypes) report.dtypes += (report.dtypes.empty() ? "" : "+") + d;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

HfLoadReport load_gguf_weights(TransformerImpl& model, const fs::path& path) {
  const gguf::File f(path);
  return load_gguf_weights(model, f);
}

}  // namespace pft
