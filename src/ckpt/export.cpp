// Checkpoint export to safetensors / Hugging Face directories (contract: ckpt/export.h).
#include "ckpt/export.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <fstream>

#include "ckpt/config_record.h"
#include "ckpt/format.h"
#include "ckpt/safetensors_writer.h"
#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

ExportFormat parse_export_format(const std::string& name) {
  if (name == "safetensors") return ExportFormat::kSafetensors;
  if (name == "hf") return ExportFormat::kHf;
  throw InputError(fmt::format("--format: unknown format `{}`; use safetensors or hf", name));
}

namespace {

const std::string& key(const FlatConfig& arch, const std::string& k) {
  const auto it = arch.find(k);
  if (it == arch.end()) throw InputError(fmt::format("checkpoint: /meta/architecture lacks {}", k));
  return it->second;
}

int64_t int_key(const FlatConfig& arch, const std::string& k) { return std::stoll(key(arch, k)); }
double real_key(const FlatConfig& arch, const std::string& k) { return std::stod(key(arch, k)); }
bool bool_key(const FlatConfig& arch, const std::string& k) { return key(arch, k) == "true"; }

}  // namespace

void check_export_dir(const fs::path& out_dir, ExportLayout layout) {
  std::error_code ec;
  if (!fs::is_directory(out_dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(out_dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool adapter_part = name == "merged" || name == "adapter" || name == "adapters";
    const bool model_part = name == "config.json" || name.ends_with(".safetensors") ||
                            name == "model.safetensors.index.json" ||
                            name == "adapter_config.json";
    if (layout == ExportLayout::kModel && (adapter_part || name == "adapter_config.json"))
      throw InputError(fmt::format(
          "--out {}: it holds `{}`, part of an adapter export (merged/, adapter/, adapters/); a "
          "model export there would mix two layouts. Choose another --out, or remove the "
          "directory first",
          out_dir.string(), name));
    if (layout == ExportLayout::kAdapter && model_part)
      throw InputError(fmt::format(
          "--out {}: it holds `{}`, a model directory's file; an adapter export writes merged/, "
          "adapter/ and adapters/ and would mix two layouts there (transformers would read both). "
          "Choose another --out, or remove the directory first",
          out_dir.string(), name));
  }
}

std::string hf_config_json(const FlatConfig& arch) {
  const std::string family = key(arch, "model.family");
  const int64_t d_model = int_key(arch, "model.d_model");
  const int64_t n_heads = int_key(arch, "model.n_heads");
  boost::json::object c;
  c["vocab_size"] = int_key(arch, "model.vocab_size");
  c["tie_word_embeddings"] = bool_key(arch, "model.tie_embeddings");
  c["torch_dtype"] = "float32";
  if (family == "gpt2") {
    c["architectures"] = boost::json::array{"GPT2LMHeadModel"};
    c["model_type"] = "gpt2";
    c["n_embd"] = d_model;
    c["n_layer"] = int_key(arch, "model.n_layers");
    c["n_head"] = n_heads;
    c["n_inner"] = int_key(arch, "model.d_ff");
    c["n_positions"] = int_key(arch, "model.max_seq_len");
    c["n_ctx"] = int_key(arch, "model.max_seq_len");
    c["layer_norm_epsilon"] = real_key(arch, "model.norm_eps");
    c["activation_function"] = "gelu_new";
    c["resid_pdrop"] = 0.0;
    c["embd_pdrop"] = 0.0;
    c["attn_pdrop"] = 0.0;
  } else if (family == "llama") {
    c["architectures"] = boost::json::array{"LlamaForCausalLM"};
    c["model_type"] = "llama";
    c["hidden_size"] = d_model;
    c["intermediate_size"] = int_key(arch, "model.d_ff");
    c["num_hidden_layers"] = int_key(arch, "model.n_layers");
    c["num_attention_heads"] = n_heads;
    c["num_key_value_heads"] = int_key(arch, "model.n_kv_heads");
    c["head_dim"] = d_model / n_heads;
    c["max_position_embeddings"] = int_key(arch, "model.max_seq_len");
    c["rms_norm_eps"] = real_key(arch, "model.norm_eps");
    c["rope_theta"] = real_key(arch, "model.rope_theta");
    c["hidden_act"] = "silu";
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
    c["attention_dropout"] = 0.0;
  } else {
    throw InputError(
        fmt::format("checkpoint: model.family `{}` has no Hugging Face export", family));
  }
  return boost::json::serialize(c);
}

std::vector<fs::path> export_checkpoint(const fs::path& file, ExportFormat format,
                                        const fs::path& out_dir, const ReadOptions& options) {
  ReadOptions ro = options;
  ro.select = [](const std::string& p) {
    return p.rfind("/model/", 0) == 0 || p.rfind("/meta/", 0) == 0;
  };
  const Contents c = read_checkpoint(file, ro);
  const std::vector<const Dataset*> tensors = c.under(kModel);
  if (tensors.empty())
    throw InputError(fmt::format("checkpoint {}: /model holds no tensors", file.string()));
  std::vector<SafetensorsTensor> st;
  for (const Dataset* d : tensors)
    st.push_back({d->path.substr(std::string(kModel).size() + 1), d->dtype, d->shape, d->bytes});

  check_export_dir(out_dir, ExportLayout::kModel);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec)
    throw InputError(fmt::format("--out: cannot create '{}': {}", out_dir.string(), ec.message()));
  std::vector<fs::path> written;
  const Attrs& meta = c.group_attrs(kMeta);
  std::map<std::string, std::string> md{{"format", "pt"}};
  if (meta.count(kAttrStep) > 0) md["pft_step"] = attr_to_string(meta.at(kAttrStep));
  write_safetensors(out_dir / "model.safetensors", st, md);
  written.push_back(out_dir / "model.safetensors");
  if (format == ExportFormat::kHf) {
    const FlatConfig arch = flat_from_json(c.at(kMetaArchitecture).text(), kMetaArchitecture);
    std::ofstream out(out_dir / "config.json");
    out << hf_config_json(arch) << "\n";
    if (!out)
      throw RuntimeFailure(fmt::format("cannot write '{}'", (out_dir / "config.json").string()));
    written.push_back(out_dir / "config.json");
  }
  return written;
}

}  // namespace pft::ckpt
