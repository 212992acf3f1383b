// Token-level cross entropy with a loss mask, as sums (not means), plus per-task sums.
//
// The trainer divides by the target-token count of the whole optimizer step (all micro-batches,
// all ranks), so gradient accumulation and data parallelism do not change the loss or the
// gradient: see Note [loss normalisation] in train/train_step.h.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "model/batch.h"

namespace pft {

struct LossSums {
  at::Tensor loss_sum;         // 0-dim float32: sum over masked tokens of -log p(target); has grad
  at::Tensor task_loss_sum;    // (num_tasks,) float32, detached: the same sum split by task id
  at::Tensor task_tokens;      // (num_tasks,) float32, detached: masked tokens per task
};

// `logits` (B, T, V) of any float dtype (bf16 under autocast); log-softmax is taken in fp32.
// Tokens whose batch.task_ids is -1 (or >= num_tasks) count in loss_sum but in no task.
// `num_tasks` may be 0 (no per-task sums; the two task tensors are then empty).
//
// The loss is one fused autograd node (Note [fused cross entropy] in loss.cpp): its forward also
// computes d loss_sum / d logits, so its backward is a scale. With `consume_logits` the fp32 CPU
// logits' own storage holds that gradient (the caller must not read `logits` afterwards; the
// training step passes the model's output, which nothing else uses); otherwise they are copied.
// loss_sum may be back-propagated once (retain_graph is refused).
LossSums masked_cross_entropy(const at::Tensor& logits, const Batch& batch, int64_t num_tasks,
                              bool consume_logits = false);

// The same sums as masked_cross_entropy(at::linear(hidden, weight), ...) without the (B, T, V)
// logits (train.loss_chunk_rows; Note [chunked cross entropy] in loss.cpp):
//   hidden  (B, T, C) the final hidden states (TransformerImpl::forward_hidden), fp32
//   weight  (V, C) the output projection (TransformerImpl::output_weight(): the embedding when
//           tied, so its gradient joins the embedding's)
//   chunk_rows >= 1: rows per chunk, counting only rows whose loss_mask is nonzero (the other rows
//           get no logits at all)
//   matmul_dtype: the dtype of the logits matmul and of the gradient matmuls (fp32, or the
//           autocast dtype: bf16/fp16 as autocast would run at::linear); log-softmax is fp32.
// One autograd node: its forward also computes d loss / d hidden and d loss / d weight, so its
// backward is a scale (and it may be back-propagated once). Gradients are computed only for the
// inputs that require grad. Equal to the fused loss within float rounding (tests/train pin 1e-6
// relative in fp32). Throws InputError on mismatched shapes or chunk_rows < 1.
LossSums chunked_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight,
                               const Batch& batch, int64_t num_tasks, int64_t chunk_rows,
                               at::ScalarType matmul_dtype = at::kFloat);

}  // namespace pft
