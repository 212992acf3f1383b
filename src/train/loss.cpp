#include "train/loss.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "core/error.h"

namespace pft {

namespace {

// Note [fused cross entropy]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// The output layer's logits are the largest tensor of a step (tokens x vocabulary: 206 MB per
// 1,024 tokens of GPT-2's 50,257-way vocabulary in fp32). The textbook loss - log_softmax, then
// nll, then their two backward kernels - allocates and streams through three more tensors of that
// size, and on the CPU a fresh allocation that large also costs a page fault per 4 KiB page on
// first touch; together that was a fifth of a small GPT-2 step (docs/performance.md, "Data
// parallel"). Here one node does it all in one buffer:
//   forward:  w = log_softmax(x) (in place, one row-wise kernel); nll = -w[target];
//             loss_sum = sum(weight * nll); then, still in forward, the gradient
//             d loss_sum / d x = weight * (softmax(x) - onehot(target)) = weight * (exp(w) - onehot)
//             is written into w in place (exp_, one scatter, one row scale);
//   backward: scales that buffer by the incoming gradient (a scalar) and returns it.
// The gradient is the same expression log_softmax's backward evaluates, up to rounding.
// Constraints that follow: the buffer is consumed by the first backward (a second one, or
// retain_graph, throws); and in place on the logits' own storage only when the caller says they
// are dead (consume_logits) and they are fp32 and contiguous on the CPU (on CUDA the caching
// allocator makes a copy cheap, and aliasing log_softmax's output to its input is not a
// documented guarantee there). Under bf16/fp16 autocast the logits are converted to fp32 first
// (a copy anyway) and the gradient is returned in the logits' dtype.
class FusedCrossEntropy : public torch::autograd::Function<FusedCrossEntropy> {
 public:
  // logits (N, V); targets (N) int64 in [0, V); weight (N) float32. Returns {loss_sum (0-dim),
  // nll (N), not differentiable}.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& logits,
                                                const at::Tensor& targets,
                                                const at::Tensor& weight, bool consume) {
    const bool in_place = consume && logits.scalar_type() == at::kFloat &&
                          logits.is_contiguous() && logits.device().is_cpu();
    at::Tensor work;
    if (in_place) {
      work = logits;
      at::_log_softmax_out(work, work, /*dim=*/1, /*half_to_float=*/false);
    } else {
      work = at::_log_softmax(logits.to(at::kFloat), /*dim=*/1, /*half_to_float=*/false);
    }
    const at::Tensor index = targets.unsqueeze(1);
    at::Tensor nll = work.gather(1, index).squeeze(1).neg_();
    at::Tensor loss_sum = (nll * weight).sum();
    work.exp_();
    work.scatter_add_(1, index, at::full({work.size(0), 1}, -1.0, work.options()));
    work.mul_(weight.unsqueeze(1));
    ctx->saved_data["grad"] = work;
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    ctx->mark_non_differentiable({nll});
    return {loss_sum, nll};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto it = ctx->saved_data.find("grad");
    if (it == ctx->saved_data.end())
      throw RuntimeFailure("masked_cross_entropy: the loss was back-propagated twice; its fused "
                           "gradient buffer is consumed by the first backward (no retain_graph)");
    at::Tensor grad = it->second.toTensor();
    ctx->saved_data.erase(it);
    if (grads[0].defined()) grad.mul_(grads[0]);
    else grad.zero_();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    if (grad.scalar_type() != dtype) grad = grad.to(dtype);
    return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

LossSums masked_cross_entropy(const at::Tensor& logits, const Batch& batch, int64_t num_tasks,
                              bool consume_logits) {
  const int64_t vocab = logits.size(-1);
  // Targets under a zero mask may hold anything (-100, -1); keep them in range.
  const at::Tensor targets = batch.targets.reshape({-1}).clamp(0, vocab - 1).to(at::kLong);
  const at::Tensor mask = batch.loss_mask.reshape({-1}).to(at::kFloat);
  const torch::autograd::variable_list outputs =
      FusedCrossEntropy::apply(logits.reshape({-1, vocab}), targets, mask, consume_logits);
  LossSums out;
  out.loss_sum = outputs[0];
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(logits.device());
  if (num_tasks <= 0 || !batch.task_ids.defined() || batch.task_ids.numel() == 0) {
    out.task_loss_sum = at::zeros({std::max<int64_t>(num_tasks, 0)}, f32);
    out.task_tokens = at::zeros({std::max<int64_t>(num_tasks, 0)}, f32);
    return out;
  }
  at::NoGradGuard no_grad;
  const at::Tensor masked = outputs[1] * mask;
  // Slot 0 collects tokens of no task (-1) and out-of-range ids; task k goes to slot k + 1.
  at::Tensor slot = batch.task_ids.reshape({-1}) + 1;
  slot = slot.masked_fill(slot.gt(num_tasks) | slot.lt(0), 0);
  at::Tensor loss_by = at::zeros({num_tasks + 1}, f32).index_add_(0, slot, masked);
  at::Tensor tokens_by = at::zeros({num_tasks + 1}, f32).index_add_(0, slot, mask);
  out.task_loss_sum = loss_by.narrow(0, 1, num_tasks);
  out.task_tokens = tokens_by.narrow(0, 1, num_tasks);
  return out;
}

}  // namespace pft
