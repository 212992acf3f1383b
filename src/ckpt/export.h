// Exporting a checkpoint's model weights for other tools (`pft ckpt export`).
//
//   safetensors: OUT/model.safetensors with every /model tensor under its parameter name (pft's
//                names are Hugging Face's: model/transformer.h), original dtype, metadata
//                {"format": "pt", "pft_step": ..};
//   hf:          the same plus OUT/config.json with the Hugging Face config keys of the
//                architecture (GPT2LMHeadModel or LlamaForCausalLM), so
//                `AutoModelForCausalLM.from_pretrained(OUT)` loads it. No tokenizer files (a path
//                stored in a checkpoint is never followed here): this is the private export of
//                `pft generate --checkpoint`. `pft ckpt export --format hf` goes through
//                train/hf_checkpoint.h, which adds generation_config.json and the run's
//                tokenizer, and exports adapter checkpoints.
//   gguf:        not here: a GGUF file needs the model mapping and quantization of the model
//                floor (model/gguf_export.h); `pft ckpt export --format gguf` goes through
//                train/gguf_checkpoint.h.
// The checkpoint is verified while read (ckpt/reader.h); a bad file throws InputError.
//
// Note [export layouts]: every directory an export writes means one thing, so that no reader
// picks up two things at once (transformers' from_pretrained applies an adapter_config.json it
// finds beside full weights, on top of them: a merged LoRA would count twice).
//   model layout     (full fine-tuning; --format safetensors | hf): OUT is the model.
//   adapter layout   (a PEFT run's checkpoint, train/hf_checkpoint.h): OUT/merged/ is the model
//                    (the base with LoRA merged in), OUT/adapter/ the LoRA as a PEFT adapter on
//                    the base, OUT/adapters/<task>/ each task's prompt / prefix block as a PEFT
//                    adapter on OUT/merged/; OUT itself holds nothing else.
// check_export_dir refuses to write one layout into a directory holding the other's files.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ckpt/reader.h"

namespace pft::ckpt {

enum class ExportFormat { kSafetensors, kHf };

// "safetensors" | "hf"; throws InputError otherwise.
ExportFormat parse_export_format(const std::string& name);

// Writes the export into `out_dir` (created when missing); returns the files written.
std::vector<std::filesystem::path> export_checkpoint(const std::filesystem::path& file,
                                                     ExportFormat format,
                                                     const std::filesystem::path& out_dir,
                                                     const ReadOptions& options = {});

enum class ExportLayout { kModel, kAdapter };

// Throws InputError (exit 2) naming `out_dir` and the file in the way when it already holds files
// of the other layout (or, for kAdapter, anything beside merged/, adapter/ and adapters/ that a
// model directory has: config.json, *.safetensors, adapter_config.json); a missing or empty
// directory, or one of the same layout (re-exported over), passes.
void check_export_dir(const std::filesystem::path& out_dir, ExportLayout layout);

// The Hugging Face config.json text for the architecture record of a checkpoint
// (/meta/architecture: model.* keys). Throws InputError for a family HF cannot load.
std::string hf_config_json(const std::map<std::string, std::string>& architecture);

}  // namespace pft::ckpt
