// The gradient reducer (see reducer.h).
#include "comm/reducer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

#include "comm/communicator.h"
#include "core/error.h"
#include "core/format.h"
#include "core/trace.h"
#include "model/flat_params.h"

namespace pft {

// Note [bucket order]
// ~~~~~~~~~~~~~~~~~~~
// MPI and NCCL match collectives by issue order, so every rank must all-reduce the same buckets
// in the same order (THE RULE in comm/communicator.h). The order in which hooks fire is not
// something to rely on: autograd runs independent branches in an order that depends on the graph,
// a rank may leave a parameter unused in a step that its peers use (a task that skips a module,
// a prompt without some position), and with CUDA tensors the hooks run on the engine's device
// thread. So readiness only *allows* a launch; the order is fixed by the bucket index, chosen
// identically on every rank from the registration order alone: bucket k is issued once it is
// ready and buckets 0..k-1 have been issued. A bucket that is ready early waits for an earlier
// one that is not (DDP does the same).
//
// Parameters that get no gradient in a step never fire their hook, so their bucket never becomes
// ready during backward. finish() issues every bucket not issued yet, in index order, on every
// rank. This is why unused parameters need no special detection and no extra collective (DDP's
// find_unused_parameters): whatever a rank's hooks did, the sequence of issued buckets is
// 0, 1, ..., n-1 on every rank; only *when* each is issued differs. An unused parameter's
// gradient is whatever its buffer holds: zeros after zero_grad(), or the gradient of earlier
// micro-batches of the step; either way the correct local contribution to the sum.

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

using Clock = std::chrono::steady_clock;

// The integer dtype with the element size of `t`, to read float bits as numbers.
at::ScalarType bits_dtype(at::ScalarType t) {
  switch (c10::elementSize(t)) {
    case 1:
      return at::kByte;
    case 2:
      return at::kShort;
    case 4:
      return at::kInt;
    default:
      return at::kLong;
  }
}

}  // namespace

// Marks one parameter's gradient ready once autograd has accumulated it.
class Reducer::ReadyHook final : public torch::autograd::PostAccumulateGradHook {
 public:
  ReadyHook(Reducer* reducer, size_t slot) : reducer_(reducer), slot_(slot) {}
  void operator()(const torch::autograd::Variable& /*param*/) override {
    reducer_->mark_ready(slot_);
  }

 private:
  Reducer* reducer_;
  size_t slot_;
};

Reducer::Reducer(FlatParameters& params, Communicator& comm, const ReducerOptions& options)
    : params_(params), comm_(comm) {
  PFT_ASSERT(options.bucket_cap_mb > 0 && options.first_bucket_mb > 0,
             "bucket caps must be positive");
  const auto& slots = params_.slots();
  grad_address_.resize(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    const at::Tensor& buffer = params_.grad(slots[i].group);
    grad_address_[i] = static_cast<const char*>(buffer.data_ptr()) +
                       slots[i].offset * static_cast<int64_t>(buffer.element_size());
  }
  build_buckets(options);
  PFT_ASSERT(options.grad_comm_dtype == at::kFloat || options.grad_comm_dtype == at::kBFloat16,
             "grad_comm_dtype must be float32 or bfloat16");
  sharded_ = options.grad_comm_dtype == at::kBFloat16 && comm_.size() > 1;
  if (sharded_) {
    const int64_t world = comm_.size();
    for (Bucket& b : buckets_) {
      const int64_t shard = (b.numel + world - 1) / world;  // padded: world * shard >= numel
      b.wire = at::zeros({world * shard}, b.view.options().dtype(at::kBFloat16));
      b.shard = at::empty({shard}, b.wire.options());
    }
  }
  slot_ready_.assign(slots.size(), 0);
  pending_.assign(buckets_.size(), 0);
  work_.resize(buckets_.size());
  gather_work_.resize(buckets_.size());
  next_launch_ = buckets_.size();  // nothing to issue until prepare_for_backward(true)
  for (size_t i = 0; i < slots.size(); ++i)
    torch::autograd::impl::set_post_acc_grad_hooks(slots[i].param,
                                                   std::make_unique<ReadyHook>(this, i));
}

