// The MPI backend of Communicator: CPU tensors handed to MPI directly, CUDA tensors staged
// through reused pinned host buffers (so several ranks can share one GPU, and clusters without
// NCCL still train), every collective posted nonblocking and polled against its deadline
// (comm/mpi_progress.h).
//
// dtypes: float32, float64, int32, int64, uint8 and int8 map to the matching MPI types.
// bfloat16 and float16 move as raw 16-bit words (MPI_UINT16_T) in broadcast and gathers; in
// all_reduce they are upcast into a float32 staging buffer, reduced in float32 and rounded once
// on the way back. That costs twice the bytes on the wire but gives one rounding instead of one
// per reduction step, and needs no custom MPI_Op. reduce_scatter(_async) of 16-bit floats moves
// 16-bit words (an all-to-all) and reduces in float32 on the receiving rank (Note
// [reduced-precision reduce-scatter] in mpi_communicator.cpp): what dist.grad_comm_dtype bf16
// uses.
//
// Uses two duplicates of env.world: one for the blocking calls, one for the async collectives
// (Note [mpi progress] in mpi_communicator.cpp).
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>

#include "comm/communicator.h"
#include "comm/mpi_progress.h"

namespace pft {

class StagingPool;

class MpiCommunicator final : public Communicator {
 public:
  // Collective over env.world. `progress` picks how async all-reduces advance; kThread needs
  // MPI_THREAD_MULTIPLE and falls back to kPoll (with a warning) without it.
  MpiCommunicator(const RankEnv& env, const DistConfig& dist, MpiProgressOptions progress = {});
  // Not collective. Drives unfinished operations for up to MpiProgress::kDrainGrace, then
  // leaks them (an active MPI collective must not be freed).
  ~MpiCommunicator() override;

  MpiProgressMode progress_mode() const { return progress_->mode(); }

  void all_reduce(const at::Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> all_reduce_async(const at::Tensor& tensor, ReduceOp op) override;
  void broadcast(const at::Tensor& tensor, int root) override;
  void all_gather(const at::Tensor& out, const at::Tensor& in) override;
  at::Tensor all_gather_v(const at::Tensor& in, std::vector<int64_t>* counts = nullptr) override;
  void reduce_scatter(const at::Tensor& out, const at::Tensor& in, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& out, const at::Tensor& in,
                                             ReduceOp op) override;
  std::unique_ptr<Work> all_gather_async(const at::Tensor& out, const at::Tensor& in) override;
  void barrier() override;

  double all_reduce_scalar(double value, ReduceOp op) override;
  int64_t all_reduce_scalar(int64_t value, ReduceOp op) override;
  void broadcast_bytes(std::string& bytes, int root) override;
  std::vector<std::string> gather_bytes_to_root(const std::string& bytes, int root = 0) override;

 private:
  struct ReduceJob;
  std::shared_ptr<ReduceJob> prepare_all_reduce(const at::Tensor& tensor, ReduceOp op,
                                                MPI_Comm comm, const char* name);
  // A reduce-scatter or all-gather ready to post: its MPI operation, and what finishes it on the
  // caller's thread once MPI is done (local reduction, copy back).
  struct Job {
    std::shared_ptr<MpiOp> mpi;
    std::function<void()> finish;
  };
  Job prepare_reduce_scatter(const at::Tensor& out, const at::Tensor& in, ReduceOp op,
                             MPI_Comm comm, const char* name);
  Job prepare_all_gather(const at::Tensor& out, const at::Tensor& in, MPI_Comm comm,
                         const char* name);
  std::unique_ptr<Work> submit(Job job);
  void run(const std::shared_ptr<MpiOp>& op, Deadline deadline) { progress_->run(op, deadline); }

  std::shared_ptr<StagingPool> staging_;
  MPI_Comm comm_ = MPI_COMM_NULL;        // blocking lane
  MPI_Comm async_comm_ = MPI_COMM_NULL;  // async lane: all_reduce/reduce_scatter/all_gather_async
  std::unique_ptr<MpiProgress> progress_;
};

}  // namespace pft
