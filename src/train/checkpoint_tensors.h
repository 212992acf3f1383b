// Torch tensors <-> checkpoint datasets (ckpt::Dataset, torch-free): the dtype maps and the
// copies every reader of checkpoint tensors needs (restore, adapter loading).
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "ckpt/contents.h"

namespace pft {

// The checkpoint dtype of a torch dtype; throws RuntimeFailure for one the format lacks.
ckpt::DType checkpoint_dtype(c10::ScalarType t);
// The torch dtype of a checkpoint dtype; throws InputError for text datasets.
c10::ScalarType torch_dtype(ckpt::DType d);

// A CPU tensor viewing `d`'s bytes (no copy; valid while `d` lives; do not write into it).
at::Tensor dataset_view(const ckpt::Dataset& d);

// Copies dataset `d` into `dst` (same dtype and shape; any device) without recording autograd.
// Throws InputError naming checkpoint `file`, the dataset and both shapes when they differ.
void copy_dataset_into(const ckpt::Dataset& d, at::Tensor dst, const std::string& file);

}  // namespace pft