Reducer::~Reducer() {
  for (const auto& slot : params_.slots())
    torch::autograd::impl::set_post_acc_grad_hooks(slot.param, nullptr);
}

void Reducer::build_buckets(const ReducerOptions& options) {
  const auto& slots = params_.slots();
  const int64_t first_cap = std::max<int64_t>(1, static_cast<int64_t>(options.first_bucket_mb * kMiB));
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(options.bucket_cap_mb * kMiB));
  struct Open {
    std::vector<size_t> slots;
    int64_t bytes = 0;
    size_t first_seen = 0;  // walk position of its first slot
  };
  std::vector<std::optional<Open>> open(params_.num_groups());
  std::vector<Open> closed;
  const auto close = [&](size_t g) {
    closed.push_back(std::move(*open[g]));
    open[g].reset();
  };
  const auto current_cap = [&] { return closed.empty() ? first_cap : cap; };

  std::vector<uint8_t> sparse(slots.size(), 0);
  for (size_t s : options.row_sparse_slots) {
    PFT_ASSERT(s < slots.size(), "row-sparse slot out of range");
    sparse[s] = 1;
  }
  for (size_t walk = 0; walk < slots.size(); ++walk) {
    const size_t s = slots.size() - 1 - walk;  // reverse registration order
    const size_t g = slots[s].group;
    if (sparse[s]) {  // reduced by reduce_rows(); no bucket may span it
      if (open[g]) close(g);
      continue;
    }
    const int64_t bytes =
        slots[s].numel * static_cast<int64_t>(params_.grad(g).element_size());
    if (open[g] && open[g]->bytes + bytes > current_cap()) close(g);
    if (!open[g]) open[g] = Open{{}, 0, walk};
    open[g]->slots.push_back(s);
    open[g]->bytes += bytes;
    if (open[g]->bytes >= current_cap()) close(g);
  }
  // Still-open buckets (one per group at most), in the order their first slot was walked.
  std::vector<size_t> rest;
  for (size_t g = 0; g < open.size(); ++g)
    if (open[g]) rest.push_back(g);
  std::sort(rest.begin(), rest.end(),
            [&](size_t a, size_t b) { return open[a]->first_seen < open[b]->first_seen; });
  for (size_t g : rest) close(g);

  bucket_of_slot_.assign(slots.size(), kNoBucket);
  for (Open& o : closed) {
    Bucket b;
    b.group = slots[o.slots.front()].group;
    // Slots were walked in decreasing offset: the last one starts the range.
    const auto& lowest = slots[o.slots.back()];
    const auto& highest = slots[o.slots.front()];
    b.offset = lowest.offset;
    b.numel = highest.offset + highest.numel - lowest.offset;
    b.view = params_.grad(b.group).narrow(0, b.offset, b.numel);
    for (size_t s : o.slots) bucket_of_slot_[s] = buckets_.size();
    b.slots = std::move(o.slots);
    buckets_.push_back(std::move(b));
  }
}

void Reducer::broadcast_parameters() {
  if (comm_.size() <= 1) return;
  at::NoGradGuard no_grad;
  for (size_t g = 0; g < params_.num_groups(); ++g) comm_.broadcast(params_.data(g), 0);
}

