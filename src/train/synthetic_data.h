// A deterministic, learnable synthetic token stream, for engine tests and benchmarks
// (data.source: synthetic).
//
// Sample i of the global stream depends only on (seed, i). With G = train.global_batch_size,
// W ranks and micro-batches of B rows, micro-batch m of rank r at step s holds the B samples
// starting at s*G + r*(G/W) + m*B: every rank count sees the same G samples in a step, split
// into disjoint slices (first_sample_index).
//
// A sample is a row of T tokens packed with documents (lengths drawn in [max(2, T/8),
// max(2, T/2)]), or one document per row when `packed` is false. A document is an arithmetic
// progression modulo K = min(vocab_size, 64): t_j = (a + j*d) mod K with a random start a and
// stride d in {1, 2, 3}; each token is replaced by a random one with probability 1/20. A model
// learns the stride from two tokens, so the loss falls from ln(vocab) towards the noise floor
// (~0.4 nats). The stride names the document's task (task id d - 1, kNumTasks = 3), so per-task
// sums are exercised. Targets are the next token of the same document; the last token of each
// document has loss_mask 0 (and task id -1). Positions restart at 0 in every document.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "model/batch.h"

namespace pft {

struct SyntheticDataOptions {
  uint64_t seed = 0;
  int64_t vocab_size = 2;  // >= 2
  int64_t seq_len = 2;     // T
  int64_t rows = 1;        // B: rows per micro-batch
  bool packed = true;      // several documents per row (doc_ids filled) or one per row
};

class SyntheticTokenSource {
 public:
  static constexpr int64_t kNumTasks = 3;
  static constexpr int64_t kMaxAlphabet = 64;

  SyntheticTokenSource(const SyntheticDataOptions& options, at::Device device);

  // A batch of (rows, seq_len) tensors on the device, to be filled again and again.
  Batch make_batch() const;

  // Writes samples first_sample .. first_sample + rows - 1 into `batch` (made by make_batch).
  // Returns the number of target tokens (loss_mask ones), computed on the host.
  int64_t fill(int64_t first_sample, Batch& batch);

  const SyntheticDataOptions& options() const { return options_; }

 private:
  SyntheticDataOptions options_;
  at::Device device_;
  Batch host_;  // CPU staging when the device is not the CPU
  // One row of T + 1 tokens being built: token, position in its document, document, task.
  std::vector<int64_t> tok_, tok_pos_, tok_doc_, tok_task_;
};

// First global sample index of micro-batch `micro` of `rank` at optimizer step `step`.
int64_t first_sample_index(int64_t step, int64_t global_batch, int rank, int world_size,
                           int64_t micro, int64_t micro_batch);

}  // namespace pft
