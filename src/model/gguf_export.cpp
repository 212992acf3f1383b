// pft -> GGUF (contract: model/gguf_export.h).
#include "model/gguf_export.h"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <c10/util/Half.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/format.h"
#include "core/gguf.h"
#include "core/logging.h"
#include "data/bpe_tokenizer.h"
#include "data/tokenizer_files.h"
#include "model/adapters.h"
#include "model/gguf_writer.h"
#include "model/hf_import.h"

namespace pft {

namespace fs = std::filesystem;
namespace json = boost::json;

GgufDtype parse_gguf_dtype(const std::string& name) {
  if (name == "f32") return GgufDtype::kF32;
  if (name == "f16") return GgufDtype::kF16;
  if (name == "q8_0") return GgufDtype::kQ8_0;
  throw InputError(fmt::format("--dtype: `{}` is not a GGUF export type; use f32, f16 or q8_0", name));
}

std::string gguf_dtype_name(GgufDtype dtype) {
  switch (dtype) {
    case GgufDtype::kF32: return "f32";
    case GgufDtype::kF16: return "f16";
    case GgufDtype::kQ8_0: return "q8_0";
  }
  return "?";
}

namespace {

// llama.cpp's token types (llama_token_type / gguf-py TokenType).
constexpr int32_t kTokenNormal = 1, kTokenControl = 3, kTokenUserDefined = 4, kTokenUnused = 5;

// ---- Tensor encoding -------------------------------------------------------------------------

std::vector<std::byte> bytes_of(const at::Tensor& t) {
  std::vector<std::byte> out(static_cast<size_t>(t.nbytes()));
  std::memcpy(out.data(), t.data_ptr(), out.size());
  return out;
}

// Note [rope permutation]
// llama.cpp applies RoPE to adjacent pairs (x[2i], x[2i+1]) of each head; Hugging Face's Llama
// rotates the halves (x[i], x[i + D/2]). convert_hf_to_gguf.py therefore reorders the rows of
// q_proj (per attention head) and k_proj (per key/value head): within a head of D rows, row
// 2i + j of the GGUF tensor is row j * D/2 + i of HF's, i.e. reshape (heads, 2, D/2, C),
// swap axes 1 and 2, reshape back. Readers (transformers' GGUF loader, pft's) apply the inverse.
at::Tensor permute_rope_rows(const at::Tensor& w, int64_t heads) {
  const int64_t rows = w.size(0);
  return w.reshape({heads, 2, rows / heads / 2, w.size(1)}).transpose(1, 2).reshape(w.sizes())
      .contiguous();
}

// ---- Tokenizer metadata ----------------------------------------------------------------------

std::optional<json::value> read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec) throw InputError(fmt::format("{}: not valid JSON: {}", path.string(), ec.message()));
  return v;
}

// A token named by tokenizer_config.json (a string or an AddedToken object {"content": ...}).
std::optional<std::string> config_token(const json::object& config, const char* key) {
  const json::value* v = config.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return std::string(v->as_string());
  if (v->is_object())
    if (const json::value* c = v->as_object().if_contains("content"); c && c->is_string())
      return std::string(c->as_string());
  return std::nullopt;
}

// Note [pre-tokenizer name]
// llama.cpp picks its pre-tokenizer regex from tokenizer.ggml.pre. convert_hf_to_gguf.py finds
// the name by hashing the tokenization of a test text; pft reads the tokenizer's own pipeline
// (data/pretokenizer.h) instead: the GPT-2 regex alone is "gpt-2", individual digits then the
// GPT-2 regex is "smollm" (SmolLM / SmolLM2), the Llama-3 regex "llama-bpe", the Qwen2 regex
// "qwen2". Anything else gets "default" with a warning: llama.cpp may split such text
// differently from the tokenizer it was trained with (transformers' reader ignores the name).
std::string pre_tokenizer_name(const std::vector<PreTokenizerStep>& steps) {
  std::vector<SplitRule> rules;
  for (const PreTokenizerStep& s : steps)
    if (s.kind == PreTokenizerStep::Kind::kSplit) rules.push_back(s.rule);
  const bool prefix_space = rules.size() != steps.size();
  if (!prefix_space) {
    if (rules == std::vector<SplitRule>{SplitRule::kGpt2}) return "gpt-2";
    if (rules == std::vector<SplitRule>{SplitRule::kDigitsIsolated, SplitRule::kGpt2}) return "smollm";
    if (!rules.empty() && rules.front() == SplitRule::kLlama3) return "llama-bpe";
    if (!rules.empty() && rules.front() == SplitRule::kQwen2) return "qwen2";
  }
  log::warn("gguf export: the tokenizer's pre-tokenizer has no llama.cpp name; writing "
           "tokenizer.ggml.pre = \"default\" (llama.cpp may split some texts differently)");
  return "default";
}

