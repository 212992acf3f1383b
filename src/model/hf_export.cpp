// pft -> Hugging Face model directory: config.json, safetensors, tokenizer files. See
// hf_export.h.
#include "model/hf_export.h"

#include <boost/json.hpp>

#include <array>
#include <map>
#include <set>

#include "core/error.h"
#include "core/format.h"
#include "core/gguf.h"
#include "core/run_dir.h"
#include "data/gguf_tokenizer.h"
#include "data/hf_tokenizer_json.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "model/safetensors.h"

namespace pft {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// JSON with two-space indentation, keys in insertion order (Boost.JSON only writes compact).
void pretty(const json::value& v, std::string& out, int indent) {
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  if (v.is_object() && !v.as_object().empty()) {
    out += "{\n";
    bool first = true;
    for (const auto& kv : v.as_object()) {
      out += first ? "" : ",\n";
      first = false;
      out += pad + json::serialize(json::string(kv.key())) + ": ";
      pretty(kv.value(), out, indent + 2);
    }
    out += "\n" + std::string(static_cast<size_t>(indent), ' ') + "}";
  } else if (v.is_array() && !v.as_array().empty()) {
    out += "[\n";
    bool first = true;
    for (const auto& x : v.as_array()) {
      out += first ? "" : ",\n";
      first = false;
      out += pad;
      pretty(x, out, indent + 2);
    }
    out += "\n" + std::string(static_cast<size_t>(indent), ' ') + "]";
  } else {
    out += json::serialize(v);
  }
}

std::string pretty(const json::value& v) {
  std::string out;
  pretty(v, out, 0);
  return out + "\n";
}

const char* hf_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    default:
      throw InputError(
          fmt::format("export dtype {} is not supported; use float32, bfloat16 or "
                      "float16",
                      c10::toString(t)));
  }
}

json::value id_value(const std::optional<int32_t>& id) {
  return id ? json::value(*id) : json::value(nullptr);
}

json::value ids_value(const std::vector<int32_t>& ids) {
  if (ids.empty()) return nullptr;
  if (ids.size() == 1) return ids[0];
  json::array a;
  for (int32_t id : ids) a.emplace_back(id);
  return a;
}

std::string shape_str(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", shape[i]);
  return s + "]";
}

void copy_atomically(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  const fs::path tmp = to.string() + ".tmp";
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, to, ec);
  if (ec)
    throw RuntimeFailure(
        fmt::format("cannot copy {} to {}: {}", from.string(), to.string(), ec.message()));
}

// tokenizer_config.json for a tokenizer.json pft wrote itself: the fast tokenizer class, the
// special tokens by their text, the chat template when there is one.
std::string synthesized_tokenizer_config(const BpeTokenizerConfig& c, std::optional<int32_t> bos,
                                         bool add_bos, const std::string& chat_template) {
  const auto text = [&](std::optional<int32_t> id) -> json::value {
    if (!id || *id < 0 || static_cast<size_t>(*id) >= c.vocab.size()) return nullptr;
    return json::string(c.vocab[static_cast<size_t>(*id)]);
  };
  json::object tc;
  tc["tokenizer_class"] = "PreTrainedTokenizerFast";
  tc["clean_up_tokenization_spaces"] = false;
  tc["bos_token"] = text(bos);
  tc["eos_token"] = text(c.eos_id >= 0 ? std::optional<int32_t>(c.eos_id) : std::nullopt);
  tc["pad_token"] = text(c.pad_id);
  tc["unk_token"] = text(c.unk_id);
  tc["add_bos_token"] = add_bos;
  tc["add_eos_token"] = false;
  if (!chat_template.empty()) tc["chat_template"] = chat_template;
  return pretty(tc);
}

// The files a Hugging Face tokenizer may consist of (copied from a tokenizer folder; removed from
// an export before a new tokenizer is written there).
constexpr std::array<const char*, 9> kTokenizerFiles = {
    "tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json",
    "vocab.json",          "merges.txt",            "added_tokens.json",
    "chat_template.jinja", "chat_template.json",    "tokenizer.model"};

