// Hashes of model state, "xxh3-64:<hex>" (ckpt/format.h's checksum text): what bitwise-resume
// tests compare and what adapter checkpoints record about their frozen base.
#pragma once

#include <torch/nn/module.h>

#include <string>

#include "model/flat_params.h"

namespace pft {

// XXH3-64 of every parameter byte (group by group, slots in order; padding excluded): the final
// parameter hash of a run. Not collective; copies device buffers to the host.
std::string parameter_hash(const FlatParameters& params);

// XXH3-64 of every parameter of `module` (named_parameters() order): the base-model hash adapter
// checkpoints record (/trainable/base_model_hash).
std::string module_hash(torch::nn::Module& module);

}  // namespace pft