struct TokenizerFiles {
  fs::path tokenizer_json;           // or empty with vocab/merges
  fs::path vocab_json, merges_txt;
  fs::path dir;                      // where tokenizer_config.json / chat_template.jinja are
};

TokenizerFiles find_tokenizer(const fs::path& spec) {
  TokenizerFiles f;
  if (spec.empty() || spec == "byte")
    throw InputError("gguf export: the run uses pft's `byte` tokenizer, which GGUF cannot describe "
                     "(llama.cpp knows BPE, SentencePiece and WordPiece vocabularies); pass "
                     "--tokenizer PATH (a tokenizer.json) or export with --format hf");
  if (fs::is_directory(spec)) {
    f.dir = spec;
    if (fs::exists(spec / "tokenizer.json")) {
      f.tokenizer_json = spec / "tokenizer.json";
    } else if (fs::exists(spec / "vocab.json") && fs::exists(spec / "merges.txt")) {
      f.vocab_json = spec / "vocab.json";
      f.merges_txt = spec / "merges.txt";
    } else {
      throw InputError(fmt::format("--tokenizer {}: no tokenizer.json (or vocab.json + merges.txt) "
                                   "in this directory",
                                   spec.string()));
    }
  } else if (fs::is_regular_file(spec)) {
    f.tokenizer_json = spec;
    f.dir = spec.parent_path();
  } else {
    throw InputError(fmt::format("--tokenizer {}: no such file or directory", spec.string()));
  }
  return f;
}

// A model whose tokenizer came from a GGUF file (model.from_pretrained: a .gguf or a known name):
// its tokenizer.* metadata is written back as it was, so the export tokenizes exactly as the
// model it was trained from.
void copy_gguf_tokenizer(GgufWriter& w, const ModelSpec& spec, const fs::path& source,
                         GgufExportReport& report) {
  const gguf::File file(source);
  for (const auto& [key, value] : file.metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    using VT = gguf::ValueType;
    switch (value.type) {
      case VT::kString: w.add_string(key, value.string); break;
      case VT::kBool: w.add_bool(key, value.integer != 0); break;
      case VT::kFloat32:
      case VT::kFloat64: w.add_f32(key, static_cast<float>(value.number)); break;
      case VT::kArray: {
        if (value.element_type == VT::kString) {
          w.add_strings(key, file.get_strings(key));
        } else if (value.element_type != VT::kFloat32 && value.element_type != VT::kFloat64 &&
                   value.element_type != VT::kArray) {
          std::vector<int32_t> ints;
          for (const int64_t i : file.get_ints(key)) ints.push_back(static_cast<int32_t>(i));
          w.add_i32s(key, std::move(ints));
        } else {
          file.fail(fmt::format("{}: an array of {} cannot be copied into the export; export "
                                "with --tokenizer DIR (a tokenizer.json)",
                                key, gguf::value_type_name(value.element_type)));
        }
        break;
      }
      default:
        if (value.integer < 0) w.add_i32(key, static_cast<int32_t>(value.integer));
        else w.add_u32(key, static_cast<uint32_t>(value.integer));
    }
  }
  const auto tokens = file.get_strings("tokenizer.ggml.tokens");
  if (static_cast<int64_t>(tokens.size()) != spec.vocab_size)
    file.fail(fmt::format("tokenizer.ggml.tokens has {} tokens but the model's vocabulary is {}",
                          tokens.size(), spec.vocab_size));
  report.pre = file.get_string_opt("tokenizer.ggml.pre").value_or("");
}

