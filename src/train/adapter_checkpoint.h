// Adapter checkpoints outside training: `pft generate --adapter` and `pft ckpt export` rebuild a
// checkpoint's adapters (model/adapters.h) on a base model.
//
// The adapters' shapes come from the run's own config recorded in the checkpoint (/meta/config:
// train.method and peft.*) and its task list (/data/task_names, one table block per task); the
// tensors from /model. The base must be the one they were trained on: its hash (module_hash,
// train/checkpointing.h) must equal /trainable/base_model_hash.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace pft {

class TransformerImpl;
class Adapters;

struct LoadedAdapter {
  std::shared_ptr<Adapters> adapters;   // attached to the model
  std::vector<std::string> task_names;  // the table's blocks, in order
  std::string method;                   // train.method of the run
  std::string base_model_path;          // model.from_pretrained of the run
};

// Reads `file`, builds its adapters, loads them and attaches them to `model` (fp32, on the model's
// device). Throws InputError naming the file when it is not an adapter checkpoint or when `model`
// is not its base.
LoadedAdapter attach_adapter_checkpoint(const std::filesystem::path& file, TransformerImpl& model);

// The block of task `task` in `loaded` (prompt and prefix tables): its index, or 0 when the
// table is shared or `task` is empty and there is a single block. Throws InputError listing the
// tasks otherwise.
int64_t adapter_block(const LoadedAdapter& loaded, const std::string& task);

// `pft ckpt export ADAPTER --format hf [--base DIR]`: writes, under `out_dir`,
//   - the base with every LoRA update merged in, as a Hugging Face model directory (config.json +
//     model.safetensors) that needs no adapter code at all;
//   - the adapter in Hugging Face PEFT's format, adapter_config.json + adapter_model.safetensors
//     (PeftModel.from_pretrained(base, dir) loads it): for one block directly in `out_dir`, for a
//     table of several task blocks one directory per task, `out_dir/adapters/<task>/`. Prefix
//     tuning's MLP is folded (PEFT stores the folded prefixes too).
// `base_dir` empty = the run's model.from_pretrained. Returns the files written.
std::vector<std::filesystem::path> export_adapter_checkpoint(const std::filesystem::path& file,
                                                             const std::filesystem::path& base_dir,
                                                             const std::filesystem::path& out_dir);

}  // namespace pft
