// AdamW over flat parameter buffers, and global-norm gradient clipping.
//
// One fused update per group buffer (at::_fused_adamw_, which has CPU and CUDA kernels in
// torch 2.11): no per-parameter loop. The update is torch.optim.AdamW's:
//
//   t += 1
//   p  *= 1 - lr * wd                         (decoupled decay; wd = 0 for no-decay groups)
//   m   = b1 * m + (1 - b1) * g
//   v   = b2 * v + (1 - b2) * g^2
//   p  -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
//
// State (exp_avg, exp_avg_sq: flat like the buffer; step: a 0-dim float32 tensor, as the fused
// kernel wants it) is per group and exposed for checkpoints. Not collective: every rank runs the
// same update on identical (already reduced) gradients.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "model/flat_params.h"

namespace pft {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // applied to decay groups only
};

class AdamW {
 public:
  struct GroupState {
    at::Tensor exp_avg;     // like data(g)
    at::Tensor exp_avg_sq;  // like data(g)
    at::Tensor step;        // 0-dim float32 on the buffer's device: updates taken
  };

  // Keeps a reference to `params`, which must outlive the optimizer.
  AdamW(FlatParameters& params, const AdamWOptions& options);

  // One update of every group at learning rate `lr`, from the grads as they are (unscale and
  // clip first).
  void step(double lr);

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n);  // checkpoint restore: also sets every group's step tensor
  const AdamWOptions& options() const { return options_; }
  size_t num_groups() const { return state_.size(); }
  GroupState& state(size_t g) { return state_.at(g); }
  const GroupState& state(size_t g) const { return state_.at(g); }

 private:
  FlatParameters& params_;
  AdamWOptions options_;
  std::vector<GroupState> state_;
  int64_t step_count_ = 0;
};

// Global L2 norm of all `grads` taken together (computed in fp32 or wider); when max_norm > 0,
// scales every grad in place by min(1, max_norm / (norm + 1e-6)) - torch.nn.utils.
// clip_grad_norm_'s rule. Returns the norm before clipping (may be inf/nan; then the grads are
// scaled by nan too, as torch does, and the caller should skip the step). Syncs with the device.
double clip_grad_norm(const std::vector<at::Tensor>& grads, double max_norm);

}  // namespace pft
