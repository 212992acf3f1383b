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
// kernel wants it) is per group and exposed for checkpoints. Replicated (dist.zero: 0, or one
// rank): not collective, every rank runs the same update on identical (already reduced)
// gradients.
//
// Note [ZeRO-1]: with dist.zero: 1 on W > 1 ranks (a Communicator given to the constructor) each
// rank keeps the moments of its shard of every group buffer only, elements [lo_r, hi_r) of
// shard_range(): boundaries at multiples of kShardAlign elements, the last shard taking the rest,
// a shard possibly empty. step() then runs the fused kernel on the shard's narrowed views of the
// data and grad buffers, and all-gathers the updated shards so every rank holds the full
// parameters again (collective). The kernel is element-wise but vectorised, with a scalar tail
// where a piece of its work ends; shard boundaries at multiples of 64 elements (a multiple of
// every vector width, and of the work units the CPU kernel splits a buffer into) keep every
// element on the code path it takes in the replicated update, so the parameters are bitwise
// those of dist.zero: 0 (checked, not assumed: tests/train/zero_test.cpp, zero_cli_test.cpp). The gradients are still all-reduced whole (comm/reducer.h), so they and
// the clip norm are bitwise the replicated run's: a reduce-scatter of the buckets would send
// about half the gradient bytes, but MPI's all-reduce does not sum in the order a reduce-scatter
// does for W >= 3 (it picks its algorithm by size and rank count), so the shard a rank updates
// would no longer be bitwise the replicated run's; left for later. Checkpoints gather the shards
// to rank 0 (gather_moments_to_root) and write exactly the layout of a replicated run's; a
// restore reads each rank's range only (train/checkpoint_state.cpp), so a file moves freely
// between dist.zero values and world sizes. Rank 0 takes the gathered pieces as they arrive
// (gather_moments_to_root(sink)) and spills them to a scratch file that the checkpoint writer
// streams into the file, so it never holds the whole moments (Note [streamed ZeRO-1 save],
// train/checkpoint_state.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "model/flat_params.h"

namespace pft {

class Communicator;

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // applied to decay groups only
};

class AdamW {
 public:
  struct GroupState {
    at::Tensor exp_avg;     // like data(g)[lo, hi): the whole buffer unless sharded
    at::Tensor exp_avg_sq;  // the same
    at::Tensor step;        // 0-dim float32 on the buffer's device: updates taken
    int64_t lo = 0, hi = 0;  // the elements of data(g) the moments cover
  };

  // Moments of one group over the whole buffer, on the host (gather_moments_to_root).
  struct HostMoments {
    at::Tensor exp_avg, exp_avg_sq;
  };
  // Receives the gathered moments on rank 0 a piece at a time (gather_moments_to_root's
  // streaming form): elements [offset, offset + piece.numel()) of group `group`'s buffer, of
  // exp_avg (`moment` 0) or exp_avg_sq (1). `piece`: a contiguous 1-D view of a reused buffer on
  // the state's device, valid during the call only. Every element arrives exactly once.
  using MomentSink =
      std::function<void(size_t group, int moment, int64_t offset, const at::Tensor& piece)>;

  // Shard boundaries are multiples of this many elements (Note [ZeRO-1]).
  static constexpr int64_t kShardAlign = 64;
  // Elements [lo, hi) of a buffer of `numel` elements that rank `rank` of `world` updates under
  // ZeRO-1: shards of ceil(numel / world) rounded up to kShardAlign, the last taking the rest
  // (so no shard is longer than the first; later ones may be empty).
  static std::pair<int64_t, int64_t> shard_range(int64_t numel, int world, int rank);

  // Keeps a reference to `params` (and `shard_over`), which must outlive the optimizer.
  // `shard_over`: ZeRO-1 over its ranks (Note [ZeRO-1]) when it has more than one; nullptr (or
  // one rank) = replicated state.
  AdamW(FlatParameters& params, const AdamWOptions& options, Communicator* shard_over = nullptr);

  // One update of every group at learning rate `lr`, from the grads as they are (unscale and
  // clip first). Collective when sharded(): the updated shards are all-gathered.
  void step(double lr);

  // True under ZeRO-1 on more than one rank.
  bool sharded() const { return comm_ != nullptr; }
  // Bytes of optimizer state (moments and step counters) this rank holds.
  int64_t state_bytes() const;
  // Collective when sharded() (chunked all-gathers, as step() gathers the parameters): rank 0
  // gets every group's moments over the whole buffer (new host tensors); the other ranks keep
  // nothing full-size and get an empty vector. Not sharded: an empty vector
  // on every rank, nothing sent (state() already covers the whole buffers). For tests and tools:
  // it holds 8 bytes per element on rank 0, which checkpoint saves avoid with the streamed form.
  std::vector<HostMoments> gather_moments_to_root() const;
  // The same gather, collective when sharded(), streamed: `sink` (rank 0's; the other ranks pass
  // an empty one) sees every piece as it arrives and nothing full-size is allocated, so rank 0
  // holds no more of the moments at once than the reused all-gather buffers
  // (gather_buffer_bytes()). Not sharded: does nothing. A sink that throws is a bug (the other
  // ranks would wait in the next all-gather): catch there and report after the gather.
  void gather_moments_to_root(const MomentSink& sink) const;
  // Bytes of the reused all-gather buffers (sharded; 0 before the first gather): (W + 1) pieces
  // of at most 2^20 elements.
  int64_t gather_buffer_bytes() const;

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n);  // checkpoint restore: also sets every group's step tensor
  const AdamWOptions& options() const { return options_; }
  size_t num_groups() const { return state_.size(); }
  GroupState& state(size_t g) { return state_.at(g); }
  const GroupState& state(size_t g) const { return state_.at(g); }

 private:
  // All-gathers every group's updated shards (Note [ZeRO-1]).
  void gather_parameters();
  // All-gathers the shards of a buffer of `numel` elements, this rank's being `mine` (its
  // shard_range's length), in pieces of at most 2^20 elements per rank through the reused
  // buffers; hands each received piece to `receive` with its first element's offset in the
  // buffer (its owner's range), except rank `skip_rank`'s (-1: none). `receive` empty: this rank
  // keeps nothing. Collective.
  using PieceFn = std::function<void(int64_t offset, const at::Tensor& piece)>;
  void all_gather_shards(const at::Tensor& mine, int64_t numel, const PieceFn& receive,
                         int skip_rank) const;

  FlatParameters& params_;
  AdamWOptions options_;
  Communicator* comm_ = nullptr;  // set when sharded
  std::vector<GroupState> state_;
  int64_t step_count_ = 0;
  mutable at::Tensor gather_send_, gather_recv_;  // reused all-gather buffers (sharded)
};

// Global L2 norm of all `grads` taken together (computed in fp32 or wider); when max_norm > 0,
// scales every grad in place by min(1, max_norm / (norm + 1e-6)) - torch.nn.utils.
// clip_grad_norm_'s rule. Returns the norm before clipping (may be inf/nan; then the grads are
// scaled by nan too, as torch does, and the caller should skip the step). Syncs with the device.
double clip_grad_norm(const std::vector<at::Tensor>& grads, double max_norm);

}  // namespace pft
