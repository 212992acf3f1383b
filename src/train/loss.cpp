#include "train/loss.h"

#include <algorithm>

namespace pft {

LossSums masked_cross_entropy(const at::Tensor& logits, const Batch& batch, int64_t num_tasks) {
  const int64_t vocab = logits.size(-1);
  // (B*T,) per-token negative log-likelihood, in fp32 whatever the logits' dtype.
  const at::Tensor nll = at::nll_loss(
      at::log_softmax(logits.reshape({-1, vocab}), /*dim=*/-1, at::kFloat),
      // Targets under a zero mask may hold anything (-100, -1); keep them in range.
      batch.targets.reshape({-1}).clamp(0, vocab - 1), /*weight=*/{}, at::Reduction::None);
  const at::Tensor mask = batch.loss_mask.reshape({-1}).to(at::kFloat);
  const at::Tensor masked = nll * mask;
  LossSums out;
  out.loss_sum = masked.sum();
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(logits.device());
  if (num_tasks <= 0 || !batch.task_ids.defined() || batch.task_ids.numel() == 0) {
    out.task_loss_sum = at::zeros({std::max<int64_t>(num_tasks, 0)}, f32);
    out.task_tokens = at::zeros({std::max<int64_t>(num_tasks, 0)}, f32);
    return out;
  }
  at::NoGradGuard no_grad;
  // Slot 0 collects tokens of no task (-1) and out-of-range ids; task k goes to slot k + 1.
  at::Tensor slot = batch.task_ids.reshape({-1}) + 1;
  slot = slot.masked_fill(slot.gt(num_tasks) | slot.lt(0), 0);
  at::Tensor loss_by = at::zeros({num_tasks + 1}, f32).index_add_(0, slot, masked.detach());
  at::Tensor tokens_by = at::zeros({num_tasks + 1}, f32).index_add_(0, slot, mask);
  out.task_loss_sum = loss_by.narrow(0, 1, num_tasks);
  out.task_tokens = tokens_by.narrow(0, 1, num_tasks);
  return out;
}

}  // namespace pft