void add_tokenizer(GgufWriter& w, const ModelSpec& spec, const fs::path& tokenizer,
                   GgufExportReport& report) {
  if (fs::is_regular_file(tokenizer) && gguf::is_gguf_file(tokenizer)) {
    copy_gguf_tokenizer(w, spec, tokenizer, report);
    return;
  }
  const TokenizerFiles files = find_tokenizer(tokenizer);
  const BpeTokenizerConfig tok = files.tokenizer_json.empty()
                                     ? read_gpt2_files(files.vocab_json.string(), files.merges_txt.string())
                                     : read_tokenizer_json(files.tokenizer_json.string());
  const int64_t v = spec.vocab_size;
  std::vector<std::string> tokens(static_cast<size_t>(v));
  std::vector<int32_t> types(static_cast<size_t>(v), kTokenNormal);
  std::map<std::string, int32_t> id_of;
  const auto set = [&](int64_t id, const std::string& text, int32_t type) {
    if (id < 0 || id >= v)
      throw InputError(fmt::format("--tokenizer {}: token `{}` has id {}, outside the model's "
                                   "vocabulary of {} (model.vocab_size)",
                                   tok.source, text, id, v));
    tokens[static_cast<size_t>(id)] = text;
    types[static_cast<size_t>(id)] = type;
    id_of[text] = static_cast<int32_t>(id);
  };
  for (size_t id = 0; id < tok.vocab.size(); ++id)
    if (!tok.vocab[id].empty()) set(static_cast<int64_t>(id), tok.vocab[id], kTokenNormal);
  for (const AddedToken& a : tok.added_tokens)
    set(a.id, a.content, a.special ? kTokenControl : kTokenUserDefined);
  for (int64_t id = 0; id < v; ++id)
    if (tokens[static_cast<size_t>(id)].empty()) {  // as convert_hf_to_gguf.py fills holes
      tokens[static_cast<size_t>(id)] = fmt::format("[PAD{}]", id);
      types[static_cast<size_t>(id)] = kTokenUnused;
    }
  std::vector<std::string> merges;
  merges.reserve(tok.merges.size());
  for (const MergeRule& m : tok.merges)
    merges.push_back(tokens.at(static_cast<size_t>(m.left)) + " " +
                     tokens.at(static_cast<size_t>(m.right)));

  report.pre = pre_tokenizer_name(tok.pre_tokenizer);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", report.pre);
  w.add_strings("tokenizer.ggml.tokens", std::move(tokens));
  w.add_i32s("tokenizer.ggml.token_type", std::move(types));
  w.add_strings("tokenizer.ggml.merges", std::move(merges));

  // Special ids: tokenizer_config.json's bos/eos/unk/pad tokens where it names them, else the
  // tokenizer's own (eos, pad, unk); the BOS the post-processor adds.
  json::object config;
  if (auto c = read_json_file(files.dir / "tokenizer_config.json"); c && c->is_object())
    config = c->as_object();
  const auto id_for = [&](const char* key) -> std::optional<int32_t> {
    const auto text = config_token(config, key);
    if (!text) return std::nullopt;
    const auto it = id_of.find(*text);
    if (it == id_of.end())
      throw InputError(fmt::format("{}: {} `{}` is not a token of the tokenizer",
                                   (files.dir / "tokenizer_config.json").string(), key, *text));
    return it->second;
  };
  std::vector<int32_t> prefix;
  if (!files.tokenizer_json.empty()) prefix = tokenizer_prompt_prefix(files.tokenizer_json);
  std::optional<int32_t> bos = id_for("bos_token");
  if (!bos && !prefix.empty()) bos = prefix.front();
  // No BOS named by the tokenizer: the model's (generation_config.json / config.json beside it),
  // else the eos, as GPT-2's files do. Readers need one (transformers' GGUF tokenizer fails
  // without bos_token_id); add_bos_token stays false, so nothing puts it before a text.
  for (const char* name : {"generation_config.json", "config.json"}) {
    if (bos) break;
    if (auto c = read_json_file(files.dir / name); c && c->is_object())
      if (const json::value* b = c->as_object().if_contains("bos_token_id"); b && b->is_int64())
        bos = static_cast<int32_t>(b->as_int64());
  }
  std::optional<int32_t> eos = id_for("eos_token");
  if (!eos && tok.eos_id >= 0) eos = tok.eos_id;
  std::optional<int32_t> unk = id_for("unk_token");
  if (!unk) unk = tok.unk_id;
  std::optional<int32_t> pad = id_for("pad_token");
  if (!pad) pad = tok.pad_id;
  if (!bos) bos = eos;
  if (bos) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*bos));
  if (eos) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*eos));
  if (unk) w.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(*unk));
  if (pad) w.add_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(*pad));
  w.add_bool("tokenizer.ggml.add_bos_token", !prefix.empty());
  w.add_bool("tokenizer.ggml.add_eos_token", false);

  std::string chat;
  if (const json::value* t = config.if_contains("chat_template"); t && t->is_string())
    chat = std::string(t->as_string());
  if (chat.empty() && fs::exists(files.dir / "chat_template.jinja")) {
    std::ifstream in(files.dir / "chat_template.jinja", std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    chat = ss.str();
  }
  if (!chat.empty()) w.add_string("tokenizer.chat_template", chat);
}

