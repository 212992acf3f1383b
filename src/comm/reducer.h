// The gradient reducer: data-parallel gradient all-reduce over buckets of the flat gradient
// buffers, started during the backward pass as soon as a bucket's gradients are complete, the
// way PyTorch DDP's c10d Reducer does it.
//
// Buckets. A bucket is a contiguous range of one flat gradient buffer (FlatParameters::grad(g)),
// so parameters' gradients (views into those buffers, Note [grads stay views] in
// model/flat_params.h) are views into their bucket: nothing is copied in or out. Buckets are
// formed walking the parameters in *reverse* registration order (roughly the order backward
// produces their gradients): each group keeps one open bucket; a parameter that would push it
// past the cap closes it first, and a bucket at or over the cap closes. The first bucket closed
// has the smaller cap dist.first_bucket_mb, so communication starts early in the backward pass;
// the others have dist.bucket_cap_mb (MiB). A parameter larger than the cap gets a bucket of its
// own. Buckets are numbered in the order they closed (then the still-open ones, in walk order):
// that number is the order their all-reduces are issued on every rank (Note [bucket order] in
// reducer.cpp).
//
// Per step (collective where marked; every rank calls these in the same order):
//   1. prepare_for_backward(reduce): before each micro-batch's backward; reduce = false on the
//      non-final micro-batches of gradient accumulation (no communication: gradients just
//      accumulate in the buffers), true on the final one;
//   2. backward: a post-accumulate-grad hook on every parameter marks its gradient ready; a
//      bucket whose parameters are all ready is all-reduced (SUM, async) as soon as every bucket
//      before it has been issued                                              [collective]
//   3. finish(): issues the buckets whose parameters got no gradient in this backward (unused
//      parameters; their buffer still holds the right local sum, usually zeros), then waits for
//      every bucket; returns the seconds spent waiting (communication not hidden) [collective]
// The gradients are SUMmed: the trainer normalises the loss by the global target-token count
// (Note [loss normalisation] in train/train_step.h), so the sum is the global gradient.
//
// Reduced-precision communication (ReducerOptions::grad_comm_dtype = bfloat16, from
// dist.grad_comm_dtype: bf16): a bucket is not all-reduced but split into W equal shards (its
// numel padded with zeros to a multiple of W) and reduced in two collectives on the async lane:
// a reduce-scatter of the bucket rounded to bf16 (each rank sums its shard of every rank's copy in
// fp32, in rank order: Note [reduced-precision reduce-scatter] in mpi_communicator.cpp), then an
// all-gather of the bf16-rounded shard sums. Every rank, the shard's owner included, takes the
// bf16 values, so gradients are bitwise identical on every rank; each element is within about
// 2^-8 relative of the fp32 sum (plus the rounding of each rank's input to bf16). Per rank and
// bucket of N elements: 2 (W-1)/W N x 2 bytes sent instead of the fp32 all-reduce's
// 2 (W-1)/W N x 4. The reduce-scatters start during backward as the all-reduces did; the
// all-gathers are issued by finish(), bucket by bucket as each reduce-scatter completes (a
// collective issued from a completion test would differ in order between ranks). Row-sparse
// rows (below) stay fp32: they are a few rows, so nothing is worth saving. With one rank
// nothing is communicated and nothing rounded.
//
// Frozen parameters (requires_grad false) are not in FlatParameters and never in a bucket. With
// one rank nothing is communicated (the hooks still run, so the bookkeeping is the same).
//
// Row-sparse slots (ReducerOptions::row_sparse_slots): tables of which a step uses a few rows
// (prompt tuning's prompt table, one block of rows per task) are in no bucket; after finish() the
// trainer calls reduce_rows() with the rows the step used, and only those are all-reduced. The
// caller guarantees that every other row's gradient is zero on every rank, and every rank passes
// the same rows (the trainer derives them from the step's plan, which every rank knows:
// data/loader.h). A bucket never spans a row-sparse slot.
//
// Threads: the hooks run on the autograd engine's thread (the caller's for CPU tensors, a device
// thread for CUDA ones) while backward() blocks the caller; a mutex orders them. Everything else
// is for the trainer's thread. Throws RuntimeFailure on communication failures (from the hooks,
// through backward()).
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace pft {

class Communicator;
class FlatParameters;
class Work;

struct ReducerOptions {
  double bucket_cap_mb = 25.0;   // dist.bucket_cap_mb, MiB
  double first_bucket_mb = 1.0;  // dist.first_bucket_mb, MiB
  std::vector<size_t> row_sparse_slots;  // FlatParameters::slots() indices, see above
  // dist.grad_comm_dtype: kFloat (all-reduce) or kBFloat16 (see "Reduced-precision" above).
  at::ScalarType grad_comm_dtype = at::kFloat;
};

class Reducer {
 public:
  struct Bucket {
    size_t group = 0;            // flat buffer index
    int64_t offset = 0;          // first element in grad(group)
    int64_t numel = 0;           // elements, alignment padding between slots included
    std::vector<size_t> slots;   // indices into FlatParameters::slots(), reverse registration order
    at::Tensor view;             // grad(group)[offset : offset + numel], 1-D
    // Reduced precision only (W > 1): (W * shard) the bucket in bf16, zero-padded; the
    // reduce-scatter reads it and the all-gather writes the summed shards back into it.
    at::Tensor wire;
    at::Tensor shard;            // (shard) this rank's summed shard, bf16
  };

  // What the last step did (for tests and metrics).
  struct StepStats {
    int64_t launched_in_backward = 0;  // buckets issued from the hooks, during backward
    int64_t launched_at_finish = 0;    // buckets issued by finish() (unused parameters)
    double wait_s = 0.0;               // finish(): seconds waiting for the all-reduces
  };

  // Builds the buckets and registers a post-accumulate-grad hook on every parameter of `params`
  // (replacing any such hook already there). `params` and `comm` must outlive the reducer, and
  // their flat buffers must not be reallocated. Not collective.
  Reducer(FlatParameters& params, Communicator& comm, const ReducerOptions& options);
  // Removes the hooks. Does not wait for all-reduces in flight (finish() does).
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Rank 0's parameter values to every rank (start-up: identical weights). Collective.
  void broadcast_parameters();

  // Before a micro-batch's backward: `reduce` = this is the last micro-batch of the step (its
  // backward completes the gradients and starts their all-reduce). Not collective.
  void prepare_for_backward(bool reduce);

  // After the last backward: issues what backward did not, waits for every bucket. Afterwards
  // the flat grad buffers hold the sum over ranks. Returns the seconds spent waiting. Collective.
  double finish();

  // Sums rows `rows` (ascending, each `row_numel` elements) of row-sparse slot `slot`'s gradient
  // over ranks, in one all-reduce of just those rows. Collective; after finish().
  void reduce_rows(size_t slot, int64_t row_numel, const std::vector<int64_t>& rows);

  // Desync detector: compares a bitwise checksum of every parameter across ranks. Throws
  // RuntimeFailure on every rank, naming the first (in registration order) diverging tensor, its
  // checksum on each rank and `step`, when any differs. Collective; 3 small collectives.
  void check_parameters_in_sync(int64_t step);

  const std::vector<Bucket>& buckets() const { return buckets_; }
  const StepStats& last_step() const { return stats_; }
  // Gradients autograd had replaced instead of accumulating into the buffer, put back by the
  // hooks (0 in normal operation; Note [grads stay views]).
  int64_t rebound_grads() const { return rebound_grads_; }

 private:
  class ReadyHook;
  void build_buckets(const ReducerOptions& options);
  void mark_ready(size_t slot);       // from a hook
  void launch_ready_buckets();        // with mutex_ held
  void launch(size_t bucket);         // with mutex_ held

  FlatParameters& params_;
  Communicator& comm_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_slot_;      // (num slots); kNoBucket for row-sparse slots
  static constexpr size_t kNoBucket = static_cast<size_t>(-1);
  std::vector<const void*> grad_address_;   // (num slots) where each slot's grad must live

  // Per step, guarded by mutex_.
  std::mutex mutex_;
  std::atomic<bool> reducing_{false};       // hooks count only during the final backward
  std::vector<uint8_t> slot_ready_;         // (num slots)
  std::vector<int64_t> pending_;            // (num buckets) slots not ready yet
  size_t next_launch_ = 0;                  // buckets [0, next_launch_) are issued
  std::vector<std::unique_ptr<Work>> work_; // (num buckets) in flight
  std::vector<std::unique_ptr<Work>> gather_work_;  // (num buckets) reduced precision: phase 2
  std::vector<int64_t> launch_us_;  // run.trace: when each bucket was launched (core/trace.h)
  bool sharded_ = false;                    // reduced-precision communication over W > 1 ranks
  StepStats stats_;
  int64_t rebound_grads_ = 0;
};

}  // namespace pft