void Reducer::prepare_for_backward(bool reduce) {
  std::lock_guard<std::mutex> lock(mutex_);
  PFT_ASSERT(!reducing_.load(), "prepare_for_backward(true) must be followed by finish()");
  if (!reduce) {
    reducing_.store(false);
    return;
  }
  std::fill(slot_ready_.begin(), slot_ready_.end(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b)
    pending_[b] = static_cast<int64_t>(buckets_[b].slots.size());
  next_launch_ = 0;
  stats_ = StepStats{};
  reducing_.store(true);
}

void Reducer::mark_ready(size_t slot) {
  if (!reducing_.load(std::memory_order_acquire)) return;  // accumulation micro-batch
  std::lock_guard<std::mutex> lock(mutex_);
  if (!reducing_.load() || slot_ready_[slot]) return;  // once per backward
  // The bucket may be sent as soon as this returns: the gradient must be in the buffer.
  at::Tensor& grad = params_.slots()[slot].param.mutable_grad();
  if (!grad.defined() || grad.data_ptr() != grad_address_[slot]) {
    const auto& s = params_.slots()[slot];
    at::NoGradGuard no_grad;
    at::Tensor view = params_.grad(s.group).narrow(0, s.offset, s.numel).view(s.shape);
    if (grad.defined()) view.copy_(grad);
    grad = view;
    ++rebound_grads_;
  }
  slot_ready_[slot] = 1;
  if (bucket_of_slot_[slot] == kNoBucket) return;  // row-sparse: reduce_rows()
  if (--pending_[bucket_of_slot_[slot]] == 0) launch_ready_buckets();
}

void Reducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && pending_[next_launch_] == 0) {
    launch(next_launch_++);
    ++stats_.launched_in_backward;
  }
}

void Reducer::launch(size_t bucket) {
  if (comm_.size() <= 1) return;  // the sum over one rank is the tensor itself
  if (trace::enabled()) {
    if (launch_us_.size() != buckets_.size()) launch_us_.assign(buckets_.size(), 0);
    launch_us_[bucket] = trace::now_us();
  }
  Bucket& b = buckets_[bucket];
  if (!sharded_) {
    work_[bucket] = comm_.all_reduce_async(b.view, ReduceOp::kSum);
    return;
  }
  at::NoGradGuard no_grad;
  b.wire.narrow(0, 0, b.numel).copy_(b.view);  // rounds to bf16; the padding stays zero
  work_[bucket] = comm_.reduce_scatter_async(b.shard, b.wire, ReduceOp::kSum);
}

double Reducer::finish() {
  const Clock::time_point start = Clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!reducing_.load()) {
    // No final backward was prepared (a step without micro-batches): reduce everything.
    for (int64_t& p : pending_) p = 0;
    next_launch_ = 0;
    stats_ = StepStats{};
  }
  reducing_.store(false);
  // Note [bucket order]: whatever the hooks issued, issue the rest in index order.
  while (next_launch_ < buckets_.size()) {
    launch(next_launch_++);
    ++stats_.launched_at_finish;
  }
  for (auto& w : work_) {
    if (!w) continue;
    w->wait();
    w.reset();
    const auto b = static_cast<size_t>(&w - work_.data());
    // From launch to the moment this step saw it done (MPI completes a request when waited on),
    // on the bucket's own track (Note [trace tracks]); bf16 buckets end after their all-gather.
    if (!sharded_) {
      if (trace::enabled() && b < launch_us_.size())
        trace::record(trace::Lane::kComm, fmt::format("bucket {}", b), launch_us_[b],
                      trace::now_us(), -1, static_cast<int>(b) + 1);
      continue;
    }
    // Phase 2 of this bucket (its reduce-scatter is done) while later ones still run.
    gather_work_[b] = comm_.all_gather_async(buckets_[b].wire, buckets_[b].shard);
  }
  for (size_t b = 0; b < gather_work_.size(); ++b) {
    if (!gather_work_[b]) continue;
    gather_work_[b]->wait();
    gather_work_[b].reset();
    if (trace::enabled() && b < launch_us_.size())
      trace::record(trace::Lane::kComm, fmt::format("bucket {} (bf16)", b), launch_us_[b],
                    trace::now_us(), -1, static_cast<int>(b) + 1);
    at::NoGradGuard no_grad;
    buckets_[b].view.copy_(buckets_[b].wire.narrow(0, 0, buckets_[b].numel));
  }
  // One rank communicates nothing, so it waits for nothing (only bookkeeping ran).
  stats_.wait_s = comm_.size() <= 1
                      ? 0.0
                      : std::chrono::duration<double>(Clock::now() - start).count();
  return stats_.wait_s;
}