// HF name -> GGUF name and the heads of a RoPE permutation (0 = none); "" for no mapping.
std::pair<std::string, int64_t> gguf_name(const ModelSpec& spec, const std::string& name) {
  static const std::map<std::string, std::string> kTop = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  if (auto it = kTop.find(name); it != kTop.end()) return {it->second, 0};
  static const std::map<std::string, std::string> kBlock = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return {"", 0};
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return {"", 0};
  const std::string layer = name.substr(prefix.size(), dot - prefix.size());
  const auto it = kBlock.find(name.substr(dot + 1));
  if (it == kBlock.end()) return {"", 0};
  const int64_t heads = it->first == "self_attn.q_proj.weight"   ? spec.n_heads
                        : it->first == "self_attn.k_proj.weight" ? spec.n_kv_heads
                                                                 : 0;
  return {"blk." + layer + "." + it->second, heads};
}

}  // namespace

// ggml's quantize_row_q8_0_ref (contract: model/gguf_export.h).
std::vector<std::byte> quantize_q8_0(const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous() && t.device().is_cpu() &&
                  t.dim() >= 1 && t.size(-1) % kQ8_0BlockSize == 0,
              "quantize_q8_0: a contiguous fp32 CPU tensor with rows of a multiple of 32");
  const float* x = t.data_ptr<float>();
  const int64_t blocks = t.numel() / kQ8_0BlockSize;
  std::vector<std::byte> out(static_cast<size_t>(blocks * kQ8_0BlockBytes));
  for (int64_t b = 0; b < blocks; ++b) {
    const float* v = x + b * kQ8_0BlockSize;
    float amax = 0.0f;
    for (int64_t j = 0; j < kQ8_0BlockSize; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    std::byte* block = out.data() + b * kQ8_0BlockBytes;
    const uint16_t half = c10::Half(d).x;  // round to nearest even, as GGML_FP32_TO_FP16
    std::memcpy(block, &half, 2);
    for (int64_t j = 0; j < kQ8_0BlockSize; ++j)
      block[2 + j] = static_cast<std::byte>(static_cast<int8_t>(std::round(v[j] * id)));
  }
  return out;
}

