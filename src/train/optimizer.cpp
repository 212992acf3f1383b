#include "train/optimizer.h"

#include "core/error.h"

namespace pft {

AdamW::AdamW(FlatParameters& params, const AdamWOptions& options)
    : params_(params), options_(options) {
  for (size_t g = 0; g < params.num_groups(); ++g) {
    const at::Tensor& data = params.data(g);
    state_.push_back(GroupState{
        at::zeros_like(data), at::zeros_like(data),
        at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(data.device()))});
  }
}

void AdamW::set_step_count(int64_t n) {
  step_count_ = n;
  for (GroupState& s : state_) s.step.fill_(static_cast<double>(n));
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_count_;
  for (size_t g = 0; g < state_.size(); ++g) {
    GroupState& s = state_[g];
    // The fused kernel reads the already-incremented count (torch.optim increments first too).
    s.step.add_(1.0);
    const double wd = params_.decay(g) ? options_.weight_decay : 0.0;
    at::_fused_adamw_({params_.data(g)}, {params_.grad(g)}, {s.exp_avg}, {s.exp_avg_sq},
                      /*max_exp_avg_sqs=*/{}, {s.step}, lr, options_.beta1, options_.beta2, wd,
                      options_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
}

double clip_grad_norm(const std::vector<at::Tensor>& grads, double max_norm) {
  at::NoGradGuard no_grad;
  if (grads.empty()) return 0.0;
  // Per-buffer norms in one foreach kernel, then the norm of the norms (what torch does).
  const std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2.0, at::kFloat);
  const at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2.0, {}, false, {});
  if (max_norm > 0) {
    const at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (const at::Tensor& g : grads) {
      at::Tensor t = g;
      t.mul_(coef.to(g.scalar_type()));
    }
  }
  return total.item<double>();
}

}  // namespace pft
