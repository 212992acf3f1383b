// `pft ckpt export FILE --format gguf --dtype f32|f16|q8_0 --out DIR`: a pft checkpoint as one
// GGUF file, DIR/model-<dtype>.gguf (model/gguf_export.h says what it holds).
//
//   full fine-tuning checkpoint  the /model tensors, the architecture of /meta/config;
//   adapter checkpoint (PEFT)    its base (--base, or the run's model.from_pretrained) with the
//                                LoRA updates merged in (TransformerImpl::merge_lora); prompt and
//                                prefix tuning are refused (a GGUF has no virtual tokens): the
//                                message says to use --format hf, the adapter checkpoint itself,
//                                or `pft generate --adapter`.
// The tokenizer (vocabulary, merges, special ids, chat template) comes from `tokenizer` when
// given, else the run's data.tokenizer (for runs on a pretrained model: its directory), else the
// base directory. Rank 0 / single process; not collective. InputError naming the file or flag.
#pragma once

#include <filesystem>
#include <string>

#include "model/gguf_export.h"

namespace pft {

struct GgufCheckpointExport {
  GgufDtype dtype = GgufDtype::kF32;
  std::filesystem::path base;       // adapter checkpoints: the base model directory (optional)
  std::filesystem::path tokenizer;  // overrides the run's tokenizer (optional)
  bool file_locking = false;        // HDF5 file locks while reading
};

GgufExportReport export_checkpoint_gguf(const std::filesystem::path& file,
                                        const std::filesystem::path& out_dir,
                                        const GgufCheckpointExport& request);

}  // namespace pft
