// The NCCL backend of Communicator (see nccl_communicator.h), and the NCCL and CUDA checkers
// (comm/nccl_check.h).
#ifdef PFT_HAVE_CUDA

#include "comm/nccl_communicator.h"

#include <unistd.h>

#include <ATen/ops/empty.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>
#include <thread>
#include <utility>

#include "comm/nccl_check.h"
#include "config/config.h"
#include "core/error.h"
#include "core/format.h"
#include "core/rank_env.h"

namespace pft {

// ---- Checkers ---------------------------------------------------------------------------------

namespace {

std::string where_am_i() {
  int rank = -1;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return fmt::format("rank {} ({})", rank, host);
}

}  // namespace

void throw_nccl_error(ncclResult_t rc, const char* call, const char* file, int line) {
  const char* last = ncclGetLastError(nullptr);
  throw RuntimeFailure(fmt::format(
      "NCCL call {} failed at {}:{} on {}: {}{}{}. HINT: NCCL_DEBUG=WARN shows NCCL's own view",
      call, file, line, where_am_i(), ncclGetErrorString(rc),
      last != nullptr && *last != '\0' ? ": " : "", last != nullptr ? last : ""));
}

void throw_cuda_error(cudaError_t rc, const char* call, const char* file, int line) {
  throw RuntimeFailure(fmt::format("CUDA call {} failed at {}:{} on {}: {} ({})", call, file, line,
                                   where_am_i(), cudaGetErrorString(rc), cudaGetErrorName(rc)));
}

// ---- RAII handles -----------------------------------------------------------------------------

namespace {

class CudaEvent {
 public:
  CudaEvent() { PFT_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~CudaEvent() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class CudaStream {
 public:
  // A non-blocking stream (no implicit sync with the legacy default stream) at the highest
  // priority, so communication kernels are scheduled ahead of compute kernels.
  CudaStream() {
    int least = 0;
    int greatest = 0;
    PFT_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    PFT_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
  }
  ~CudaStream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// Owns an ncclComm_t: destroyed normally, or aborted (which never waits on peers).
class NcclComm {
 public:
  NcclComm(int size, const ncclUniqueId& id, int rank) {
    PFT_NCCL_CHECK(ncclCommInitRank(&comm_, size, id, rank));
  }
  ~NcclComm() {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  ncclComm_t get() const { return comm_; }
  bool alive() const { return comm_ != nullptr; }
  void abort() {
    if (comm_ == nullptr) return;
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  ncclComm_t comm_ = nullptr;
};

// Completion events, reused: creating one per collective would be a per-step allocation.
class EventPool : public std::enable_shared_from_this<EventPool> {
 public:
  std::shared_ptr<CudaEvent> acquire() {
    std::unique_ptr<CudaEvent> event;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        event = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!event) event = std::make_unique<CudaEvent>();
    std::weak_ptr<EventPool> pool = weak_from_this();
    return std::shared_ptr<CudaEvent>(event.release(), [pool](CudaEvent* e) {
      if (auto p = pool.lock()) {
        std::lock_guard<std::mutex> lock(p->mutex_);
        p->free_.emplace_back(e);
      } else {
        delete e;
      }
    });
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<CudaEvent>> free_;
};

ncclDataType_t nccl_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kHalf:
      return ncclFloat16;
    case at::kInt:
      return ncclInt32;
    case at::kLong:
      return ncclInt64;
    case at::kByte:
      return ncclUint8;
    case at::kChar:
      return ncclInt8;
    default:
      return ncclNumTypes;
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

bool is_floating(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

}  // namespace

// Declared after the handle types it owns; members are destroyed in reverse order, so the
// communicator goes before the stream and events it uses.
struct NcclCommunicator::Handles {
  c10::DeviceIndex device = 0;
  CudaStream stream;
  CudaEvent ready;  // recorded on the compute stream before each collective
  std::shared_ptr<EventPool> events = std::make_shared<EventPool>();
  std::unique_ptr<NcclComm> comm;
};

// A collective enqueued on the comm stream.
struct NcclCommunicator::Pending {
  std::string what;
  CommClock::time_point issued;
  std::shared_ptr<CudaEvent> done;
  std::vector<at::Tensor> tensors;  // kept alive until the Work goes (the allocator knows too)
};

namespace {

class NcclWork final : public Work {
 public:
  NcclWork(NcclCommunicator& comm, std::shared_ptr<NcclCommunicator::Pending> pending,
           Deadline default_deadline)
      : Work(default_deadline), comm_(comm), pending_(std::move(pending)) {}

  bool is_completed() override { return finished_ || comm_.test_pending(*pending_); }

 protected:
  void do_wait(Deadline deadline) override {
    if (finished_) return;
    comm_.wait_pending(*pending_, deadline);
    finished_ = true;
  }

 private:
  NcclCommunicator& comm_;
  std::shared_ptr<NcclCommunicator::Pending> pending_;
  bool finished_ = false;
};

void check_device_tensor(const CommIdentity& id, std::string_view op, const at::Tensor& t,
                         std::string_view name, c10::Device device) {
  if (!t.defined()) throw_contract(id, op, fmt::format("`{}` is an undefined tensor", name));
  if (!t.is_contiguous()) throw_contract(id, op, fmt::format("`{}` must be contiguous", name));
  if (t.device() != device)
    throw_contract(id, op,
                   fmt::format("`{}` is on {}, but this NCCL communicator runs on {}", name,
                               t.device().str(), device.str()));
  if (nccl_type(t.scalar_type()) == ncclNumTypes)
    throw_contract(id, op,
                   fmt::format("`{}` has unsupported dtype {}; use float32, float64, "
                               "bfloat16, float16, int32, int64, uint8 or int8",
                               name, dtype_name(t.scalar_type())));
}

void check_reduce(const CommIdentity& id, std::string_view op, at::ScalarType t, ReduceOp r) {
  if (r == ReduceOp::kAvg && !is_floating(t))
    throw_contract(id, op,
                   fmt::format("ReduceOp::kAvg needs a floating dtype, got {}", dtype_name(t)));
}

}  // namespace

// ---- NcclCommunicator -------------------------------------------------------------------------

NcclCommunicator::NcclCommunicator(const RankEnv& env, const DistConfig& dist)
    : Communicator(CommIdentity{env.world_rank, env.world_size, env.host, "nccl"},
                   c10::Device(env.device), dist.timeout_s),
      host_(std::make_unique<MpiCommunicator>(env, dist)) {
  if (!device().is_cuda())
    throw RuntimeFailure(fmt::format("NcclCommunicator on rank {} ({}): device is {}, not a GPU",
                                     rank(), host(), device().str()));
  c10::cuda::CUDAGuard guard(device().index());

  // Rank 0 makes the id; everyone else learns it over MPI (with the usual deadline).
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  std::string bytes;
  if (rank() == 0) {
    PFT_NCCL_CHECK(ncclGetUniqueId(&id));
    bytes.assign(reinterpret_cast<const char*>(&id), sizeof(id));
  }
  host_->broadcast_bytes(bytes, 0);
  PFT_ASSERT(bytes.size() == sizeof(id), "ncclUniqueId broadcast has the wrong size");
  std::memcpy(&id, bytes.data(), sizeof(id));

  h_ = std::make_unique<Handles>();
  h_->device = device().index();
  h_->comm = std::make_unique<NcclComm>(size(), id, rank());
}

NcclCommunicator::~NcclCommunicator() {
  if (!h_) return;
  c10::cuda::CUDAGuard guard(h_->device);
  if (h_->comm && h_->comm->alive()) {
    // Let outstanding collectives finish (peers are issuing them too); abort if they do not,
    // since ncclCommDestroy would wait for them forever.
    const Deadline drain = CommClock::now() + MpiProgress::kDrainGrace;
    while (cudaStreamQuery(h_->stream.get()) == cudaErrorNotReady && CommClock::now() < drain)
      std::this_thread::yield();
    if (cudaStreamQuery(h_->stream.get()) != cudaSuccess) h_->comm->abort();
  }
  h_.reset();  // destroys (or has aborted) the communicator, then the stream and events
}

template <class F>
decltype(auto) NcclCommunicator::on_host(std::string_view op, F&& f) {
  check_usable(op);
  try {
    return f(*host_);
  } catch (const RuntimeFailure& e) {
    if (host_->failed()) latch().trip(e.what());
    throw;
  }
}

void NcclCommunicator::abort_and_throw(const std::string& message) {
  latch().trip(message);
  h_->comm->abort();
  throw RuntimeFailure(message);
}

void NcclCommunicator::check_async_error(std::string_view what) {
  ncclResult_t async = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(h_->comm->get(), &async);
  if (rc != ncclSuccess) async = rc;
  if (async == ncclSuccess || async == ncclInProgress) return;
  const char* last = ncclGetLastError(h_->comm->get());
  abort_and_throw(
      fmt::format("{} failed on rank {} of {} ({}, nccl): {}{}{}; the communicator "
                  "was aborted",
                  what, rank(), size(), host(), ncclGetErrorString(async),
                  last != nullptr && *last != '\0' ? ": " : "", last != nullptr ? last : ""));
}

std::shared_ptr<NcclCommunicator::Pending> NcclCommunicator::enqueue(
    std::string what, const std::vector<at::Tensor>& tensors,
    const std::function<void(void* stream)>& launch) {
  std::lock_guard<std::mutex> lock(mutex_);
  c10::cuda::CUDAGuard guard(h_->device);
  cudaStream_t comm_stream = h_->stream.get();
  cudaStream_t compute = c10::cuda::getCurrentCUDAStream(h_->device).stream();
  PFT_CUDA_CHECK(cudaEventRecord(h_->ready.get(), compute));
  PFT_CUDA_CHECK(cudaStreamWaitEvent(comm_stream, h_->ready.get(), 0));
  try {
    launch(comm_stream);
  } catch (const RuntimeFailure& e) {
    // NCCL refused the call: the ranks may now disagree on what was issued.
    abort_and_throw(e.what());
  }
  const c10::cuda::CUDAStream as_torch = c10::cuda::getStreamFromExternal(comm_stream, h_->device);
  for (const at::Tensor& t : tensors) {
    if (t.numel() > 0)
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), as_torch);
  }
  auto pending = std::make_shared<Pending>();
  pending->what = std::move(what);
  pending->issued = CommClock::now();
  pending->done = h_->events->acquire();
  pending->tensors = tensors;
  PFT_CUDA_CHECK(cudaEventRecord(pending->done->get(), comm_stream));
  return pending;
}

bool NcclCommunicator::test_pending(const Pending& pending) {
  check_usable(pending.what);
  c10::cuda::CUDAGuard guard(h_->device);
  const cudaError_t q = cudaEventQuery(pending.done->get());
  if (q == cudaSuccess) return true;
  if (q != cudaErrorNotReady) {
    abort_and_throw(fmt::format("{} on rank {} ({}): CUDA error while waiting: {}", pending.what,
                                rank(), host(), cudaGetErrorString(q)));
  }
  check_async_error(pending.what);
  return false;
}

void NcclCommunicator::wait_pending(const Pending& pending, Deadline deadline) {
  while (!test_pending(pending)) {
    if (CommClock::now() >= deadline) {
      const double timeout_s = std::chrono::duration<double>(deadline - pending.issued).count();
      abort_and_throw(
          deadline_message(identity(), pending.what, seconds_since(pending.issued), timeout_s));
    }
    std::this_thread::yield();
  }
  // Work queued on the compute stream from now on sees the result.
  c10::cuda::CUDAGuard guard(h_->device);
  cudaStream_t compute = c10::cuda::getCurrentCUDAStream(h_->device).stream();
  PFT_CUDA_CHECK(cudaStreamWaitEvent(compute, pending.done->get(), 0));
}

void NcclCommunicator::all_reduce(const at::Tensor& tensor, ReduceOp op) {
  if (!tensor.defined() || !tensor.is_cuda())
    return on_host("all_reduce", [&](MpiCommunicator& h) { h.all_reduce(tensor, op); });
  const Deadline deadline = deadline_from_now();
  wait_pending(*all_reduce_pending(tensor, op, "all_reduce"), deadline);
}

std::unique_ptr<Work> NcclCommunicator::all_reduce_async(const at::Tensor& tensor, ReduceOp op) {
  if (!tensor.defined() || !tensor.is_cuda()) {
    return on_host("all_reduce_async",
                   [&](MpiCommunicator& h) { return h.all_reduce_async(tensor, op); });
  }
  const Deadline deadline = deadline_from_now();
  return std::make_unique<NcclWork>(*this, all_reduce_pending(tensor, op, "all_reduce_async"),
                                    deadline);
}

std::shared_ptr<NcclCommunicator::Pending> NcclCommunicator::all_reduce_pending(
    const at::Tensor& tensor, ReduceOp op, const char* name) {
  check_usable(name);
  check_device_tensor(identity(), name, tensor, "tensor", device());
  check_reduce(identity(), name, tensor.scalar_type(), op);
  ncclComm_t comm = h_->comm->get();
  return enqueue(fmt::format("{}({}, {})", name, to_string(op), describe_tensor(tensor)), {tensor},
                 [&](void* stream) {
                   PFT_NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(),
                                                static_cast<size_t>(tensor.numel()),
                                                nccl_type(tensor.scalar_type()), nccl_op(op), comm,
                                                static_cast<cudaStream_t>(stream)));
                 });
}

void NcclCommunicator::broadcast(const at::Tensor& tensor, int root) {
  if (!tensor.defined() || !tensor.is_cuda())
    return on_host("broadcast", [&](MpiCommunicator& h) { h.broadcast(tensor, root); });
  const Deadline deadline = deadline_from_now();
  const char* name = "broadcast";
  check_usable(name);
  check_device_tensor(identity(), name, tensor, "tensor", device());
  if (root < 0 || root >= size())
    throw_contract(identity(), name,
                   fmt::format("root {} is not a rank of this {}-rank job", root, size()));
  ncclComm_t comm = h_->comm->get();
  auto pending = enqueue(fmt::format("broadcast(root {}, {})", root, describe_tensor(tensor)),
                         {tensor}, [&](void* stream) {
                           PFT_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(),
                                                        static_cast<size_t>(tensor.numel()),
                                                        nccl_type(tensor.scalar_type()), root, comm,
                                                        static_cast<cudaStream_t>(stream)));
                         });
  wait_pending(*pending, deadline);
}

void NcclCommunicator::all_gather(const at::Tensor& out, const at::Tensor& in) {
  if (in.defined() && out.defined() && !in.is_cuda() && !out.is_cuda())
    return on_host("all_gather", [&](MpiCommunicator& h) { h.all_gather(out, in); });
  const Deadline deadline = deadline_from_now();
  const char* name = "all_gather";
  check_usable(name);
  check_device_tensor(identity(), name, in, "in", device());
  check_device_tensor(identity(), name, out, "out", device());
  if (out.scalar_type() != in.scalar_type() || out.numel() != in.numel() * size())
    throw_contract(identity(), name,
                   fmt::format("`out` ({}) must have in's dtype and size() * in.numel() "
                               "elements ({} x {})",
                               describe_tensor(out), size(), describe_tensor(in)));
  ncclComm_t comm = h_->comm->get();
  auto pending = enqueue(
      fmt::format("all_gather({} per rank)", describe_tensor(in)), {out, in}, [&](void* stream) {
        PFT_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                     nccl_type(in.scalar_type()), comm,
                                     static_cast<cudaStream_t>(stream)));
      });
  wait_pending(*pending, deadline);
}

