// Communicator: the one interface through which anything crosses ranks (gradient reducer,
// controller, evaluator, checkpointing), with an MPI backend (CPU tensors, and CUDA tensors
// staged through pinned host memory) and an NCCL backend (CUDA tensors).
//
// THE RULE: every rank issues the same collectives, with matching arguments, in the same order.
// Every call below is collective over all `size()` ranks unless it says otherwise; a rank that
// skips or reorders a call makes its peers wait for a call that never comes. pft turns that wait
// into an error instead of a hang: each call has a deadline, dist.timeout_s after it starts
// (after issue for async work), and a collective that misses it throws pft::RuntimeFailure
// naming the operation, the rank, its host and the elapsed time, and (from a roll call right
// after the deadline, core/mpi_roll_call.h) the ranks that did not answer, by host: a crashed or
// cut-off host, or hung ranks. After any failure (deadline or
// library error) the communicator is unusable: the ranks no longer agree on what comes next, so
// every later call throws at once, and the caller should let the exception reach main, which
// ends the job (exit 3). There is no recovery within a job.
//
// Common contract of the tensor calls:
//   - tensors must be defined and contiguous; dtypes: float32, float64, bfloat16, float16,
//     int32, int64, uint8, int8 (same dtype, and same device, for `in` and `out`);
//   - device: the MPI backend takes CPU and CUDA tensors; the NCCL backend takes CUDA tensors of
//     its own device() and hands CPU tensors to its internal MPI path;
//   - ReduceOp::kAvg is the sum divided by size(), for floating dtypes only;
//   - shapes are only checked locally; every rank must pass the same numel (all_reduce,
//     broadcast, all_gather, reduce_scatter), the same dtype and the same root;
//   - contract violations (non-contiguous, unsupported dtype, mismatched shape, bad root) throw
//     RuntimeFailure before anything is sent: they are bugs in the caller;
//   - one logical caller at a time: calls from several threads are serialised in whatever order
//     the threads arrive, which is then unlikely to match across ranks.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "comm/comm_failure.h"

namespace pft {

struct RankEnv;
struct DistConfig;

enum class ReduceOp { kSum, kAvg, kMax, kMin };

// "sum", "avg", "max", "min".
std::string_view to_string(ReduceOp op);

// An asynchronous collective in flight (all_reduce_async). Not copyable; must not outlive the
// Communicator that made it. The tensor's contents are undefined until wait() returns.
class Work {
 public:
  virtual ~Work() = default;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  // True once the collective has completed (wait() then returns without blocking on peers).
  // Work objects of one communicator complete in issue order: if one is completed, so is every
  // Work issued before it. Non-blocking, not collective; throws RuntimeFailure if it failed.
  virtual bool is_completed() = 0;

  // Blocks until the collective completed and its result is in the tensor (for the NCCL backend:
  // the current CUDA stream is ordered after it). Throws RuntimeFailure when `deadline` passes
  // first (and the communicator becomes unusable). Calling it again after success is a no-op.
  void wait(Deadline deadline) { do_wait(deadline); }
  // The same with the default deadline: issue time + dist.timeout_s.
  void wait() { do_wait(default_deadline_); }

  Deadline default_deadline() const { return default_deadline_; }

 protected:
  explicit Work(Deadline default_deadline) : default_deadline_(default_deadline) {}
  virtual void do_wait(Deadline deadline) = 0;

 private:
  Deadline default_deadline_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // ---- Identity (local, not collective) -----------------------------------------------------
  int rank() const { return id_.rank; }
  int size() const { return id_.size; }
  const std::string& host() const { return id_.host; }
  const std::string& backend_name() const { return id_.backend; }  // "mpi" or "nccl"
  // The device this rank computes on: cpu, or cuda:<local gpu> (the NCCL backend's device).
  c10::Device device() const { return device_; }
  // dist.timeout_s: the deadline of every call, counted from its start.
  double timeout_s() const { return timeout_s_; }
  // True after a failure: every later call throws.
  bool failed() const { return latch_.tripped(); }
  // Bytes this rank has sent to other ranks in all_reduce(_async), reduce_scatter(_async) and
  // all_gather(_async) since construction (the collectives that carry gradients), counted per
  // call from the tensors' element counts and wire dtype under the bandwidth-optimal schedule of
  // each collective: all-reduce 2 (W-1)/W N elements (ring: reduce-scatter, then all-gather),
  // reduce-scatter and all-gather (W-1) blocks of N/W. Backends whose library picks another
  // algorithm (a tree for small messages) move a little more; the count is the same for every
  // algorithm choice, so runs compare fairly. 0 with one rank. Counted by the MPI backend (the
  // NCCL backend does not count yet: 0). Local, thread-safe.
  int64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }

  // ---- Tensor collectives (blocking unless named _async) -------------------------------------
  // In place: `tensor` (any shape, numel N on every rank) becomes the element-wise reduction
  // over ranks.
  virtual void all_reduce(const at::Tensor& tensor, ReduceOp op) = 0;

