// Hashes of model state, "xxh3-64:<hex>" (ckpt/format.h's checksum text): what bitwise-resume
// tests compare and what adapter checkpoints record about their frozen base.
#pragma once

#include <torch/nn/module.h>

#include <optional>
#include <string>

#include "model/flat_params.h"

namespace pft {

// XXH3-64 of every parameter byte (group by group, slots in order; padding excluded): the final
// parameter hash of a run. Not collective; copies device buffers to the host.
std::string parameter_hash(const FlatParameters& params);

// XXH3-64 of every parameter of `module` (named_parameters() order): the base-model hash adapter
// checkpoints record (/trainable/base_model_hash). With `as`, of each parameter cast to that
// dtype first: the hash an fp32 base would have had stored as model.base_dtype bf16/fp16 (the
// cast rounds as the import's copy_ does, so the bytes are the same).
std::string module_hash(torch::nn::Module& module, std::optional<at::ScalarType> as = std::nullopt);

}  // namespace pft