at::Tensor NcclCommunicator::all_gather_v(const at::Tensor& in, std::vector<int64_t>* counts) {
  if (!in.defined() || !in.is_cuda())
    return on_host("all_gather_v", [&](MpiCommunicator& h) { return h.all_gather_v(in, counts); });
  const Deadline deadline = deadline_from_now();
  const char* name = "all_gather_v";
  check_usable(name);
  check_device_tensor(identity(), name, in, "in", device());
  if (in.dim() == 0) throw_contract(identity(), name, "`in` must have at least one dimension");

  // Step 1, over MPI: every rank's row count.
  const at::TensorOptions host_long = at::TensorOptions().dtype(at::kLong);
  at::Tensor mine = at::empty({1}, host_long);
  at::Tensor all = at::empty({size()}, host_long);
  mine.data_ptr<int64_t>()[0] = in.size(0);
  on_host(name, [&](MpiCommunicator& h) { h.all_gather(all, mine); });
  const std::vector<int64_t> rows(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + size());

  int64_t row_elems = 1;
  for (int64_t d = 1; d < in.dim(); ++d) row_elems *= in.size(d);
  int64_t total_rows = 0;
  for (int64_t n : rows) total_rows += n;
  std::vector<int64_t> out_shape = in.sizes().vec();
  out_shape[0] = total_rows;
  at::Tensor out = at::empty(out_shape, in.options());

  // Step 2: each rank broadcasts its rows into place, all in one NCCL group.
  ncclComm_t comm = h_->comm->get();
  const ncclDataType_t type = nccl_type(in.scalar_type());
  const size_t element = in.element_size();
  auto pending =
      enqueue(fmt::format("all_gather_v({} rows of {} x {})", total_rows, row_elems,
                          dtype_name(in.scalar_type())),
              {out, in}, [&](void* stream) {
                PFT_NCCL_CHECK(ncclGroupStart());
                int64_t offset = 0;
                for (int r = 0; r < size(); ++r) {
                  const int64_t n = rows[r] * row_elems;
                  if (n > 0) {
                    char* dst = static_cast<char*>(out.data_ptr()) + offset * element;
                    PFT_NCCL_CHECK(ncclBroadcast(r == rank() ? in.data_ptr() : nullptr, dst,
                                                 static_cast<size_t>(n), type, r, comm,
                                                 static_cast<cudaStream_t>(stream)));
                  }
                  offset += n;
                }
                PFT_NCCL_CHECK(ncclGroupEnd());
              });
  wait_pending(*pending, deadline);
  if (counts != nullptr) *counts = rows;
  return out;
}