// Writes the tokenizer of `source` into `out` (see HfExportOptions::tokenizer); returns whether
// there was one.
bool write_tokenizer(const fs::path& source, const fs::path& out) {
  if (source.empty()) return false;
  // The files of an earlier export's tokenizer go first: AutoTokenizer would read a stale
  // special_tokens_map.json, chat template or vocab.json beside the new tokenizer.json.
  std::error_code ec;
  const fs::path source_dir = fs::is_directory(source) ? source : source.parent_path();
  const bool gguf_source =
      source != "byte" && fs::is_regular_file(source, ec) && gguf::is_gguf_file(source);
  if (source != "byte" && !gguf_source && fs::equivalent(source_dir, out, ec))
    return true;  // the export is the tokenizer's own folder: its files are there
  for (const char* f : kTokenizerFiles)
    fs::remove(out / f, ec);
  if (source == "byte") {  // pft's byte tokenizer, spelt as a BPE HF reads
    const BpeTokenizerConfig c = byte_tokenizer_as_bpe();
    RunDir::write_file_atomic(out / "tokenizer.json", hf_tokenizer_json(c));
    RunDir::write_file_atomic(out / "tokenizer_config.json",
                              synthesized_tokenizer_config(c, std::nullopt, false, ""));
    return true;
  }
  if (!fs::exists(source))
    throw InputError(fmt::format("tokenizer {}: no such file or directory; pass --tokenizer PATH "
                                 "(a tokenizer.json, its directory or a GGUF file)",
                                 source.string()));
  if (fs::is_regular_file(source) && gguf::is_gguf_file(source)) {
    // The tokenizer embedded in a GGUF file, as transformers' GGUF converter would build it.
    GgufTokenizerInfo info;
    const BpeTokenizerConfig c = read_gguf_tokenizer(source.string(), &info);
    RunDir::write_file_atomic(out / "tokenizer.json",
                              hf_tokenizer_json(c, info.prompt_prefix_ids));
    RunDir::write_file_atomic(
        out / "tokenizer_config.json",
        synthesized_tokenizer_config(c, info.bos_id, !info.prompt_prefix_ids.empty(),
                                     info.chat_template));
    return true;
  }
  // (source name, name in the export)
  std::vector<std::pair<fs::path, std::string>> files;
  if (fs::is_directory(source)) {
    for (const char* f : kTokenizerFiles)
      if (fs::exists(source / f)) files.emplace_back(source / f, f);
    if (!fs::exists(source / "vocab.json") && fs::exists(source / "encoder.json"))
      files.emplace_back(source / "encoder.json", "vocab.json");  // GPT-2's original names
    if (!fs::exists(source / "merges.txt") && fs::exists(source / "vocab.bpe"))
      files.emplace_back(source / "vocab.bpe", "merges.txt");
  } else {
    files.emplace_back(source, "tokenizer.json");
    for (const char* f : {"tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"})
      if (fs::exists(source.parent_path() / f)) files.emplace_back(source.parent_path() / f, f);
  }
  if (files.empty())
    throw InputError(fmt::format("tokenizer {}: no tokenizer files in it", source.string()));
  bool has_config = false;
  for (const auto& [from, name] : files) {
    copy_atomically(from, out / name);
    has_config = has_config || name == "tokenizer_config.json";
  }
  if (!has_config) {
    // Without it AutoTokenizer would pick a model-specific class with its own conventions.
    json::object tc;
    tc["tokenizer_class"] =
        fs::exists(out / "tokenizer.json") ? "PreTrainedTokenizerFast" : "GPT2Tokenizer";
    tc["clean_up_tokenization_spaces"] = false;
    // The special tokens, so that AutoTokenizer knows its eos (pft reads them from the files).
    // A tokenizer pft cannot read (a sentencepiece tokenizer.model) is copied without them.
    try {
      const std::unique_ptr<Tokenizer> t = load_tokenizer(source.string());
      if (t->eos_id() >= 0) tc["eos_token"] = t->id_to_token(t->eos_id());
      if (t->pad_id()) tc["pad_token"] = t->id_to_token(*t->pad_id());
    } catch (const InputError&) {
    }
    RunDir::write_file_atomic(out / "tokenizer_config.json", pretty(tc));
  }
  return true;
}

void remove_old_weights(const fs::path& out) {
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    const bool shard = name.starts_with("model-") && name.ends_with(".safetensors");
    if (name == "model.safetensors" || name == "model.safetensors.index.json" || shard)
      fs::remove(entry.path());
  }
}

}  // namespace