  // Starts an in-place all-reduce of `tensor` and returns at once. The tensor must not be read
  // or written until the Work's wait() returns. Several may be in flight; they complete in issue
  // order. The deadline of Work::wait() defaults to issue time + dist.timeout_s.
  virtual std::unique_ptr<Work> all_reduce_async(const at::Tensor& tensor, ReduceOp op) = 0;

  // In place: every rank's `tensor` becomes root's. `root` in [0, size()).
  virtual void broadcast(const at::Tensor& tensor, int root) = 0;

  // out (size() * N elements, e.g. (size(), *in.shape)) <- in (N elements) of every rank, in
  // rank order: out's r-th block of N elements is rank r's `in`. Not in place.
  virtual void all_gather(const at::Tensor& out, const at::Tensor& in) = 0;

  // Variable-size gather to all ranks along dim 0: rank r passes in (n_r, *S) with n_r >= 0
  // (zero allowed) and the same trailing shape S and dtype on every rank (1-D uint8 for bytes).
  // Returns a new tensor (sum_r n_r, *S) on in's device, rank r's rows at offset sum_{q<r} n_q.
  // If `counts` is not null it receives n_0..n_{size-1}. Two collectives (sizes, then data).
  virtual at::Tensor all_gather_v(const at::Tensor& in, std::vector<int64_t>* counts = nullptr) = 0;

  // out (N elements) <- the reduction over ranks of block r (elements [r*N, (r+1)*N)) of every
  // rank's in (size() * N elements), on rank r. Not in place. bfloat16/float16 on the MPI
  // backend: the blocks cross the wire in 16 bits and are reduced in float32 on the receiving
  // rank in rank order, then rounded once into `out` (Note [reduced-precision reduce-scatter] in
  // mpi_communicator.cpp); the NCCL backend reduces CUDA 16-bit tensors in their own dtype.
  virtual void reduce_scatter(const at::Tensor& out, const at::Tensor& in, ReduceOp op) = 0;

  // The async forms of reduce_scatter and all_gather (the building blocks of sharded gradient
  // reduction: dist.grad_comm_dtype bf16 in comm/reducer.h, and ZeRO): same arguments and
  // results; they return at once and neither tensor may be touched until the Work's wait()
  // returns. They run in one issue-ordered lane with all_reduce_async (several may be in flight;
  // they complete in issue order). The defaults (backends without an async form: NCCL) run the
  // blocking call and return a completed Work.
  virtual std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& out, const at::Tensor& in,
                                                     ReduceOp op);
  virtual std::unique_ptr<Work> all_gather_async(const at::Tensor& out, const at::Tensor& in);

  // Returns once every rank has called it. Host-side: does not wait for outstanding async Work
  // (wait on that first) nor for queued GPU work.
  virtual void barrier() = 0;

  // ---- Host helpers for the controller (collective; host memory; always over MPI) -------------
  // The reduction over ranks of one value; kAvg only for the double overload.
  virtual double all_reduce_scalar(double value, ReduceOp op) = 0;
  virtual int64_t all_reduce_scalar(int64_t value, ReduceOp op) = 0;
  // In place: every rank's `bytes` becomes root's (sizes may differ before the call).
  virtual void broadcast_bytes(std::string& bytes, int root) = 0;
  // On `root`: every rank's `bytes`, indexed by rank. Elsewhere: an empty vector.
  virtual std::vector<std::string> gather_bytes_to_root(const std::string& bytes, int root = 0) = 0;

 protected:
  Communicator(CommIdentity id, c10::Device device, double timeout_s)
      : id_(std::move(id)), device_(device), timeout_s_(timeout_s) {}

  const CommIdentity& identity() const { return id_; }
  FailureLatch& latch() { return latch_; }
  // Throws if an earlier call failed; called first by every collective.
  void check_usable(std::string_view op) const { latch_.check(id_, op); }
  Deadline deadline_from_now() const { return deadline_after(timeout_s_); }
  // For bytes_sent(): `elements` of `element_size` bytes sent to peers.
  void count_sent(int64_t elements, size_t element_size) {
    bytes_sent_.fetch_add(elements * static_cast<int64_t>(element_size), std::memory_order_relaxed);
  }

 private:
  CommIdentity id_;
  c10::Device device_;
  double timeout_s_;
  FailureLatch latch_;
  std::atomic<int64_t> bytes_sent_{0};
};

// The backend env.backend names ("mpi" or "nccl", resolved by discover_rank_env from
// dist.backend). Collective over env.world (each backend duplicates it). Throws InputError for
// "nccl" in a build without NCCL, RuntimeFailure when the backend cannot start.
std::unique_ptr<Communicator> make_communicator(const RankEnv& env, const DistConfig& dist);

// "4096 x float32" (", on cuda:0" for CUDA tensors), for messages.
std::string describe_tensor(const at::Tensor& t);
// "float32", "bfloat16", ... (torch's names without the "torch." prefix).
std::string dtype_name(at::ScalarType t);

}  // namespace pft
