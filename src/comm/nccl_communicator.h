// The NCCL backend of Communicator: CUDA tensors of this rank's GPU reduced by NCCL on a
// dedicated stream, fenced against torch's current (compute) stream by events. Built only with
// CUDA (PFT_HAVE_CUDA); the NCCL is the one torch itself loads (the nvidia-nccl wheel next to
// torch), so the process holds exactly one.
//
// Ordering, per collective (as in llm.c's multi-GPU path and PyTorch's ProcessGroupNCCL):
//   1. record an event on the current compute stream; the comm stream waits on it, so the
//      collective sees everything the compute stream wrote before the call;
//   2. the NCCL call runs on the comm stream; the tensors are recorded as used there, so the
//      caching allocator does not hand their memory out again while it runs;
//   3. a completion event is recorded on the comm stream. Blocking calls poll it on the host
//      against the deadline and then make the compute stream wait on it; async Work holds it and
//      does the same in wait().
// While polling, ncclCommGetAsyncError is checked too; on an NCCL error or a missed deadline the
// communicator is aborted (ncclCommAbort, which also unblocks the GPU) and the call throws.
//
// Blocking calls return only once the collective finished on the GPU (the host waits, so a hung
// peer becomes an error rather than a hang at some later synchronisation); the gradient path
// uses all_reduce_async and keeps the CPU ahead. CPU tensors, barrier() and the host helpers go
// through an internal MPI communicator (the same one that broadcast the ncclUniqueId).
// ncclCommInitRank itself has no deadline; the id broadcast before it has.
#pragma once

#ifdef PFT_HAVE_CUDA

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace pft {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over env.world. Uses GPU env.device (cuda:<local_rank % gpus>); throws
  // RuntimeFailure when NCCL or CUDA fail to start (two ranks on one GPU, for instance).
  NcclCommunicator(const RankEnv& env, const DistConfig& dist);
  // Not collective. Destroys the NCCL communicator once its stream drained, or aborts it when
  // a call failed or the stream does not drain within MpiProgress::kDrainGrace.
  ~NcclCommunicator() override;

  void all_reduce(const at::Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> all_reduce_async(const at::Tensor& tensor, ReduceOp op) override;
  void broadcast(const at::Tensor& tensor, int root) override;
  void all_gather(const at::Tensor& out, const at::Tensor& in) override;
  at::Tensor all_gather_v(const at::Tensor& in, std::vector<int64_t>* counts = nullptr) override;
  void reduce_scatter(const at::Tensor& out, const at::Tensor& in, ReduceOp op) override;
  void barrier() override;

  double all_reduce_scalar(double value, ReduceOp op) override;
  int64_t all_reduce_scalar(int64_t value, ReduceOp op) override;
  void broadcast_bytes(std::string& bytes, int root) override;
  std::vector<std::string> gather_bytes_to_root(const std::string& bytes, int root = 0) override;

  // The internal completion of a collective (used by its Work): polls `done` until `deadline`
  // and orders the current compute stream after it. Throws RuntimeFailure on a missed deadline
  // or an NCCL/CUDA error, after aborting the communicator.
  struct Pending;
  void wait_pending(const Pending& pending, Deadline deadline);
  // True once `pending` finished on the GPU; throws on an NCCL/CUDA error.
  bool test_pending(const Pending& pending);

 private:
  struct Handles;  // NCCL communicator, stream and events (RAII), defined in the .cpp

  std::shared_ptr<Pending> all_reduce_pending(const at::Tensor& tensor, ReduceOp op,
                                              const char* name);
  std::shared_ptr<Pending> enqueue(std::string what, const std::vector<at::Tensor>& tensors,
                                   const std::function<void(void* stream)>& launch);
  // Forwards a call to the MPI side, keeping both sides' failures in this communicator's latch.
  template <class F>
  decltype(auto) on_host(std::string_view op, F&& f);
  [[noreturn]] void abort_and_throw(const std::string& message);
  void check_async_error(std::string_view what);

  std::unique_ptr<MpiCommunicator> host_;
  std::unique_ptr<Handles> h_;
  std::mutex mutex_;  // one enqueue at a time (the ready event is shared)
};

}  // namespace pft

#endif  // PFT_HAVE_CUDA
