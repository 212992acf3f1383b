// Exporting a checkpoint's model weights for other tools (`pft ckpt export`).
//
//   safetensors: OUT/model.safetensors with every /model tensor under its parameter name (pft's
//                names are Hugging Face's: model/transformer.h), original dtype, metadata
//                {"format": "pt", "pft_step": ..};
//   hf:          the same plus OUT/config.json with the Hugging Face config keys of the
//                architecture (GPT2LMHeadModel or LlamaForCausalLM), so
//                `AutoModelForCausalLM.from_pretrained(OUT)` loads it. Tokenizer files are not
//                copied (a path stored in a checkpoint is never followed).
//   gguf:        not here: a GGUF file needs the model mapping and quantization of the model
//                floor (model/gguf_export.h); `pft ckpt export --format gguf` goes through
//                train/gguf_checkpoint.h.
// The checkpoint is verified while read (ckpt/reader.h); a bad file throws InputError.
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

// The Hugging Face config.json text for the architecture record of a checkpoint
// (/meta/architecture: model.* keys). Throws InputError for a family HF cannot load.
std::string hf_config_json(const std::map<std::string, std::string>& architecture);

}  // namespace pft::ckpt
