// Torch tensors <-> checkpoint datasets (contract: train/checkpoint_tensors.h).
#include "train/checkpoint_tensors.h"

#include <vector>

#include "core/error.h"
#include "core/format.h"

namespace pft {

using ckpt::DType;

DType checkpoint_dtype(c10::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kChar:
      return DType::kInt8;
    case at::kShort:
      return DType::kInt16;
    case at::kInt:
      return DType::kInt32;
    case at::kLong:
      return DType::kInt64;
    case at::kByte:
      return DType::kUInt8;
    case at::kBool:
      return DType::kBool;
    default:
      break;
  }
  throw RuntimeFailure(
      fmt::format("checkpoint: no checkpoint dtype for torch dtype {}", c10::toString(t)));
}

c10::ScalarType torch_dtype(DType d) {
  switch (d) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kFloat64:
      return at::kDouble;
    case DType::kFloat16:
      return at::kHalf;
    case DType::kBFloat16:
      return at::kBFloat16;
    case DType::kInt8:
      return at::kChar;
    case DType::kInt16:
      return at::kShort;
    case DType::kInt32:
      return at::kInt;
    case DType::kInt64:
      return at::kLong;
    case DType::kUInt8:
      return at::kByte;
    case DType::kBool:
      return at::kBool;
    case DType::kString:
      break;
  }
  throw InputError("checkpoint: a text dataset where a tensor was expected");
}

at::Tensor dataset_view(const ckpt::Dataset& d) {
  return at::from_blob(const_cast<std::byte*>(d.bytes.data()), d.shape,
                       at::TensorOptions().dtype(torch_dtype(d.dtype)));
}

namespace {

void check_fits(const ckpt::Dataset& d, c10::ScalarType dtype, const std::vector<int64_t>& shape,
                const std::string& file) {
  if (d.dtype != checkpoint_dtype(dtype) || d.shape != shape)
    throw InputError(
        fmt::format("checkpoint {}: dataset {} is {} {}, the run expects {} {}; the "
                    "checkpoint does not fit this model",
                    file, d.path, ckpt::dtype_name(d.dtype), fmt::join(d.shape, "x"),
                    ckpt::dtype_name(checkpoint_dtype(dtype)), fmt::join(shape, "x")));
}

}  // namespace

void copy_dataset_into(const ckpt::Dataset& d, at::Tensor dst, const std::string& file) {
  check_fits(d, dst.scalar_type(), std::vector<int64_t>(dst.sizes().begin(), dst.sizes().end()),
             file);
  at::NoGradGuard no_grad;
  dst.copy_(dataset_view(d));
}

void copy_dataset_range_into(const ckpt::Dataset& d, const std::vector<int64_t>& shape,
                             int64_t begin, at::Tensor dst, const std::string& file) {
  check_fits(d, dst.scalar_type(), shape, file);
  at::NoGradGuard no_grad;
  dst.copy_(dataset_view(d).reshape({-1}).narrow(0, begin, dst.numel()));
}

}  // namespace pft
