// pft's side of tests/bench/memory_bench.sh: one configuration per process, so that the peak
// resident set (VmHWM) belongs to it alone. Two modes:
//
//   memory_bench loss fused|chunked VOCAB ROWS D_MODEL CHUNK_ROWS REPEATS
//     the output projection + cross entropy + backward on random hidden states (ROWS, D_MODEL)
//     and weight (VOCAB, D_MODEL), every row a target: at::linear then masked_cross_entropy
//     (fused), or chunked_cross_entropy (train.loss_chunk_rows = CHUNK_ROWS);
//   memory_bench ckpt none|all|every_k:N FAMILY D_MODEL LAYERS SEQ BATCH STEPS LOSS_CHUNK_ROWS
//     forward + loss + backward of a random-weight model (vocabulary 50,257) on random tokens,
//     with train.activation_checkpointing as given; the loss chunked (train.loss_chunk_rows =
//     LOSS_CHUNK_ROWS), or fused over full logits with 0.
// Prints one line:
//   MEM base_mb=<VmRSS before the work> peak_mb=<VmHWM after> seconds=<best repeat/step>
//   tok_per_s=<rows or tokens per best second> loss=<last loss>
// on one torch thread (comparisons are side by side in one script run, same machine).
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "config/config.h"
#include "model/transformer.h"
#include "train/loss.h"

namespace {

// A line "Key:   1234 kB" of /proc/self/status, in MiB.
double status_mb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::atof(line.c_str() + key.size() + 1) / 1024.0;
  return -1.0;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

pft::Batch all_targets(int64_t b, int64_t t, int64_t vocab) {
  const auto opts = at::TensorOptions().dtype(at::kLong);
  pft::Batch batch;
  batch.input_ids = at::randint(vocab, {b, t}, opts);
  batch.targets = at::randint(vocab, {b, t}, opts);
  batch.loss_mask = at::ones({b, t});
  batch.position_ids = at::arange(t, opts).unsqueeze(0).repeat({b, 1});
  return batch;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  at::manual_seed(1);
  const std::string mode = argc > 1 ? argv[1] : "";
  double best = std::numeric_limits<double>::infinity(), loss = 0.0, base = 0.0;
  int64_t items = 0;
  try {
    if (mode == "loss" && argc == 8) {
      const std::string variant = argv[2];
      const int64_t vocab = std::atoll(argv[3]), rows = std::atoll(argv[4]),
                    c = std::atoll(argv[5]);
      const int64_t chunk = std::atoll(argv[6]), repeats = std::atoll(argv[7]);
      const at::Tensor hidden = (at::randn({1, rows, c}) * 0.5).requires_grad_(true);
      const at::Tensor weight = (at::randn({vocab, c}) * 0.02).requires_grad_(true);
      const pft::Batch batch = all_targets(1, rows, vocab);
      items = rows;
      base = status_mb("VmRSS");
      for (int64_t r = 0; r < repeats; ++r) {
        const double t0 = now_s();
        pft::LossSums sums;
        if (variant == "chunked") {
          sums = pft::chunked_cross_entropy(hidden, weight, batch, 0, chunk);
        } else {
          at::Tensor logits = at::linear(hidden, weight);
          sums = pft::masked_cross_entropy(logits, batch, 0, /*consume_logits=*/true);
        }
        sums.loss_sum.backward();
        best = std::min(best, now_s() - t0);
        loss = sums.loss_sum.item<double>() / static_cast<double>(rows);
      }
    } else if (mode == "ckpt" && argc == 10) {
      pft::ModelConfig m;
      m.family = argv[3];
      m.vocab_size = 50257;
      m.d_model = std::atoll(argv[4]);
      m.n_layers = std::atoll(argv[5]);
      m.n_heads = m.d_model / 64;
      const int64_t seq = std::atoll(argv[6]), b = std::atoll(argv[7]), steps = std::atoll(argv[8]);
      const int64_t loss_chunk = std::atoll(argv[9]);
      m.max_seq_len = seq;
      pft::Transformer model(pft::model_spec_from_config(m));
      model->reset_parameters(1);
      model->train();
      const pft::Config parsed = pft::parse_config(
          "train:\n  steps: 1\n  global_batch_size: 1\n  lr: 0.001\n  activation_checkpointing: " +
              std::string(argv[2]) + "\n",
          "bench");
      model->set_activation_checkpointing(parsed.train.activation_checkpointing);
      const pft::Batch batch = all_targets(b, seq, m.vocab_size);
      items = b * seq;
      base = status_mb("VmRSS");
      for (int64_t s = 0; s < steps; ++s) {
        for (at::Tensor& p : model->parameters())
          if (p.grad().defined()) p.mutable_grad().zero_();
        const double t0 = now_s();
        pft::LossSums sums;
        if (loss_chunk > 0) {
          sums = pft::chunked_cross_entropy(
              model->forward_hidden(batch.input_ids, batch.position_ids, {}),
              model->output_weight(), batch, 0, loss_chunk);
        } else {
          at::Tensor logits = model->forward(batch.input_ids, batch.position_ids, {});
          sums = pft::masked_cross_entropy(logits, batch, 0, true);
        }
        sums.loss_sum.backward();
        if (s > 0 || steps == 1) best = std::min(best, now_s() - t0);  // step 0 warms up
        loss = sums.loss_sum.item<double>() / static_cast<double>(items);
      }
    } else {
      std::fprintf(stderr,
                   "usage: memory_bench loss fused|chunked VOCAB ROWS D_MODEL CHUNK_ROWS REPEATS\n"
                   "       memory_bench ckpt none|all|every_k:N FAMILY D_MODEL LAYERS SEQ BATCH "
                   "STEPS LOSS_CHUNK_ROWS\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "memory_bench: %s\n", e.what());
    return 1;
  }
  std::printf("MEM base_mb=%.1f peak_mb=%.1f seconds=%.4f tok_per_s=%.1f loss=%.6f\n", base,
              status_mb("VmHWM"), best, static_cast<double>(items) / best, loss);
  return 0;
}
