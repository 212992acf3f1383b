// Hugging Face model directories -> pft: config.json, weights, generation ids. See hf_import.h.
#include "model/hf_import.h"

#include <torch/types.h>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/signals.h"
#include "model/gguf_import.h"
#include "model/known_models.h"
#include "model/safetensors.h"

namespace pft {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// ---- JSON helpers --------------------------------------------------------------------------

json::value read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = std::move(ss).str();
  json::parser parser;
  boost::system::error_code ec;
  const size_t consumed = parser.write(text.data(), text.size(), ec);
  if (ec) {
    const size_t at = std::min(consumed, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(at), '\n');
    throw InputError(fmt::format("{}:{}: not valid JSON ({})", path.string(), line, ec.message()));
  }
  json::value v = parser.release();
  if (!v.is_object()) throw InputError(fmt::format("{}: expected a JSON object", path.string()));
  return v;
}

// Typed access to one config file's keys; every error names the file and the key.
class JsonFields {
 public:
  JsonFields(const json::object& obj, fs::path file) : obj_(obj), file_(std::move(file)) {}

  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    throw InputError(fmt::format("{}: \"{}\": {}", file_.string(), key, what));
  }
  // Absent and null both count as absent (HF writes null for "use the default").
  const json::value* get(std::string_view key) const {
    const json::value* v = obj_.if_contains(key);
    return v == nullptr || v->is_null() ? nullptr : v;
  }
  int64_t integer(std::string_view key, int64_t fallback) const {
    const json::value* v = get(key);
    if (v == nullptr) return fallback;
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(INT64_MAX))
      return static_cast<int64_t>(v->as_uint64());
    fail(key, fmt::format("expected an integer, found {}", json::serialize(*v)));
  }
  int64_t positive(std::string_view key, int64_t fallback) const {
    const int64_t n = integer(key, fallback);
    if (n <= 0) fail(key, fmt::format("must be positive, got {}", n));
    return n;
  }
  double number(std::string_view key, double fallback) const {
    const json::value* v = get(key);
    if (v == nullptr) return fallback;
    if (v->is_number()) return v->to_number<double>();
    fail(key, fmt::format("expected a number, found {}", json::serialize(*v)));
  }
  bool boolean(std::string_view key, bool fallback) const {
    const json::value* v = get(key);
    if (v == nullptr) return fallback;
    if (v->is_bool()) return v->as_bool();
    fail(key, fmt::format("expected true or false, found {}", json::serialize(*v)));
  }
  std::string string(std::string_view key, const std::string& fallback) const {
    const json::value* v = get(key);
    if (v == nullptr) return fallback;
    if (v->is_string()) return std::string(v->as_string());
    fail(key, fmt::format("expected a string, found {}", json::serialize(*v)));
  }
  // An id or a list of ids (eos_token_id); empty when absent.
  std::vector<int32_t> ids(std::string_view key) const {
    const json::value* v = get(key);
    std::vector<int32_t> out;
    if (v == nullptr) return out;
    const auto one = [&](const json::value& x) {
      if (!x.is_int64() || x.as_int64() < 0 || x.as_int64() > INT32_MAX)
        fail(key, fmt::format("expected a token id, found {}", json::serialize(x)));
      out.push_back(static_cast<int32_t>(x.as_int64()));
    };
    if (v->is_array()) {
      for (const auto& x : v->as_array()) one(x);
    } else {
      one(*v);
    }
    return out;
  }
  std::optional<int32_t> id(std::string_view key) const {
    const auto all = ids(key);
    if (all.empty()) return std::nullopt;
    return all.front();
  }
  const fs::path& file() const { return file_; }

 private:
  const json::object& obj_;
  fs::path file_;
};

// ---- config.json -> ModelSpec --------------------------------------------------------------

