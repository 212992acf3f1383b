// Adapter checkpoints outside training (contract: train/adapter_checkpoint.h).
#include "train/adapter_checkpoint.h"

#include <boost/json/object.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fstream>

#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "ckpt/safetensors_writer.h"
#include "core/error.h"
#include "core/format.h"
#include "model/adapters.h"
#include "model/hf_export.h"
#include "model/hf_import.h"
#include "model/transformer.h"
#include "train/checkpointing.h"

namespace pft {

LoadedAdapter attach_adapter_checkpoint(const std::filesystem::path& file, TransformerImpl& model) {
  const ckpt::Contents meta = ckpt::read_checkpoint(file);  // small: the adapter only
  const Config config = parse_config(meta.at(ckpt::kMetaConfig).text(), file.string() + ":/meta/config");
  LoadedAdapter out;
  out.method = config::config_text(config.train.method);
  out.base_model_path = config.model.from_pretrained;
  if (!is_peft(config.train.method))
    throw InputError(fmt::format("--adapter {}: a full fine-tuning checkpoint, not an adapter; "
                                 "use --checkpoint",
                                 file.string()));
  out.task_names = saved_task_names(meta);
  const AdapterSpec spec = adapter_spec_from_config(
      config, model.spec(), std::max<int64_t>(1, static_cast<int64_t>(out.task_names.size())));
  out.adapters = std::make_shared<Adapters>(model.spec(), spec, model.lora_candidates());
  // An adapter trained on a bf16/fp16 base (model.base_dtype) recorded the hash of that base's
  // bytes: an fp32 base (pft generate --model, the exports) matches when cast the same way. A
  // base held in another low precision cannot be cast back to those bytes: say so by key rather
  // than let the hash call it another model.
  const at::ScalarType saved_dtype = scalar_type_of(config.model.base_dtype);
  const at::ScalarType have_dtype = model.parameters().front().scalar_type();
  if (have_dtype != saved_dtype && have_dtype != at::kFloat)
    throw InputError(fmt::format(
        "--adapter {}: it was trained on a base stored as model.base_dtype: {}, and this base is "
        "held as {}; load the base with model.base_dtype: {} (or fp32)",
        file.string(), config::config_text(config.model.base_dtype),
        c10::toString(have_dtype), config::config_text(config.model.base_dtype)));
  init_adapters_from(meta, file, module_hash(model, scalar_type_of(config.model.base_dtype)),
                     out.adapters->named(), {}, out.task_names, "--adapter");
  out.adapters->to(model.parameters().front().device());
  model.attach_adapters(out.adapters);
  return out;
}

int64_t adapter_block(const LoadedAdapter& loaded, const std::string& task) {
  const AdapterSpec& s = loaded.adapters->spec();
  // LoRA is shared by every task; a shared (or one-task) table has one block.
  if (!(s.prompt || s.prefix) || s.blocks == 1) return 0;
  if (task.empty())
    throw InputError(fmt::format("--adapter-task is required: the adapter's {} table has one "
                                 "block per task; name one of: {}",
                                 loaded.method, fmt::join(loaded.task_names, ", ")));
  for (size_t k = 0; k < loaded.task_names.size(); ++k)
    if (loaded.task_names[k] == task) return static_cast<int64_t>(k);
  throw InputError(fmt::format("--adapter-task `{}`: the adapter has one block per task; name one "
                               "of: {}",
                               task, fmt::join(loaded.task_names, ", ")));
}

namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw RuntimeFailure(fmt::format("cannot write {}", path.string()));
}

// One PEFT adapter directory: adapter_model.safetensors with `tensors` (fp32, contiguous CPU)
// and adapter_config.json.
void write_peft_dir(const fs::path& dir, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                    const boost::json::object& config, std::vector<fs::path>& written) {
  fs::create_directories(dir);
  std::vector<ckpt::SafetensorsTensor> st;
  for (const auto& [name, t] : tensors)
    st.push_back(ckpt::SafetensorsTensor{
        name, ckpt::DType::kFloat32, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
        std::span(static_cast<const std::byte*>(t.data_ptr()),
                  static_cast<size_t>(t.numel()) * sizeof(float))});
  ckpt::write_safetensors(dir / "adapter_model.safetensors", st, {{"format", "pt"}});
  write_text(dir / "adapter_config.json", boost::json::serialize(config) + "\n");
  written.push_back(dir / "adapter_model.safetensors");
  written.push_back(dir / "adapter_config.json");
}

}  // namespace

