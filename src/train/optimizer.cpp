#include "train/optimizer.h"

#include <algorithm>
#include <string>

#include "comm/communicator.h"
#include "core/error.h"

namespace pft {

namespace {

// Elements per rank in one all-gather of the updated shards: the receive buffer holds world x
// this many, so it stays small (4 MiB per rank in fp32) however large a group is.
constexpr int64_t kGatherChunk = int64_t{1} << 20;

}  // namespace

std::pair<int64_t, int64_t> AdamW::shard_range(int64_t numel, int world, int rank) {
  PFT_ASSERT(world >= 1 && rank >= 0 && rank < world, "shard_range: bad rank or world");
  const int64_t per_rank = (numel + world - 1) / world;
  const int64_t per = (per_rank + kShardAlign - 1) / kShardAlign * kShardAlign;
  const int64_t lo = std::min(per * rank, numel);
  const int64_t hi = rank == world - 1 ? numel : std::min(per * (rank + 1), numel);
  return {lo, hi};
}

AdamW::AdamW(FlatParameters& params, const AdamWOptions& options, Communicator* shard_over)
    : params_(params), options_(options) {
  if (shard_over != nullptr && shard_over->size() > 1) comm_ = shard_over;
  for (size_t g = 0; g < params.num_groups(); ++g) {
    const at::Tensor& data = params.data(g);
    int64_t lo = 0, hi = data.numel();
    if (comm_ != nullptr) std::tie(lo, hi) = shard_range(data.numel(), comm_->size(), comm_->rank());
    state_.push_back(GroupState{
        at::zeros({hi - lo}, data.options()), at::zeros({hi - lo}, data.options()),
        at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(data.device())), lo, hi});
  }
}

void AdamW::set_step_count(int64_t n) {
  step_count_ = n;
  for (GroupState& s : state_) s.step.fill_(static_cast<double>(n));
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const GroupState& s : state_)
    bytes += static_cast<int64_t>(s.exp_avg.nbytes() + s.exp_avg_sq.nbytes() + s.step.nbytes());
  return bytes;
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_count_;
  for (size_t g = 0; g < state_.size(); ++g) {
    GroupState& s = state_[g];
    // The fused kernel reads the already-incremented count (torch.optim increments first too).
    s.step.add_(1.0);
    if (s.hi == s.lo) continue;  // an empty shard (ZeRO-1): nothing to update here
    const double wd = params_.decay(g) ? options_.weight_decay : 0.0;
    const int64_t n = s.hi - s.lo;
    at::Tensor data = params_.data(g), grad = params_.grad(g);
    if (n != data.numel()) {
      data = data.narrow(0, s.lo, n);
      grad = grad.narrow(0, s.lo, n);
    }
    at::_fused_adamw_({data}, {grad}, {s.exp_avg}, {s.exp_avg_sq},
                      /*max_exp_avg_sqs=*/{}, {s.step}, lr, options_.beta1, options_.beta2, wd,
                      options_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
  if (sharded()) gather_parameters();
}

void AdamW::gather_parameters() {
  const int me = comm_->rank();
  for (size_t g = 0; g < state_.size(); ++g) {
    at::Tensor& data = params_.data(g);
    const GroupState& s = state_[g];
    all_gather_shards(
        data.narrow(0, s.lo, s.hi - s.lo), data.numel(),
        [&data](int64_t offset, const at::Tensor& piece) {
          data.narrow(0, offset, piece.numel()).copy_(piece);
        },
        me);
  }
}

void AdamW::all_gather_shards(const at::Tensor& mine, int64_t numel, const PieceFn& receive,
                              int skip_rank) const {
  const int world = comm_->size();
  // Every shard fits in the first one's length; the all-gather moves that many per rank.
  const int64_t longest = shard_range(numel, world, 0).second;
  const int64_t chunk = std::min(longest, kGatherChunk);
  if (chunk == 0) return;
  if (!gather_recv_.defined() || gather_recv_.scalar_type() != mine.scalar_type() ||
      gather_recv_.device() != mine.device() || gather_recv_.numel() < world * chunk) {
    gather_recv_ = at::empty({world * chunk}, mine.options());
    gather_send_ = at::zeros({chunk}, mine.options());
  }
  for (int64_t off = 0; off < longest; off += chunk) {
    const int64_t c = std::min(chunk, longest - off);
    // This rank's piece: a view of its shard, or (a short last piece) a zero-padded copy.
    const int64_t have = std::clamp<int64_t>(mine.numel() - off, 0, c);
    at::Tensor send;
    if (have == c) {
      send = mine.narrow(0, off, c);
    } else {
      send = gather_send_.narrow(0, 0, c);
      send.zero_();
      if (have > 0) send.narrow(0, 0, have).copy_(mine.narrow(0, off, have));
    }
    const at::Tensor recv = gather_recv_.narrow(0, 0, world * c);
    comm_->all_gather(recv, send);
    if (!receive) continue;
    for (int q = 0; q < world; ++q) {
      if (q == skip_rank) continue;
      const auto [lo, hi] = shard_range(numel, world, q);
      const int64_t n = std::clamp<int64_t>(hi - (lo + off), 0, c);
      if (n > 0) receive(lo + off, recv.narrow(0, q * c, n));
    }
  }
}

std::vector<AdamW::HostMoments> AdamW::gather_moments_to_root() const {
  std::vector<HostMoments> out;
  if (!sharded()) return out;
  if (comm_->rank() == 0)
    for (size_t g = 0; g < state_.size(); ++g) {
      const auto host =
          at::TensorOptions().dtype(state_[g].exp_avg.scalar_type()).device(at::kCPU);
      const int64_t numel = params_.data(g).numel();
      out.push_back(HostMoments{at::empty({numel}, host), at::empty({numel}, host)});
    }
  gather_moments_to_root(
      out.empty() ? MomentSink{}
                  : MomentSink([&out](size_t g, int moment, int64_t offset, const at::Tensor& p) {
                      at::Tensor& dest = moment == 0 ? out[g].exp_avg : out[g].exp_avg_sq;
                      dest.narrow(0, offset, p.numel()).copy_(p);
                    }));
  return out;
}

void AdamW::gather_moments_to_root(const MomentSink& sink) const {
  if (!sharded()) return;
  for (size_t g = 0; g < state_.size(); ++g) {
    const GroupState& s = state_[g];
    const int64_t numel = params_.data(g).numel();
    // In pieces of at most kGatherChunk elements per rank through the reused buffers: no message
    // near MPI's 2^31-byte count limit however large a group is, and nothing full-size on any
    // rank (Note [ZeRO-1]).
    for (int moment = 0; moment < 2; ++moment) {
      PieceFn receive;
      if (sink)
        receive = [&sink, g, moment](int64_t offset, const at::Tensor& piece) {
          sink(g, moment, offset, piece);
        };
      all_gather_shards(moment == 0 ? s.exp_avg : s.exp_avg_sq, numel, receive,
                        /*skip_rank=*/-1);
    }
  }
}

int64_t AdamW::gather_buffer_bytes() const {
  int64_t bytes = 0;
  if (gather_recv_.defined()) bytes += static_cast<int64_t>(gather_recv_.nbytes());
  if (gather_send_.defined()) bytes += static_cast<int64_t>(gather_send_.nbytes());
  return bytes;
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
