// One optimizer step: forward/backward over this rank's micro-batches, gradient reduction
// (overlapped with the last backward by comm/reducer.h), unscale (fp16), clipping, the AdamW
// update.
//
// Note [loss normalisation]: the objective of a step is the mean cross entropy over every target
// token of the step - all micro-batches, all ranks. The micro-batches are known before the first
// forward, so their target tokens are counted first (and summed over ranks); each micro-batch's
// masked loss SUM is then multiplied by 1 / total before backward. Gradients accumulate in the
// flat grad buffers and are summed over ranks, which gives exactly the gradient of the global
// mean: splitting the same samples into more micro-batches or more ranks changes nothing but
// floating-point summation order (tests/train/ddp_equivalence_test.cpp: 1, 2 and 4 ranks, with
// and without accumulation, agree within 1e-5 relative).
//
// Order of one step (all ranks, same order of collectives):
//   1. total = allreduce(sum of target tokens)            [collective]
//   2. zero grads; per micro-batch: forward under autocast, fp32 loss sum (fused, or chunked
//      with train.loss_chunk_rows), backward of
//      sum * scale / total  (scale = fp16 loss scale, else 1); during the last backward the
//      reducer all-reduces full buckets (SUM)               [collective]
//   3. reducer.finish(): the remaining buckets, wait for all [collective]; then the rows in use
//      of each row-sparse table (reducer.reduce_rows, set_rows_in_use) [collective]
//   4. fp16: unscale; on inf/nan skip 5-6 (identical on every rank: grads were reduced)
//   5. grad_norm = global norm, clip to train.grad_clip
//   6. AdamW step at the given lr; update the loss scale
//   7. loss and per-task sums allreduced for reporting     [collective]
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/batch.h"
#include "model/flat_params.h"
#include "train/grad_sync.h"
#include "comm/reducer.h"
#include "train/optimizer.h"
#include "train/precision.h"

namespace pft {

// The chunked loss (train.loss_chunk_rows, train/loss.h): the final hidden states (B, T, C) of one
// micro-batch and the output projection's weight (V, C); runs under the step's autocast scope.
using HiddenForwardFn = std::function<std::pair<at::Tensor, at::Tensor>(const Batch&)>;

struct TrainStepOptions {
  double grad_clip = 0.0;  // train.grad_clip; 0 = no clipping (the norm is still computed)
  Precision precision = Precision::kFp32;
  int64_t num_tasks = 0;   // size of the per-task sums
  at::Device device = at::kCPU;
  // Cross-rank: both null = a single process (no collectives, gradients as computed). With
  // several ranks both are needed; they must outlive the TrainStep.
  Communicator* comm = nullptr;  // token-count and reporting sums
  Reducer* reducer = nullptr;    // gradient all-reduce, over the same flat buffers
  // Row-sparse tables (comm/reducer.h): (slot, elements per row) of each; their rows in use are
  // given per step by set_rows_in_use().
  std::vector<std::pair<size_t, int64_t>> row_sparse;
  // train.loss_chunk_rows > 0: the loss is chunked_cross_entropy over hidden_forward's output
  // (which must then be set) instead of masked_cross_entropy over the ForwardFn's logits.
  int64_t loss_chunk_rows = 0;
  HiddenForwardFn hidden_forward;
};

struct StepResult {
  double loss = 0.0;           // global mean cross entropy over target tokens
  double grad_norm = 0.0;      // before clipping (after unscaling)
  int64_t target_tokens = 0;   // over all micro-batches and ranks
  bool skipped = false;        // no update: non-finite gradients (fp16 overflow) or no targets
  double loss_scale = 0.0;     // fp16: the scale used this step; else 0
  double comm_time_s = 0.0;    // waiting for gradient all-reduces after the last backward
  int64_t comm_bytes = 0;      // bytes this rank sent reducing gradients and, under ZeRO-1,
                               // all-gathering the updated parameters (Communicator::bytes_sent)
  std::vector<double> task_loss_sum;  // (num_tasks) global sums
  std::vector<double> task_tokens;    // (num_tasks) global counts
};

// Logits (B, T, V) of one micro-batch; runs under the step's autocast scope.
using ForwardFn = std::function<at::Tensor(const Batch&)>;

class TrainStep {
 public:
  // Keeps references to `params` and `optimizer`, which must outlive it.
  TrainStep(ForwardFn forward, FlatParameters& params, AdamW& optimizer,
            const TrainStepOptions& options);

  // One optimizer step at learning rate `lr` over this rank's `micro_batches`;
  // `target_tokens[m]` = micro_batches[m].num_target_tokens() (pass them when known without a
  // device sync, or leave empty to have them counted). Collective over options.comm.
  StepResult run(const std::vector<Batch>& micro_batches, const std::vector<int64_t>& target_tokens,
                 double lr);

  // The rows of the row-sparse tables the next run() uses (the same on every rank, ascending).
  void set_rows_in_use(std::vector<int64_t> rows) { rows_in_use_ = std::move(rows); }

  // Grads autograd replaced instead of accumulating into the flat buffer (should stay 0; see
  // Note [grads stay views] in model/flat_params.h).
  int64_t rebound_grads() const { return rebound_grads_; }
  // The fp16 loss scaler (checkpoints save and restore it); nullptr for fp32 and bf16.
  LossScaler* loss_scaler() { return scaler_.get(); }

 private:
  ForwardFn forward_;
  FlatParameters& params_;
  AdamW& optimizer_;
  TrainStepOptions options_;
  std::unique_ptr<LossScaler> scaler_;  // fp16 only
  // Device accumulators reused every step: loss sum, per-task loss sums and token counts.
  at::Tensor loss_acc_, task_loss_acc_, task_tokens_acc_;
  at::Tensor report_;  // (1 + 2 * num_tasks) float64 on the host: the reporting all-reduce
  int64_t rebound_grads_ = 0;
  std::vector<int64_t> rows_in_use_;
  at::ScalarType matmul_dtype_ = at::kFloat;  // of the chunked loss (autocast's for at::linear)
};

}  // namespace pft
