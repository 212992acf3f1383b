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

// The block of task `task` in `loaded` (prompt and prefix tables): its index; 0 when there is
// no per-task block (LoRA alone, a shared or one-task table), whatever `task` says. Throws
// InputError listing the tasks when the table has one block per task and `task` is empty
// ("--adapter-task is required") or names none of them.
int64_t adapter_block(const LoadedAdapter& loaded, const std::string& task);

// The adapter layout of `pft ckpt export ADAPTER --format hf` (train/hf_checkpoint.h says what
// each directory holds): out_dir/merged/ (the base, LoRA merged in, with `tokenizer`'s files:
// model/hf_export.h), out_dir/adapter/ (LoRA in Hugging Face PEFT's format) and
// out_dir/adapters/<task>/ (prompt / prefix blocks in PEFT's format). `base_dir` empty = the
// run's model.from_pretrained. The caller checks out_dir (ckpt::check_export_dir). Returns the
// files written.
std::vector<std::filesystem::path> export_adapter_checkpoint(const std::filesystem::path& file,
                                                             const std::filesystem::path& base_dir,
                                                             const std::filesystem::path& out_dir,
                                                             const std::filesystem::path& tokenizer);

}  // namespace pft
