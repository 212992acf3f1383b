#include "train/loss.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

// Turns fp32 log-probabilities `work` (N, V) into d (sum_i weight_i nll_i) / d logits, in place:
// softmax - onehot(target), scaled per row (exp_, one scatter, one row scale). Both loss nodes.
void log_probs_to_grad_(at::Tensor& work, const at::Tensor& index, const at::Tensor& weight) {
  work.exp_();
  work.scatter_add_(1, index, at::full({work.size(0), 1}, -1.0, work.options()));
  work.mul_(weight.unsqueeze(1));
}

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
    log_probs_to_grad_(work, index, weight);
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

// Note [chunked cross entropy]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// With the fused loss the (N, V) logits are still the largest tensor of a step (N = B*T rows, V
// up to 128,256: 2 GB in fp32 for 4,096 rows), and the output projection's backward reads them
// again as its gradient. Here the output projection and the loss are one node over chunks of
// rows, and only rows with a target get logits (prompt tokens and padding have loss_mask 0: their
// gradient is exactly zero in the fused loss too). Per chunk of n rows (h: (n, C) hidden, W: (V, C)):
//   forward:  z = h W^T (n, V) in matmul_dtype; w = log_softmax(z) in fp32 (in place); nll;
//             g = weight * (exp(w) - onehot(target)) = d loss / d z, as in the fused node;
//             d h = g W   (written into the rows of an (N, C) buffer),
//             d W += g^T h (an fp32 (V, C) accumulator);
//   backward: scales the two buffers by the incoming gradient (a scalar) and returns them.
// So the memory is (N x C) + (V x C) plus one chunk's (n x V), instead of N x V (twice, counting
// the linear's gradient). The alternative - keep only h and recompute z in backward - costs one
// more (n x V x C) matmul per chunk for the same peak (the chunk's logits), so it does not pay
// when the gradients are needed anyway. The arithmetic is that of at::linear's forward and
// backward on the same rows; only the summation order of d W differs (chunk by chunk), hence
// equal within float rounding, not bitwise. Under autocast the loss runs after the autocast
// scope closed, so the caller names the matmul dtype (the autocast dtype) instead of relying on
// thread-local state; the bf16 gradient matmuls add into fp32 per chunk.
class ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
 public:
  // hidden (N, C); weight (V, C); targets (N) int64 in [0, V); mask (N) float32. Returns
  // {loss_sum (0-dim), nll (N; 0 where mask is 0), not differentiable}.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& hidden, const at::Tensor& weight,
                                                const at::Tensor& targets, const at::Tensor& mask,
                                                int64_t chunk_rows, at::ScalarType matmul_dtype) {
    const bool grad_hidden = hidden.requires_grad(), grad_weight = weight.requires_grad();
    const at::Tensor rows = mask.ne(0).nonzero().squeeze(1);  // (M) rows with a target
    const int64_t m = rows.size(0);
    const auto f32 = hidden.options().dtype(at::kFloat);
    at::Tensor nll_all = at::zeros({hidden.size(0)}, f32);
    at::Tensor loss_sum = at::zeros({}, f32);
    at::Tensor d_hidden = grad_hidden ? at::zeros_like(hidden) : at::Tensor();
    at::Tensor d_weight = grad_weight ? at::zeros(weight.sizes(), f32) : at::Tensor();
    const at::Tensor w = weight.detach().to(matmul_dtype);  // (V, C), cast once
    // The gradient matmuls: in the autocast dtype for bf16 (its range holds any d logits), but
    // in fp32 for fp16, where small probabilities would flush to zero and a frequent target's
    // d W row could overflow before the loss scale is applied (in backward).
    const at::ScalarType grad_dtype = matmul_dtype == at::kHalf ? at::kFloat : matmul_dtype;
    const at::Tensor w_grad = grad_dtype == matmul_dtype ? w : weight.detach().to(grad_dtype);
    for (int64_t start = 0; start < m; start += chunk_rows) {
      const at::Tensor idx = rows.narrow(0, start, std::min(chunk_rows, m - start));
      const at::Tensor h = hidden.detach().index_select(0, idx).to(matmul_dtype);  // (n, C)
      at::Tensor work = at::mm(h, w.t());                                           // (n, V)
      if (work.scalar_type() != at::kFloat) work = work.to(at::kFloat);
      // In place on the CPU only (Note [fused cross entropy]: not a documented guarantee on CUDA).
      if (work.is_cpu()) at::_log_softmax_out(work, work, /*dim=*/1, /*half_to_float=*/false);
      else work = at::_log_softmax(work, /*dim=*/1, /*half_to_float=*/false);
      const at::Tensor index = targets.index_select(0, idx).unsqueeze(1);
      const at::Tensor nll = work.gather(1, index).squeeze(1).neg_();
      const at::Tensor row_weight = mask.index_select(0, idx);
      loss_sum.add_((nll * row_weight).sum());
      nll_all.index_copy_(0, idx, nll);
      if (!grad_hidden && !grad_weight) continue;
      log_probs_to_grad_(work, index, row_weight);  // g = d loss / d logits (n, V)
      const at::Tensor g = work.scalar_type() == grad_dtype ? work : work.to(grad_dtype);
      if (grad_hidden) d_hidden.index_copy_(0, idx, at::mm(g, w_grad).to(hidden.scalar_type()));
      if (grad_weight) {
        const at::Tensor hg = h.scalar_type() == grad_dtype ? h : h.to(grad_dtype);
        if (grad_dtype == at::kFloat) d_weight.addmm_(g.t(), hg);
        else d_weight.add_(at::mm(g.t(), hg));  // bf16 product added into fp32: no fp32 temporary
      }
    }
    if (grad_hidden) ctx->saved_data["d_hidden"] = d_hidden;
    if (grad_weight) ctx->saved_data["d_weight"] = d_weight.to(weight.scalar_type());
    ctx->saved_data["pending"] = true;
    ctx->mark_non_differentiable({nll_all});
    return {loss_sum, nll_all};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto pending = ctx->saved_data.find("pending");
    if (pending == ctx->saved_data.end())
      throw RuntimeFailure("chunked_cross_entropy: the loss was back-propagated twice; its "
                           "gradient buffers are consumed by the first backward (no retain_graph)");
    ctx->saved_data.erase(pending);
    const auto take = [&](const char* key) {
      auto it = ctx->saved_data.find(key);
      if (it == ctx->saved_data.end()) return at::Tensor();
      at::Tensor t = it->second.toTensor();
      ctx->saved_data.erase(it);
      if (grads[0].defined()) t.mul_(grads[0]);
      else t.zero_();
      return t;
    };
    at::Tensor d_hidden = take("d_hidden");
    at::Tensor d_weight = take("d_weight");
    return {d_hidden, d_weight, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The per-task split of `nll` (N, detached; any value where mask is 0) into `out`.
void add_task_sums(LossSums& out, const at::Tensor& nll, const at::Tensor& mask,
                   const Batch& batch, int64_t num_tasks) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(nll.device());
  if (num_tasks <= 0 || !batch.task_ids.defined() || batch.task_ids.numel() == 0) {
    out.task_loss_sum = at::zeros({std::max<int64_t>(num_tasks, 0)}, f32);
    out.task_tokens = at::zeros({std::max<int64_t>(num_tasks, 0)}, f32);
    return;
  }
  at::NoGradGuard no_grad;
  const at::Tensor masked = nll * mask;
  // Slot 0 collects tokens of no task (-1) and out-of-range ids; task k goes to slot k + 1.
  at::Tensor slot = batch.task_ids.reshape({-1}) + 1;
  slot = slot.masked_fill(slot.gt(num_tasks) | slot.lt(0), 0);
  at::Tensor loss_by = at::zeros({num_tasks + 1}, f32).index_add_(0, slot, masked);
  at::Tensor tokens_by = at::zeros({num_tasks + 1}, f32).index_add_(0, slot, mask);
  out.task_loss_sum = loss_by.narrow(0, 1, num_tasks);
  out.task_tokens = tokens_by.narrow(0, 1, num_tasks);
}

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
  add_task_sums(out, outputs[1], mask, batch, num_tasks);
  return out;
}

