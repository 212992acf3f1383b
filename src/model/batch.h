// One micro-batch of packed rows, as the loader hands it to the trainer and the trainer hands it
// to the model.
//
// A row holds one or more documents back to back. Each document starts its positions at 0 and
// attends only to itself (doc_ids); targets are the next token, counted where loss_mask is 1
// (prompt tokens, padding and the last token of a document are usually 0). All tensors are
// (B, T) and live on the model's device.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace pft {

struct Batch {
  at::Tensor input_ids;     // int64 (B, T)
  at::Tensor targets;       // int64 (B, T): next token; where loss_mask == 0 it counts for
                            // nothing (the data layer writes a vocabulary id there, never a
                            // virtual token of prompt tuning, but other callers may write any
                            // value): read it only under loss_mask 1, or clamp it
  at::Tensor loss_mask;     // float32 (B, T): 1 where the target counts in the loss
  at::Tensor position_ids;  // int64 (B, T): restart at 0 at each document start in a row
  at::Tensor doc_ids;       // int32 (B, T): document index within the row (0,0,0,1,1,2,...);
                            // attention never crosses documents; undefined or empty = one
                            // document per row (plain causal attention, the fast path)
  at::Tensor task_ids;      // int64 (B, T): task of each token (-1 = none), for per-task sums

  // loss_mask.sum() as int64. Synchronises with the device (reads one number back).
  int64_t num_target_tokens() const { return loss_mask.sum(at::kLong).item<int64_t>(); }
};

}  // namespace pft