ModelSpec gpt2_spec(const JsonFields& c) {
  ModelSpec s;
  s.family = ModelFamily::Gpt2;
  s.vocab_size = c.positive("vocab_size", 50257);
  s.d_model = c.positive("n_embd", 768);
  s.n_layers = c.positive("n_layer", 12);
  s.n_heads = c.positive("n_head", 12);
  s.n_kv_heads = s.n_heads;
  if (s.d_model % s.n_heads != 0)
    c.fail("n_head", fmt::format("{} heads do not divide n_embd = {}", s.n_heads, s.d_model));
  s.head_dim = s.d_model / s.n_heads;
  s.d_ff = c.positive("n_inner", 4 * s.d_model);
  s.max_seq_len = c.positive("n_positions", c.positive("n_ctx", 1024));
  s.norm_eps = c.number("layer_norm_epsilon", 1e-5);
  s.tie_embeddings = c.boolean("tie_word_embeddings", true);
  s.init_std = c.number("initializer_range", 0.02);
  const std::string act = c.string("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh")
    c.fail("activation_function",
           fmt::format("`{}` is not supported; pft's GPT-2 uses the tanh GELU (gelu_new)", act));
  if (!c.boolean("scale_attn_weights", true))
    c.fail("scale_attn_weights", "false is not supported (pft scales by 1/sqrt(head_dim))");
  if (c.boolean("scale_attn_by_inverse_layer_idx", false))
    c.fail("scale_attn_by_inverse_layer_idx", "true is not supported");
  if (c.boolean("add_cross_attention", false))
    c.fail("add_cross_attention", "cross-attention is not supported");
  return s;
}

// RoPE settings: transformers >= 5 writes rope_parameters {rope_type, rope_theta}; older files
// write rope_theta and rope_scaling (null or {type|rope_type, ...}).
double llama_rope_theta(const JsonFields& c) {
  double theta = c.number("rope_theta", 10000.0);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const json::value* v = c.get(key);
    if (v == nullptr) continue;
    if (!v->is_object()) c.fail(key, "expected an object or null");
    const JsonFields rope(v->as_object(), c.file());
    const std::string type = rope.string("rope_type", rope.string("type", "default"));
    if (type != "default")
      c.fail(key, fmt::format("RoPE scaling `{}` is not supported (pft implements plain RoPE, "
                              "rope_type default)",
                              type));
    theta = rope.number("rope_theta", theta);
  }
  if (theta <= 0) c.fail("rope_theta", "must be positive");
  return theta;
}

ModelSpec llama_spec(const JsonFields& c) {
  ModelSpec s;
  s.family = ModelFamily::Llama;
  s.vocab_size = c.positive("vocab_size", 32000);
  s.d_model = c.positive("hidden_size", 4096);
  s.d_ff = c.positive("intermediate_size", 11008);
  s.n_layers = c.positive("num_hidden_layers", 32);
  s.n_heads = c.positive("num_attention_heads", 32);
  s.n_kv_heads = c.positive("num_key_value_heads", s.n_heads);
  if (s.n_heads % s.n_kv_heads != 0)
    c.fail("num_key_value_heads", fmt::format("{} key/value heads do not divide "
                                              "num_attention_heads = {}",
                                              s.n_kv_heads, s.n_heads));
  if (c.get("head_dim") == nullptr && s.d_model % s.n_heads != 0)
    c.fail("num_attention_heads",
           fmt::format("{} heads do not divide hidden_size = {}", s.n_heads, s.d_model));
  s.head_dim = c.positive("head_dim", s.d_model / s.n_heads);
  if (s.head_dim % 2 != 0) c.fail("head_dim", "RoPE needs an even head dimension");
  s.max_seq_len = c.positive("max_position_embeddings", 2048);
  s.norm_eps = c.number("rms_norm_eps", 1e-6);
  s.rope_theta = llama_rope_theta(c);
  s.tie_embeddings = c.boolean("tie_word_embeddings", false);
  s.init_std = c.number("initializer_range", 0.02);
  const std::string act = c.string("hidden_act", "silu");
  if (act != "silu") c.fail("hidden_act", fmt::format("`{}` is not supported (silu only)", act));
  if (c.boolean("attention_bias", false))
    c.fail("attention_bias", "attention biases are not supported");
  if (c.boolean("mlp_bias", false)) c.fail("mlp_bias", "MLP biases are not supported");
  return s;
}

}  // namespace