GgufExportReport export_gguf_model(const ModelSpec& spec,
                                   const std::vector<std::pair<std::string, at::Tensor>>& params,
                                   const fs::path& out_file, const GgufExportOptions& options) {
  if (spec.family != ModelFamily::Llama)
    throw InputError(fmt::format(
        "gguf export: model.family `{}` is not exported to GGUF (transformers' GGUF loader cannot "
        "size a GPT-2 position table); use --format hf",
        family_name(spec.family)));
  // Every parameter of the model, each with its shape (hf_parameter_layout is the list).
  std::map<std::string, at::Tensor> by_name;
  for (const auto& [name, t] : params)
    if (!by_name.emplace(name, t).second)
      throw InputError(fmt::format("gguf export: parameter {} given twice", name));
  GgufWriter w;
  GgufExportReport report;
  report.file = out_file;
  const uint32_t file_type = options.dtype == GgufDtype::kF32 ? 0 : options.dtype == GgufDtype::kF16 ? 1 : 7;
  const std::string a = "llama.";
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", options.name);
  w.add_u32("general.file_type", file_type);
  w.add_u32("general.quantization_version", 2);
  w.add_u32(a + "context_length", static_cast<uint32_t>(spec.max_seq_len));
  w.add_u32(a + "embedding_length", static_cast<uint32_t>(spec.d_model));
  w.add_u32(a + "block_count", static_cast<uint32_t>(spec.n_layers));
  w.add_u32(a + "feed_forward_length", static_cast<uint32_t>(spec.d_ff));
  w.add_u32(a + "attention.head_count", static_cast<uint32_t>(spec.n_heads));
  w.add_u32(a + "attention.head_count_kv", static_cast<uint32_t>(spec.n_kv_heads));
  w.add_f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(spec.norm_eps));
  w.add_f32(a + "rope.freq_base", static_cast<float>(spec.rope_theta));
  w.add_u32(a + "rope.dimension_count", static_cast<uint32_t>(spec.head_dim));
  w.add_u32(a + "vocab_size", static_cast<uint32_t>(spec.vocab_size));
  if (spec.head_dim * spec.n_heads != spec.d_model) {
    w.add_u32(a + "attention.key_length", static_cast<uint32_t>(spec.head_dim));
    w.add_u32(a + "attention.value_length", static_cast<uint32_t>(spec.head_dim));
  }
  add_tokenizer(w, spec, options.tokenizer, report);

  std::map<std::string, int64_t> type_counts;
  at::NoGradGuard no_grad;
  for (const auto& [name, shape] : hf_parameter_layout(spec)) {
    const auto it = by_name.find(name);
    if (it == by_name.end())
      throw InputError(fmt::format("gguf export: parameter {} is missing", name));
    const at::Tensor& src = it->second;
    if (std::vector<int64_t>(src.sizes().begin(), src.sizes().end()) != shape)
      throw InputError(fmt::format("gguf export: parameter {} has shape [{}], the model needs [{}]",
                                   name, fmt::join(src.sizes(), ", "), fmt::join(shape, ", ")));
    const auto [gname, heads] = gguf_name(spec, name);
    if (gname.empty())
      throw InputError(fmt::format("gguf export: parameter {} has no GGUF tensor name", name));
    at::Tensor t = src.detach().to(at::kCPU, at::kFloat).contiguous();
    if (heads > 0) t = permute_rope_rows(t, heads);
    GgmlType type = GgmlType::F32;
    if (t.dim() >= 2 && options.dtype != GgufDtype::kF32) {
      type = options.dtype == GgufDtype::kQ8_0 && t.size(-1) % kQ8_0BlockSize == 0
                 ? GgmlType::Q8_0
                 : GgmlType::F16;
    }
    std::vector<std::byte> bytes = type == GgmlType::F32   ? bytes_of(t)
                                   : type == GgmlType::F16 ? bytes_of(t.to(at::kHalf).contiguous())
                                                            : quantize_q8_0(t);
    w.add_tensor(gname, shape, type, std::move(bytes));
    ++type_counts[ggml_type_name(type)];
    by_name.erase(it);
  }
  if (!by_name.empty())
    throw InputError(fmt::format("gguf export: parameter {} is not part of a {} model",
                                 by_name.begin()->first, family_name(spec.family)));
  std::vector<std::string> parts;
  for (const auto& [type, n] : type_counts) parts.push_back(fmt::format("{} x{}", type, n));
  report.tensor_types = fmt::format("{}", fmt::join(parts, ", "));
  report.tensors = static_cast<int64_t>(w.tensor_count());

  if (out_file.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(out_file.parent_path(), ec);
    if (ec)
      throw InputError(fmt::format("--out: cannot create '{}': {}", out_file.parent_path().string(),
                                   ec.message()));
  }
  w.write(out_file);
  report.bytes = fs::file_size(out_file);
  return report;
}

GgufExportReport export_gguf_model(const TransformerImpl& model, const fs::path& out_file,
                                   const GgufExportOptions& options) {
  if (const auto& ad = model.adapters(); ad && (ad->spec().prompt || ad->spec().prefix))
    throw InputError(
        "gguf export: the model carries a prompt or prefix tuning adapter, which a GGUF file "
        "cannot hold (llama.cpp has no virtual tokens); export it with --format hf (the adapter "
        "in PEFT's format), keep the adapter checkpoint, or generate with `pft generate "
        "--adapter`");
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& item : model.named_parameters()) params.emplace_back(item.key(), item.value());
  return export_gguf_model(model.spec(), params, out_file, options);
}

}  // namespace pft
