// `pft ckpt export FILE --format hf --out OUT [--base DIR] [--tokenizer P]`: a pft checkpoint as
// Hugging Face directories, in the layouts of Note [export layouts] (ckpt/export.h):
//
//   full fine-tuning checkpoint  OUT is the model: config.json, model.safetensors (fp32),
//                                generation_config.json and the tokenizer files
//                                (model/hf_export.h). AutoModelForCausalLM.from_pretrained(OUT).
//   adapter checkpoint (PEFT)    OUT/merged/    the base (--base, else the run's
//                                               model.from_pretrained) with every LoRA update
//                                               merged in (the base itself without LoRA), the
//                                               same files as above: no adapter code needed;
//                                OUT/adapter/   LoRA (lora, prompt_tuning+lora, ...) in PEFT's
//                                               format, adapter_config.json +
//                                               adapter_model.safetensors, on the base:
//                                               PeftModel.from_pretrained(base, OUT/adapter);
//                                OUT/adapters/<task>/  a prompt / prefix table, one PEFT adapter
//                                               per task of the run (a shared table: the same
//                                               block in each; a run without task names:
//                                               `default`), on OUT/merged/ (its
//                                               base_model_name_or_path). Prefix tuning's MLP is
//                                               folded, as PEFT stores it.
// No directory holds both full weights and an adapter_config.json (transformers would apply the
// adapter on top of weights that already contain it). Writing into an OUT of the other layout is
// refused (ckpt::check_export_dir, InputError: exit 2).
//
// The tokenizer: `tokenizer` when given, else the run's data.tokenizer (`byte`, a tokenizer.json,
// a directory, a GGUF file: for runs on a pretrained model its own); one that does not exist or
// that pft cannot read is refused before anything is written. A re-export into an OUT of the
// same layout first removes the earlier export's PEFT folders and tokenizer files. Rank 0 / single process; not collective. InputError naming
// the file or flag for every bad input.
#pragma once

#include <filesystem>
#include <vector>

namespace pft {

struct HfCheckpointExport {
  std::filesystem::path base;       // adapter checkpoints: the base model (optional)
  std::filesystem::path tokenizer;  // overrides the run's tokenizer (optional)
  bool file_locking = false;        // HDF5 file locks while reading
};

// Returns the files written.
std::vector<std::filesystem::path> export_checkpoint_hf(const std::filesystem::path& file,
                                                        const std::filesystem::path& out_dir,
                                                        const HfCheckpointExport& request);

}  // namespace pft