// Leading special tokens of tokenizer.json's TemplateProcessing (alone or inside a Sequence).
std::vector<int32_t> tokenizer_prompt_prefix(const fs::path& tokenizer_json) {
  std::vector<int32_t> out;
  const json::value root = read_json(tokenizer_json);
  const json::value* pp = root.as_object().if_contains("post_processor");
  if (pp == nullptr || !pp->is_object()) return out;
  std::vector<const json::object*> candidates{&pp->as_object()};
  if (const json::value* list = pp->as_object().if_contains("processors"); list && list->is_array())
    for (const auto& p : list->as_array())
      if (p.is_object()) candidates.push_back(&p.as_object());
  for (const json::object* p : candidates) {
    const json::value* type = p->if_contains("type");
    if (type == nullptr || !type->is_string() || type->as_string() != "TemplateProcessing")
      continue;
    const json::value* single = p->if_contains("single");
    const json::value* specials = p->if_contains("special_tokens");
    if (single == nullptr || !single->is_array() || specials == nullptr || !specials->is_object())
      continue;
    for (const auto& piece : single->as_array()) {
      const json::value* tok =
          piece.is_object() ? piece.as_object().if_contains("SpecialToken") : nullptr;
      if (tok == nullptr || !tok->is_object()) break;  // the text ($A) comes next
      const json::value* id = tok->as_object().if_contains("id");
      if (id == nullptr || !id->is_string()) break;
      const json::value* entry = specials->as_object().if_contains(id->as_string());
      const json::value* ids =
          entry != nullptr && entry->is_object() ? entry->as_object().if_contains("ids") : nullptr;
      if (ids == nullptr || !ids->is_array())
        throw InputError(fmt::format("{}: post_processor names special token `{}` without ids",
                                     tokenizer_json.string(), std::string(id->as_string())));
      for (const auto& x : ids->as_array())
        if (x.is_int64()) out.push_back(static_cast<int32_t>(x.as_int64()));
    }
    break;
  }
  return out;
}

namespace {

std::string shape_str(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", shape[i]);
  return s + "]";
}

// Tensors in checkpoints that are not parameters and carry nothing pft needs.
bool is_skippable_buffer(const std::string& name) {
  const auto ends_with = [&](std::string_view suffix) { return name.ends_with(suffix); };
  return ends_with(".attn.bias") || ends_with(".attn.masked_bias") ||
         ends_with(".rotary_emb.inv_freq");
}

}  // namespace

// ---- Public --------------------------------------------------------------------------------

