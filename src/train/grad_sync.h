// The cross-rank sums of a training step.
//
// Gradients do not go through here: the bucketed reducer of comm/reducer.h all-reduces them
// during the last backward pass. What is left are the small host-side sums a step needs - the
// step's target-token count (Note [loss normalisation] in train/train_step.h) and the reporting
// sums - over the step's Communicator.
//
// Every function here is collective over the communicator (all ranks call it, in the same order)
// and is a no-op without one (nullptr) or with one rank. Throws RuntimeFailure on communication
// failures.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace pft {

class Communicator;

// The sum of `value` over ranks.
int64_t sum_over_ranks(Communicator* comm, int64_t value);

// In place: `values` (1-D float64, on the host) becomes the element-wise sum over ranks.
void sum_over_ranks(Communicator* comm, at::Tensor& values);

}  // namespace pft
