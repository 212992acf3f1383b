// The Communicator factory and the small helpers both backends share (see communicator.h).
#include "comm/communicator.h"

#include "comm/mpi_communicator.h"
#include "config/config.h"
#include "core/error.h"
#include "core/format.h"
#include "core/rank_env.h"
#ifdef PFT_HAVE_CUDA
#include "comm/nccl_communicator.h"
#endif

namespace pft {

std::string_view to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "?";
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    case at::kInt:
      return "int32";
    case at::kLong:
      return "int64";
    case at::kByte:
      return "uint8";
    case at::kChar:
      return "int8";
    default:
      return c10::toString(t);
  }
}

std::string describe_tensor(const at::Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return fmt::format("{} x {}{}", t.numel(), dtype_name(t.scalar_type()),
                     t.is_cuda() ? " on " + t.device().str() : std::string());
}

namespace {

// The Work of a call that already completed (the blocking defaults of the async forms).
class CompletedWork final : public Work {
 public:
  explicit CompletedWork(Deadline deadline) : Work(deadline) {}
  bool is_completed() override { return true; }

 protected:
  void do_wait(Deadline) override {}
};

}  // namespace

std::unique_ptr<Work> Communicator::reduce_scatter_async(const at::Tensor& out,
                                                         const at::Tensor& in, ReduceOp op) {
  const Deadline deadline = deadline_from_now();
  reduce_scatter(out, in, op);
  return std::make_unique<CompletedWork>(deadline);
}

std::unique_ptr<Work> Communicator::all_gather_async(const at::Tensor& out, const at::Tensor& in) {
  const Deadline deadline = deadline_from_now();
  all_gather(out, in);
  return std::make_unique<CompletedWork>(deadline);
}

std::unique_ptr<Communicator> make_communicator(const RankEnv& env, const DistConfig& dist) {
  if (env.backend == "mpi") return std::make_unique<MpiCommunicator>(env, dist);
  if (env.backend == "nccl") {
#ifdef PFT_HAVE_CUDA
    return std::make_unique<NcclCommunicator>(env, dist);
#else
    throw InputError(
        "dist.backend: nccl was requested but this pft was built without CUDA/NCCL; use "
        "dist.backend: mpi, or rebuild with the cuda preset against a CUDA build of torch");
#endif
  }
  throw RuntimeFailure(fmt::format(
      "make_communicator: unknown resolved backend '{}' (expected mpi or nccl; this is a bug)",
      env.backend));
}

}  // namespace pft