void NcclCommunicator::reduce_scatter(const at::Tensor& out, const at::Tensor& in, ReduceOp op) {
  if (in.defined() && out.defined() && !in.is_cuda() && !out.is_cuda())
    return on_host("reduce_scatter", [&](MpiCommunicator& h) { h.reduce_scatter(out, in, op); });
  const Deadline deadline = deadline_from_now();
  const char* name = "reduce_scatter";
  check_usable(name);
  check_device_tensor(identity(), name, in, "in", device());
  check_device_tensor(identity(), name, out, "out", device());
  check_reduce(identity(), name, in.scalar_type(), op);
  if (out.scalar_type() != in.scalar_type() || in.numel() != out.numel() * size())
    throw_contract(identity(), name,
                   fmt::format("`in` ({}) must have out's dtype and size() * out.numel() "
                               "elements ({} x {})",
                               describe_tensor(in), size(), describe_tensor(out)));
  ncclComm_t comm = h_->comm->get();
  auto pending = enqueue(
      fmt::format("reduce_scatter({}, {} per rank)", to_string(op), describe_tensor(out)),
      {out, in}, [&](void* stream) {
        PFT_NCCL_CHECK(ncclReduceScatter(
            in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
            nccl_type(in.scalar_type()), nccl_op(op), comm, static_cast<cudaStream_t>(stream)));
      });
  wait_pending(*pending, deadline);
}

void NcclCommunicator::barrier() {
  on_host("barrier", [](MpiCommunicator& h) { h.barrier(); });
}

double NcclCommunicator::all_reduce_scalar(double value, ReduceOp op) {
  return on_host("all_reduce_scalar",
                 [&](MpiCommunicator& h) { return h.all_reduce_scalar(value, op); });
}

int64_t NcclCommunicator::all_reduce_scalar(int64_t value, ReduceOp op) {
  return on_host("all_reduce_scalar",
                 [&](MpiCommunicator& h) { return h.all_reduce_scalar(value, op); });
}

void NcclCommunicator::broadcast_bytes(std::string& bytes, int root) {
  on_host("broadcast_bytes", [&](MpiCommunicator& h) { h.broadcast_bytes(bytes, root); });
}

std::vector<std::string> NcclCommunicator::gather_bytes_to_root(const std::string& bytes,
                                                                int root) {
  return on_host("gather_bytes_to_root",
                 [&](MpiCommunicator& h) { return h.gather_bytes_to_root(bytes, root); });
}

}  // namespace pft

#endif  // PFT_HAVE_CUDA