HfModelInfo read_hf_model_info(const fs::path& spec) {
  const fs::path dir = resolve_model_path(spec.string());
  if (is_gguf_model(dir)) return read_gguf_model_info(dir);
  if (!fs::is_directory(dir))
    throw InputError(
        fmt::format("{}: not a directory or a GGUF file; expected a Hugging Face model directory "
                    "(config.json + model.safetensors), a .gguf file or a known model name ({})",
                    dir.string(), known_model_names()));
  const fs::path config_file = dir / "config.json";
  if (!fs::exists(config_file))
    throw InputError(
        fmt::format("{}: no config.json; expected a Hugging Face model directory "
                    "(config.json + model.safetensors)",
                    dir.string()));
  const json::value root = read_json(config_file);
  const JsonFields c(root.as_object(), config_file);
  HfModelInfo info;
  info.dir = dir;
  info.model_type = c.string("model_type", "");
  if (const json::value* a = c.get("architectures");
      a != nullptr && a->is_array() && !a->as_array().empty() && a->as_array()[0].is_string())
    info.architecture = std::string(a->as_array()[0].as_string());
  info.dtype = c.string("dtype", c.string("torch_dtype", ""));
  if (info.model_type == "gpt2") {
    info.spec = gpt2_spec(c);
  } else if (info.model_type == "llama") {
    info.spec = llama_spec(c);
  } else {
    c.fail("model_type",
           fmt::format("`{}` is not supported; pft loads gpt2 and llama models", info.model_type));
  }
  info.eos_token_ids = c.ids("eos_token_id");
  info.bos_token_id = c.id("bos_token_id");
  info.pad_token_id = c.id("pad_token_id");
  const fs::path gen_file = dir / "generation_config.json";
  if (fs::exists(gen_file)) {
    const json::value gen = read_json(gen_file);
    const JsonFields g(gen.as_object(), gen_file);
    if (g.get("eos_token_id") != nullptr) info.eos_token_ids = g.ids("eos_token_id");
    if (g.get("bos_token_id") != nullptr) info.bos_token_id = g.id("bos_token_id");
    if (g.get("pad_token_id") != nullptr) info.pad_token_id = g.id("pad_token_id");
  }
  const fs::path tok = dir / "tokenizer.json";
  info.has_tokenizer =
      fs::exists(tok) || (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"));
  if (fs::exists(tok)) info.prompt_prefix_ids = tokenizer_prompt_prefix(tok);
  if (const fs::path jinja = dir / "chat_template.jinja"; fs::exists(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    info.chat_template = std::move(ss).str();
  } else if (const fs::path tc = dir / "tokenizer_config.json"; fs::exists(tc)) {
    const json::value v = read_json(tc);
    if (const json::value* t = v.as_object().if_contains("chat_template"); t && t->is_string())
      info.chat_template = std::string(t->as_string());
  }
  return info;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> hf_parameter_layout(const ModelSpec& s) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const int64_t c = s.d_model, f = s.d_ff, v = s.vocab_size;
  if (s.family == ModelFamily::Gpt2) {
    out.push_back({"transformer.wte.weight", {v, c}});
    out.push_back({"transformer.wpe.weight", {s.max_seq_len, c}});
    for (int64_t i = 0; i < s.n_layers; ++i) {
      const std::string p = fmt::format("transformer.h.{}.", i);
      out.push_back({p + "ln_1.weight", {c}});
      out.push_back({p + "ln_1.bias", {c}});
      out.push_back({p + "attn.c_attn.weight", {c, 3 * c}});
      out.push_back({p + "attn.c_attn.bias", {3 * c}});
      out.push_back({p + "attn.c_proj.weight", {c, c}});
      out.push_back({p + "attn.c_proj.bias", {c}});
      out.push_back({p + "ln_2.weight", {c}});
      out.push_back({p + "ln_2.bias", {c}});
      out.push_back({p + "mlp.c_fc.weight", {c, f}});
      out.push_back({p + "mlp.c_fc.bias", {f}});
      out.push_back({p + "mlp.c_proj.weight", {f, c}});
      out.push_back({p + "mlp.c_proj.bias", {c}});
    }
    out.push_back({"transformer.ln_f.weight", {c}});
    out.push_back({"transformer.ln_f.bias", {c}});
  } else {
    const int64_t q = s.n_heads * s.head_dim, kv = s.n_kv_heads * s.head_dim;
    out.push_back({"model.embed_tokens.weight", {v, c}});
    for (int64_t i = 0; i < s.n_layers; ++i) {
      const std::string p = fmt::format("model.layers.{}.", i);
      out.push_back({p + "self_attn.q_proj.weight", {q, c}});
      out.push_back({p + "self_attn.k_proj.weight", {kv, c}});
      out.push_back({p + "self_attn.v_proj.weight", {kv, c}});
      out.push_back({p + "self_attn.o_proj.weight", {c, q}});
      out.push_back({p + "mlp.gate_proj.weight", {f, c}});
      out.push_back({p + "mlp.up_proj.weight", {f, c}});
      out.push_back({p + "mlp.down_proj.weight", {c, f}});
      out.push_back({p + "input_layernorm.weight", {c}});
      out.push_back({p + "post_attention_layernorm.weight", {c}});
    }
    out.push_back({"model.norm.weight", {c}});
  }
  if (!s.tie_embeddings) out.push_back({"lm_head.weight", {v, c}});
  return out;
}

HfLoadReport load_hf_weights(TransformerImpl& model, const fs::path& path) {
  const fs::path dir = resolve_model_path(path.string());
  if (is_gguf_model(dir)) return load_gguf_weights(model, dir);
  const auto t0 = std::chrono::steady_clock::now();
  const SafetensorsCheckpoint ckpt(dir);
  const ModelSpec& spec = model.spec();
  HfLoadReport report;
  report.files = ckpt.files().size();

  // Checkpoints of the base model (GPT2Model / LlamaModel) lack the body's prefix.
  const std::string prefix = spec.family == ModelFamily::Gpt2 ? "transformer." : "model.";
  const std::string embed = spec.family == ModelFamily::Gpt2 ? "wte.weight" : "embed_tokens.weight";
  const bool strip = !ckpt.contains(prefix + embed) && ckpt.contains(embed);
  const auto stored_name = [&](const std::string& name) {
    return strip && name.starts_with(prefix) ? name.substr(prefix.size()) : name;
  };
  const std::string what =
      fmt::format("a {} model with {} layers, d_model {}, vocab {} (config.json)",
                  family_name(spec.family), spec.n_layers, spec.d_model, spec.vocab_size);

  // Pass 1: names, shapes and dtypes of everything, before any weight is touched.
  std::set<std::string> used;
  std::set<std::string> dtypes;
  std::vector<std::pair<at::Tensor, std::string>> plan;  // (parameter, stored name)
  for (const auto& item : model.named_parameters()) {
    const std::string src = stored_name(item.key());
    const SafetensorsEntry* e = ckpt.find(src);
    if (e == nullptr) {
      std::string hint;
      if (item.key() == "lm_head.weight")
        hint =
            " HINT: config.json says tie_word_embeddings: false; a tied model (input embedding "
            "reused as the head) must say true";
      throw InputError(
          fmt::format("{}: missing tensor `{}`, which {} needs.{}", dir.string(), src, what, hint));
    }
    const at::Tensor& p = item.value();
    if (!p.sizes().equals(e->shape)) {
      std::string hint;
      if (e->shape.size() == 2 && p.dim() == 2 && e->shape[0] == p.size(1) &&
          e->shape[1] == p.size(0))
        hint = spec.family == ModelFamily::Gpt2
                   ? " (transposed: GPT-2 stores Conv1D weights as (in, out); this looks like an "
                     "nn.Linear (out, in) export)"
                   : " (transposed)";
      throw InputError(fmt::format("{}: tensor `{}` has shape {}, but {} needs {}{}",
                                   ckpt.file_of(src).string(), src, shape_str(e->shape), what,
                                   shape_str(p.sizes()), hint));
    }
    if (!at::isFloatingType(e->scalar_type) || at::elementSize(e->scalar_type) < 2)
      throw InputError(
          fmt::format("{}: tensor `{}` is stored as {}; pft loads F32, F16, BF16 or "
                      "F64 weights",
                      ckpt.file_of(src).string(), src, e->dtype));
    used.insert(src);
    dtypes.insert(e->dtype);
    report.bytes += e->end - e->begin;
    plan.emplace_back(p, src);
  }
  for (const std::string& name : ckpt.names()) {
    if (used.count(name)) continue;
    if ((spec.tie_embeddings && name == "lm_head.weight") || is_skippable_buffer(name)) {
      report.skipped.push_back(name);
      continue;
    }
    throw InputError(
        fmt::format("{}: unexpected tensor `{}`: {} has no such parameter. HINT: "
                    "does config.json belong to these weights?",
                    ckpt.file_of(name).string(), name, what));
  }

  // Pass 2: copy (converting dtype and device).
  torch::NoGradGuard no_grad;
  for (auto& [param, src] : plan) {
    preemption_check("loading the pretrained weights");  // core/signals.h
    param.copy_(ckpt.tensor(src));
  }
  report.tensors = static_cast<int64_t>(plan.size());
  for (const auto& d : dtypes) report.dtypes += (report.dtypes.empty() ? "" : "+") + d;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

Transformer load_hf_model(const fs::path& dir, HfModelInfo* info, HfLoadReport* report) {
  HfModelInfo local = read_hf_model_info(dir);
  Transformer model(local.spec);
  HfLoadReport r = load_hf_weights(*model, dir);
  if (info != nullptr) *info = std::move(local);
  if (report != nullptr) *report = std::move(r);
  return model;
}

// ---- Training from a pretrained model -------------------------------------------------------

namespace {

[[noreturn]] void fail_pretrained(const Config& c, const std::string& what) {
  config::fail(c.source_of("model.from_pretrained"), "model.from_pretrained", what);
}

}  // namespace

void apply_pretrained_architecture(Config& c) {
  if (c.model.from_pretrained.empty()) return;
  fs::path resolved;
  HfModelInfo info;
  try {
    resolved = resolve_model_path(c.model.from_pretrained);
    info = read_hf_model_info(resolved);
  } catch (const InputError& e) {
    fail_pretrained(c, e.what());
  }
  const ModelSpec& s = info.spec;
  const std::string dir = resolved.string();
  if (s.head_dim * s.n_heads != s.d_model)
    fail_pretrained(c, fmt::format("{}: head_dim {} is not hidden_size / num_attention_heads "
                                   "({} / {}); training such a model is not supported yet "
                                   "(pft generate runs it)",
                                   dir, s.head_dim, s.d_model, s.n_heads));
  ModelConfig& m = c.model;
  // Each key: the value config.json implies; a key the config sets itself must agree.
  const auto take = [&](const char* key, auto& field, auto value) {
    const std::string path = fmt::format("model.{}", key);
    // n_kv_heads / d_ff: 0 means "derive it", which never conflicts.
    bool derived = false;
    if constexpr (std::is_same_v<std::decay_t<decltype(field)>, int64_t>)
      derived = (path == "model.n_kv_heads" || path == "model.d_ff") && field == 0;
    if (c.sources.count(path) && !derived && field != value)
      config::fail(c.source_of(path), path,
                   fmt::format("{} conflicts with model.from_pretrained {}, which gives {}; "
                               "remove the key (the pretrained model decides it)",
                               field, dir, value));
    field = value;
  };
  take("family", m.family, family_name(s.family));
  take("vocab_size", m.vocab_size, s.vocab_size);
  take("d_model", m.d_model, s.d_model);
  take("n_layers", m.n_layers, s.n_layers);
  take("n_heads", m.n_heads, s.n_heads);
  take("n_kv_heads", m.n_kv_heads, s.n_kv_heads);
  take("d_ff", m.d_ff, s.d_ff);
  take("max_seq_len", m.max_seq_len, s.max_seq_len);
  take("norm_eps", m.norm_eps, s.norm_eps);
  if (s.family == ModelFamily::Llama) take("rope_theta", m.rope_theta, s.rope_theta);
  take("tie_embeddings", m.tie_embeddings, s.tie_embeddings);
  m.init_std = s.init_std;
  if (c.data.seq_len > m.max_seq_len)
    config::fail(c.source_of("data.seq_len"), "data.seq_len",
                 fmt::format("{} is longer than the {} positions of model.from_pretrained {}",
                             c.data.seq_len, m.max_seq_len, dir));
  if (!c.sources.count("data.tokenizer") && info.has_tokenizer) c.data.tokenizer = dir;
}

void load_pretrained_weights(TransformerImpl& model, const Config& c) {
  const std::string& dir = c.model.from_pretrained;
  if (dir.empty()) return;
  HfLoadReport r;
  try {
    r = load_hf_weights(model, dir);
  } catch (const InputError& e) {
    fail_pretrained(c, e.what());
  }
  log::info("model.from_pretrained: {} tensors ({} {:.1f} MB, {} file(s)) from {} in {:.2f} s{}",
            r.tensors, r.dtypes, static_cast<double>(r.bytes) / 1e6, r.files, dir, r.seconds,
            r.skipped.empty() ? "" : fmt::format("; skipped {}", fmt::join(r.skipped, ", ")));
}

}  // namespace pft