LossSums chunked_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight,
                               const Batch& batch, int64_t num_tasks, int64_t chunk_rows,
                               at::ScalarType matmul_dtype) {
  if (chunk_rows < 1)
    throw InputError(fmt::format("chunked_cross_entropy: chunk_rows must be at least 1, got {}",
                                 chunk_rows));
  if (hidden.dim() != 3 || weight.dim() != 2 || hidden.size(2) != weight.size(1))
    throw InputError(fmt::format("chunked_cross_entropy: hidden (B, T, C) and weight (V, C) "
                                 "expected, got ({}) and ({})",
                                 fmt::join(hidden.sizes(), ", "), fmt::join(weight.sizes(), ", ")));
  const int64_t vocab = weight.size(0);
  const at::Tensor targets = batch.targets.reshape({-1}).clamp(0, vocab - 1).to(at::kLong);
  const at::Tensor mask = batch.loss_mask.reshape({-1}).to(at::kFloat);
  const torch::autograd::variable_list outputs = ChunkedCrossEntropy::apply(
      hidden.reshape({-1, hidden.size(2)}), weight, targets, mask, chunk_rows, matmul_dtype);
  LossSums out;
  out.loss_sum = outputs[0];
  add_task_sums(out, outputs[1], mask, batch, num_tasks);
  return out;
}

}  // namespace pft