void Reducer::reduce_rows(size_t slot, int64_t row_numel, const std::vector<int64_t>& rows) {
  PFT_ASSERT(slot < bucket_of_slot_.size() && bucket_of_slot_[slot] == kNoBucket,
             "reduce_rows: not a row-sparse slot");
  if (comm_.size() <= 1 || rows.empty()) return;
  const auto& s = params_.slots()[slot];
  PFT_ASSERT(row_numel > 0 && s.numel % row_numel == 0, "reduce_rows: bad row size");
  at::NoGradGuard no_grad;
  at::Tensor table = params_.grad(s.group).narrow(0, s.offset, s.numel).view({-1, row_numel});
  const at::Tensor index = at::tensor(rows, at::kLong).to(table.device());
  at::Tensor picked = table.index_select(0, index);
  comm_.all_reduce(picked, ReduceOp::kSum);
  table.index_copy_(0, index, picked);
}

void Reducer::check_parameters_in_sync(int64_t step) {
  if (comm_.size() <= 1) return;
  const auto& slots = params_.slots();
  const auto n = static_cast<int64_t>(slots.size());
  if (n == 0) return;
  // Checksum of a tensor's bits: sum_i bits_i * (1 + i mod 65521), in wrapping int64 arithmetic
  // (exact and order-independent, so identical bits give identical sums on every rank; one
  // flipped bit changes it, since the weight is below 2^17 and the change below 2^32).
  std::vector<at::Tensor> sums;
  sums.reserve(slots.size());
  {
    at::NoGradGuard no_grad;
    for (const auto& s : slots) {
      const at::Tensor flat = s.param.detach().reshape({-1});
      const at::Tensor bits = flat.view(bits_dtype(flat.scalar_type())).to(at::kLong);
      const at::Tensor weight =
          at::arange(flat.numel(), bits.options()).remainder_(65521).add_(1);
      sums.push_back((bits * weight).sum());
    }
  }
  const at::Tensor mine = at::stack(sums).to(at::kCPU).contiguous();  // (n,) int64
  at::Tensor lo = mine.clone(), hi = mine.clone();
  comm_.all_reduce(lo, ReduceOp::kMin);
  comm_.all_reduce(hi, ReduceOp::kMax);
  const at::Tensor differs = lo.ne(hi);
  if (!differs.any().item<bool>()) return;
  const int64_t first = differs.nonzero().flatten()[0].item<int64_t>();
  const int64_t count = differs.sum().item<int64_t>();
  // Every rank's checksum of that tensor, for the message (same on every rank).
  at::Tensor all = at::empty({comm_.size()}, mine.options());
  comm_.all_gather(all, mine.narrow(0, first, 1).contiguous());
  std::string per_rank;
  for (int r = 0; r < comm_.size(); ++r)
    per_rank += fmt::format("{}rank {}: {:#018x}", r == 0 ? "" : ", ", r,
                            static_cast<uint64_t>(all[r].item<int64_t>()));
  const auto& s = slots[static_cast<size_t>(first)];
  throw RuntimeFailure(fmt::format(
      "parameters diverged across ranks at step {}: the first differing tensor is `{}` ({} "
      "elements; checksums {}); {} of {} tensors differ. Data-parallel ranks must hold bitwise "
      "identical parameters: something updated them differently (a rank-dependent code path, a "
      "non-deterministic kernel, a missed gradient all-reduce). HINT: rerun with "
      "dist.check_params_every: 1 to find the first step that diverges.",
      step, s.name, s.numel, per_rank, count, n));
}

}  // namespace pft
