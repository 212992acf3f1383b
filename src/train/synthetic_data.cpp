#include "train/synthetic_data.h"

#include <algorithm>

#include "core/error.h"

namespace pft {

namespace {

// SplitMix64: a tiny counter-seeded generator; good enough for synthetic tokens and stable
// across platforms and library versions (unlike std:: distributions).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  int64_t uniform(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

Batch allocate(int64_t rows, int64_t seq_len, at::Device device, bool with_doc_ids) {
  const auto opts = at::TensorOptions().device(device);
  Batch b;
  b.input_ids = at::zeros({rows, seq_len}, opts.dtype(at::kLong));
  b.targets = at::zeros({rows, seq_len}, opts.dtype(at::kLong));
  b.loss_mask = at::zeros({rows, seq_len}, opts.dtype(at::kFloat));
  b.position_ids = at::zeros({rows, seq_len}, opts.dtype(at::kLong));
  if (with_doc_ids) b.doc_ids = at::zeros({rows, seq_len}, opts.dtype(at::kInt));
  b.task_ids = at::full({rows, seq_len}, -1, opts.dtype(at::kLong));
  return b;
}

}  // namespace

SyntheticTokenSource::SyntheticTokenSource(const SyntheticDataOptions& options, at::Device device)
    : options_(options), device_(device) {
  PFT_ASSERT(options.vocab_size >= 2 && options.seq_len >= 2 && options.rows >= 1,
             "synthetic source needs vocab_size >= 2, seq_len >= 2, rows >= 1");
  if (!device.is_cpu()) host_ = allocate(options.rows, options.seq_len, at::kCPU, options.packed);
  for (auto* v : {&tok_, &tok_pos_, &tok_doc_, &tok_task_}) v->resize(options.seq_len + 1);
}

Batch SyntheticTokenSource::make_batch() const {
  return allocate(options_.rows, options_.seq_len, device_, options_.packed);
}

int64_t SyntheticTokenSource::fill(int64_t first_sample, Batch& batch) {
  Batch& host = device_.is_cpu() ? batch : host_;
  const int64_t T = options_.seq_len;
  const int64_t K = std::min(options_.vocab_size, kMaxAlphabet);
  const int64_t min_len = options_.packed ? std::max<int64_t>(2, T / 8) : T + 1;
  const int64_t max_len = options_.packed ? std::max<int64_t>(min_len, T / 2) : T + 1;

  int64_t* input = host.input_ids.data_ptr<int64_t>();
  int64_t* target = host.targets.data_ptr<int64_t>();
  float* mask = host.loss_mask.data_ptr<float>();
  int64_t* pos = host.position_ids.data_ptr<int64_t>();
  int32_t* doc = options_.packed ? host.doc_ids.data_ptr<int32_t>() : nullptr;
  int64_t* task = host.task_ids.data_ptr<int64_t>();

  // One row of T + 1 tokens: inputs are [0, T), targets [1, T].
  std::vector<int64_t>& tok = tok_;
  std::vector<int64_t>& tok_pos = tok_pos_;
  std::vector<int64_t>& tok_doc = tok_doc_;
  std::vector<int64_t>& tok_task = tok_task_;
  int64_t targets_total = 0;
  for (int64_t r = 0; r < options_.rows; ++r) {
    const auto sample = static_cast<uint64_t>(first_sample + r);
    SplitMix64 rng{options_.seed * 0xD1B54A32D192ED03ULL ^ (sample + 1) * 0x9E3779B97F4A7C15ULL};
    rng.next();
    int64_t p = 0, d_index = 0;
    while (p < T + 1) {
      const int64_t len = min_len + rng.uniform(max_len - min_len + 1);
      const int64_t start = rng.uniform(K);
      const int64_t stride = 1 + rng.uniform(kNumTasks);
      for (int64_t j = 0; j < len && p < T + 1; ++j, ++p) {
        int64_t t = (start + j * stride) % K;
        if (rng.uniform(20) == 0) t = rng.uniform(K);
        tok[p] = t;
        tok_pos[p] = j;
        tok_doc[p] = d_index;
        tok_task[p] = stride - 1;
      }
      ++d_index;
    }
    const int64_t base = r * T;
    for (int64_t t = 0; t < T; ++t) {
      const bool same_doc = tok_doc[t] == tok_doc[t + 1];
      input[base + t] = tok[t];
      target[base + t] = same_doc ? tok[t + 1] : 0;
      mask[base + t] = same_doc ? 1.0f : 0.0f;
      pos[base + t] = tok_pos[t];
      if (doc != nullptr) doc[base + t] = static_cast<int32_t>(tok_doc[t]);
      task[base + t] = same_doc ? tok_task[t] : -1;
      targets_total += same_doc ? 1 : 0;
    }
  }
  if (!device_.is_cpu()) {
    batch.input_ids.copy_(host.input_ids);
    batch.targets.copy_(host.targets);
    batch.loss_mask.copy_(host.loss_mask);
    batch.position_ids.copy_(host.position_ids);
    if (options_.packed) batch.doc_ids.copy_(host.doc_ids);
    batch.task_ids.copy_(host.task_ids);
  }
  return targets_total;
}

int64_t first_sample_index(int64_t step, int64_t global_batch, int rank, int world_size,
                           int64_t micro, int64_t micro_batch) {
  return step * global_batch + rank * (global_batch / world_size) + micro * micro_batch;
}

}  // namespace pft
