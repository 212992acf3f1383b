// The cross-rank sums of a training step (see grad_sync.h).
#include "train/grad_sync.h"

#include "comm/communicator.h"

namespace pft {

int64_t sum_over_ranks(Communicator* comm, int64_t value) {
  if (comm == nullptr || comm->size() <= 1) return value;
  return comm->all_reduce_scalar(value, ReduceOp::kSum);
}

void sum_over_ranks(Communicator* comm, at::Tensor& values) {
  if (comm == nullptr || comm->size() <= 1 || values.numel() == 0) return;
  comm->all_reduce(values, ReduceOp::kSum);
}

}  // namespace pft
