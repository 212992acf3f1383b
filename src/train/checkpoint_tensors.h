// Torch tensors <-> checkpoint datasets (ckpt::Dataset, torch-free): the dtype maps and the
// copies every reader of checkpoint tensors needs (restore, adapter loading).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

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

// Copies elements [begin, begin + dst.numel()) of dataset `d` (flattened, row-major) into 1-D
// `dst` after checking, as copy_dataset_into does, that `d` has dst's dtype and shape `shape`
// (a ZeRO-1 restore: a rank's part of a parameter's optimizer moments, train/optimizer.h).
void copy_dataset_range_into(const ckpt::Dataset& d, const std::vector<int64_t>& shape,
                             int64_t begin, at::Tensor dst, const std::string& file);

}  // namespace pft
