// Model FLOPs per training token and the GPU peaks that turn them into MFU (model FLOPs
// utilisation), for the progress line and metrics.jsonl (issue 21, item 5).
//
// Note [model FLOPs]: the count of the PaLM paper (Chowdhery et al. 2022, appendix B): per token,
// a forward pass costs 2 FLOPs per weight of every matmul (the blocks' projections and the output
// head; embedding lookups and norms are not matmuls) plus 2 x 2 x n_layers x seq_len x d_model
// for attention's Q K^T and (scores) V. Backward costs twice the forward for a weight that is
// trained (the input's gradient and the weight's), once for a frozen one (the input's only);
// attention has no weights and always costs twice. So full fine-tuning is 6 N + 12 L T d and a
// PEFT method's frozen base 4 N + 12 L T d (the adapters' own few FLOPs left out). Model FLOPs,
// not hardware FLOPs: activation checkpointing's recomputed forward is not counted (it is work
// the model does not need), which is how MFU is usually reported, so MFU falls when it is on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"

namespace pft {

// Matmul weights of the model (blocks' projections and the output head), elements.
int64_t matmul_params(const ModelConfig& m);

// Training FLOPs per token of a sequence of `seq_len` tokens (Note [model FLOPs]).
double training_flops_per_token(const ModelConfig& m, int64_t seq_len, Method method);

// What one rank did per second: the step's tokens over all ranks / its time / the ranks (the
// `tokens_per_s_per_rank` of metrics.jsonl, the progress line's "/rank" and the trace's counter).
inline double tokens_per_s_per_rank(int64_t tokens, double step_time_s, int world_size) {
  return step_time_s > 0 && world_size > 0
             ? static_cast<double>(tokens) / step_time_s / static_cast<double>(world_size)
             : 0.0;
}

// Dense peak FLOP/s of a GPU by its CUDA device name (cudaDeviceProp::name, e.g. "NVIDIA H100 80GB
// HBM3") for the precision training runs its matmuls in (bf16/fp16 tensor cores, or plain fp32:
// pft leaves TF32 off); nullopt for a device not in the table (no MFU then, only FLOP/s).
std::optional<double> gpu_peak_flops(const std::string& device_name, Precision precision);

// The CUDA device name of `device` ("cuda:<n>"), e.g. "NVIDIA H100 80GB HBM3"; "" for the CPU.
std::string device_name(const std::string& device);

}  // namespace pft