std::string hf_config_json(const ModelSpec& s, const HfExportOptions& o) {
  json::object c;
  if (s.family == ModelFamily::Gpt2) {
    c["architectures"] = json::array{"GPT2LMHeadModel"};
    c["model_type"] = "gpt2";
    c["vocab_size"] = s.vocab_size;
    c["n_positions"] = s.max_seq_len;
    c["n_embd"] = s.d_model;
    c["n_layer"] = s.n_layers;
    c["n_head"] = s.n_heads;
    c["n_inner"] = s.d_ff;
    c["activation_function"] = "gelu_new";
    c["layer_norm_epsilon"] = s.norm_eps;
    c["resid_pdrop"] = 0.0;  // pft trains without dropout
    c["embd_pdrop"] = 0.0;
    c["attn_pdrop"] = 0.0;
    c["scale_attn_weights"] = true;
    c["scale_attn_by_inverse_layer_idx"] = false;
    c["reorder_and_upcast_attn"] = false;
  } else {
    c["architectures"] = json::array{"LlamaForCausalLM"};
    c["model_type"] = "llama";
    c["vocab_size"] = s.vocab_size;
    c["hidden_size"] = s.d_model;
    c["intermediate_size"] = s.d_ff;
    c["num_hidden_layers"] = s.n_layers;
    c["num_attention_heads"] = s.n_heads;
    c["num_key_value_heads"] = s.n_kv_heads;
    c["head_dim"] = s.head_dim;
    c["hidden_act"] = "silu";
    c["max_position_embeddings"] = s.max_seq_len;
    c["rms_norm_eps"] = s.norm_eps;
    // Both spellings: rope_parameters (transformers >= 5) and rope_theta (older releases).
    c["rope_theta"] = s.rope_theta;
    c["rope_parameters"] = json::object{{"rope_type", "default"}, {"rope_theta", s.rope_theta}};
    c["attention_bias"] = false;
    c["attention_dropout"] = 0.0;
    c["mlp_bias"] = false;
    c["pretraining_tp"] = 1;
  }
  c["initializer_range"] = s.init_std;
  c["tie_word_embeddings"] = s.tie_embeddings;
  c["bos_token_id"] = id_value(o.bos_token_id);
  c["eos_token_id"] = ids_value(o.eos_token_ids);
  c["pad_token_id"] = id_value(o.pad_token_id);
  c["use_cache"] = true;
  c["dtype"] = hf_dtype_name(o.dtype);
  c["torch_dtype"] = hf_dtype_name(o.dtype);  // the name before transformers 5
  return pretty(c);
}

void export_hf_model(const ModelSpec& spec,
                     const std::vector<std::pair<std::string, at::Tensor>>& params,
                     const fs::path& out_dir, const HfExportOptions& options) {
  (void)hf_dtype_name(options.dtype);
  // Exactly the model's parameters, with its shapes.
  std::map<std::string, std::vector<int64_t>> layout;
  std::vector<std::string> order;
  for (auto& [name, shape] : hf_parameter_layout(spec)) {
    order.push_back(name);
    layout.emplace(name, std::move(shape));
  }
  std::map<std::string, at::Tensor> by_name;
  for (const auto& [name, t] : params) {
    const auto it = layout.find(name);
    if (it == layout.end())
      throw InputError(
          fmt::format("export: unexpected tensor `{}`: a {} model of this shape has "
                      "no such parameter",
                      name, family_name(spec.family)));
    if (!t.sizes().equals(it->second))
      throw InputError(fmt::format("export: tensor `{}` has shape {}, the model needs {}", name,
                                   shape_str(t.sizes()), shape_str(it->second)));
    if (!at::isFloatingType(t.scalar_type()))
      throw InputError(fmt::format("export: tensor `{}` is not floating point", name));
    by_name[name] = t;
  }
  for (const auto& name : order)
    if (!by_name.count(name)) throw InputError(fmt::format("export: missing tensor `{}`", name));

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir))
    throw InputError(fmt::format("export: cannot create directory {}: {}", out_dir.string(),
                                 ec ? ec.message() : "exists and is not a directory"));
  remove_old_weights(out_dir);

  // Weights, in the model's parameter order, converted to the stored dtype.
  const std::map<std::string, std::string> metadata{{"format", "pt"}};
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const auto& name : order) {
    at::Tensor t = by_name[name].detach().to(at::kCPU, options.dtype).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    if (options.max_shard_bytes > 0 && !shards.back().empty() &&
        shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace_back(name, std::move(t));
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  if (shards.size() == 1) {
    write_safetensors(out_dir / "model.safetensors", shards[0], metadata);
  } else {
    json::object weight_map;
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string file =
          fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
      write_safetensors(out_dir / file, shards[i], metadata);
      for (const auto& kv : shards[i]) weight_map[kv.first] = file;
    }
    json::object index;
    index["metadata"] = json::object{{"total_size", total_bytes}};
    index["weight_map"] = std::move(weight_map);
    RunDir::write_file_atomic(out_dir / "model.safetensors.index.json", pretty(index));
  }

  RunDir::write_file_atomic(out_dir / "config.json", hf_config_json(spec, options));
  if (!options.source_model.empty() &&
      fs::exists(options.source_model / "generation_config.json")) {
    copy_atomically(options.source_model / "generation_config.json",
                    out_dir / "generation_config.json");
  } else {
    json::object g;
    g["bos_token_id"] = id_value(options.bos_token_id);
    g["eos_token_id"] = ids_value(options.eos_token_ids);
    g["pad_token_id"] = id_value(options.pad_token_id);
    RunDir::write_file_atomic(out_dir / "generation_config.json", pretty(g));
  }
  write_tokenizer(options.tokenizer, out_dir);
}

void export_hf_model(const TransformerImpl& model, const fs::path& out_dir,
                     const HfExportOptions& options) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& item : model.named_parameters()) params.emplace_back(item.key(), item.value());
  export_hf_model(model.spec(), params, out_dir, options);
}

}  // namespace pft