std::vector<fs::path> export_adapter_checkpoint(const fs::path& file, const fs::path& base_dir,
                                                const fs::path& out_dir, const fs::path& tokenizer) {
  const ckpt::Contents meta = ckpt::read_checkpoint_meta(file);
  const Config config = parse_config(meta.at(ckpt::kMetaConfig).text(), file.string() + ":/meta/config");
  const fs::path base = base_dir.empty() ? fs::path(config.model.from_pretrained) : base_dir;
  if (base.empty())
    throw InputError(fmt::format("{}: the run recorded no model.from_pretrained; pass --base DIR "
                                 "(the base model the adapter was trained on)",
                                 file.string()));
  HfModelInfo info;
  Transformer model = load_hf_model(base, &info);
  const LoadedAdapter loaded = attach_adapter_checkpoint(file, *model);
  const AdapterSpec& spec = loaded.adapters->spec();
  const ModelSpec& m = model->spec();
  std::vector<fs::path> written;
  at::NoGradGuard no_grad;
  const fs::path merged_dir = out_dir / "merged";
  const auto common = [&](const char* type) {
    boost::json::object c;
    c["peft_type"] = type;
    c["task_type"] = "CAUSAL_LM";
    // LoRA goes on the base; a prompt / prefix adapter on merged/ (the base with LoRA merged in,
    // or the base itself: either way the model it was trained with).
    c["base_model_name_or_path"] =
        fs::absolute(std::string(type) == "LORA" ? base : merged_dir).string();
    c["inference_mode"] = true;
    c["revision"] = nullptr;
    return c;
  };
  // A re-export into an earlier adapter export: its PEFT folders go first, so that none of a
  // task or method this checkpoint lacks is left pointing at the new merged/ (check_export_dir
  // has refused any other layout; only folders holding an adapter_config.json are removed).
  const auto remove_peft_dir = [](const fs::path& dir) {
    if (fs::is_regular_file(dir / "adapter_config.json")) fs::remove_all(dir);
  };
  remove_peft_dir(out_dir / "adapter");
  if (fs::is_directory(out_dir / "adapters")) {
    for (const auto& entry : fs::directory_iterator(out_dir / "adapters"))
      remove_peft_dir(entry.path());
  }
  // PEFT adapters first (the LoRA weights before they are merged below).
  std::vector<std::pair<std::string, at::Tensor>> lora_tensors;
  boost::json::object lora_config = common("LORA");
  if (spec.lora) {
    boost::json::array targets;
    for (const auto& t : spec.lora_targets) targets.emplace_back(t);
    lora_config["r"] = spec.lora_rank;
    lora_config["lora_alpha"] = spec.lora_alpha;
    lora_config["lora_dropout"] = spec.lora_dropout;
    lora_config["target_modules"] = std::move(targets);
    lora_config["fan_in_fan_out"] = m.family == ModelFamily::Gpt2;
    lora_config["bias"] = "none";
    lora_config["init_lora_weights"] = true;
    lora_config["use_rslora"] = false;
    lora_config["use_dora"] = false;
    for (const Adapters::Lora& l : loaded.adapters->lora()) {
      lora_tensors.emplace_back("base_model.model." + l.module + ".lora_A.weight", l.a.to(at::kCPU).contiguous());
      lora_tensors.emplace_back("base_model.model." + l.module + ".lora_B.weight", l.b.to(at::kCPU).contiguous());
    }
  }
  if (spec.prompt || spec.prefix) {
    const int64_t n = spec.prompt ? spec.prompt_tokens : spec.prefix_tokens;
    const at::Tensor table =
        (spec.prompt ? loaded.adapters->prompt() : loaded.adapters->fold_prefix()).to(at::kCPU).contiguous();
    boost::json::object c = common(spec.prompt ? "PROMPT_TUNING" : "PREFIX_TUNING");
    c["num_virtual_tokens"] = n;
    c["num_transformer_submodules"] = 1;
    c["num_layers"] = m.n_layers;
    if (spec.prompt) {
      c["token_dim"] = m.d_model;
      c["num_attention_heads"] = m.n_heads;
      c["prompt_tuning_init"] = "RANDOM";
    } else {
      c["token_dim"] = m.n_kv_heads * m.head_dim;
      c["num_attention_heads"] = m.n_kv_heads;
      c["encoder_hidden_size"] = m.n_kv_heads * m.head_dim;
      c["prefix_projection"] = false;  // folded
    }
    // One directory per task of the run (a shared table: its one block in each).
    std::vector<std::string> names = loaded.task_names;
    if (names.empty()) names.push_back("default");
    if (spec.blocks > 1 && static_cast<int64_t>(names.size()) != spec.blocks)
      throw InputError(fmt::format("{}: {} table blocks but {} task names in /data/task_names",
                                   file.string(), spec.blocks, names.size()));
    for (size_t k = 0; k < names.size(); ++k) {
      const int64_t b = spec.blocks == 1 ? 0 : static_cast<int64_t>(k);
      write_peft_dir(out_dir / "adapters" / names[k],
                     {{"prompt_embeddings", table.narrow(0, b * n, n).contiguous()}}, c, written);
    }
  }
  if (spec.lora) write_peft_dir(out_dir / "adapter", lora_tensors, lora_config, written);
  // The merged model (LoRA folded into the weights; the base itself otherwise).
  if (spec.lora) model->merge_lora();
  HfExportOptions options;
  options.source_model = base;
  options.eos_token_ids = info.eos_token_ids;
  options.bos_token_id = info.bos_token_id;
  options.pad_token_id = info.pad_token_id;
  options.tokenizer = tokenizer;
  export_hf_model(*model, merged_dir, options);
  for (const auto& entry : fs::directory_iterator(merged_dir)) written.push_back(entry.path());
  return written;
}

}  // namespace pft
