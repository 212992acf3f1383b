// The MPI backend of Communicator (see mpi_communicator.h).
#include "comm/mpi_communicator.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/minimum.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <mutex>
#include <utility>

#include "config/config.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_check.h"
#include "core/mpi_env.h"
#include "core/rank_env.h"

namespace pft {

// Note [mpi progress]
// ~~~~~~~~~~~~~~~~~~~
// Open MPI (4.1 here) has no asynchronous progress thread: a nonblocking collective such as
// MPI_Iallreduce advances only while some thread of this process is inside an MPI call. A large
// all-reduce is a schedule of rounds and fragments (the shared-memory BTL pushes small fragments
// through small FIFOs, both peers copying), so an MPI_Iallreduce posted during the backward pass
// and then left alone does almost nothing until wait(). Two ways to get progress:
//   kPoll:   post MPI_Iallreduce on the caller's thread; it advances when the caller enters MPI
//            (Work::is_completed(), a later call, wait());
//   kThread: a progress thread posts the queued ops in order and spins MPI_Test, yielding, while
//            any is in flight; it sleeps on a condition variable when idle.
// tests/bench/allreduce_bench.cpp measures both. On the 2-core development VM (2 ranks, one
// torch thread each, other jobs running: load ~3; best of 9 interleaved rounds), an async
// all-reduce overlapped with work of about its own length hid this share of its time:
//
//                                   1 MiB  4 MiB  16 MiB  64 MiB
//   work off the CPU      thread      72%    75%     98%    100%
//   (sleeps, as while     poll        -5%    46%     14%    -15%
//    a GPU computes)      poll+test   42%    55%     59%     42%
//   work = CPU matmuls    thread     -29%  -299%    -17%     25%
//   (every core busy)     poll       -54%  -200%     -9%     -1%
//
// (poll+test: the work loop calls is_completed() after every ~0.05 ms unit of work.) When the
// ranks' CPUs are free while their work runs (GPU ranks staging through this backend, I/O), the
// progress thread hides all of the communication and polling hides little of it even when the
// caller tests often. When the compute already uses every core, nothing hides it: the transport's
// copies need those same cores; the progress thread then costs about what polling costs (the
// negative numbers are contention and noise; small sizes are dominated by wake-up latency). A
// progress thread that sleeps 50 us between tests instead of yielding hides as much for large
// messages but makes a 4 KiB async all-reduce ~20x slower, so it yields. kThread is the default;
// kPoll remains for MPI libraries without MPI_THREAD_MULTIPLE.
//
// Why two communicators: blocking calls run on the caller's thread, async all-reduces are posted
// by the progress thread; on one communicator their relative order could differ between ranks
// (MPI matches collectives by issue order per communicator). With one communicator per lane
// each lane keeps its program order, which is the same on every rank.

// Note [reduced-precision reduce-scatter]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A reduction of bfloat16/float16 data in MPI (or NCCL) sums in that dtype at every step of the
// algorithm: a ring rounds the partial sum to 8 mantissa bits at each of its W-1 hops, so the
// error grows with W and depends on the ring position. Upcasting before the call (what
// all_reduce does here) keeps float32 accuracy but sends float32. reduce_scatter of a 16-bit
// float does neither: it is an all-to-all of the raw 16-bit words (block r of every rank's `in`
// goes to rank r: (W-1) N words sent per rank, exactly what a ring reduce-scatter sends), then
// rank r adds the W blocks it received in float32, in rank order 0, 1, ..., W-1 (deterministic
// and identical whatever the network did), and rounds once into `out`. The inputs are rounded
// once by whoever made them 16-bit; the sum adds one more rounding, so the result is within about
// 2^-8 relative of the float32 sum of the float32 originals, for any W.

namespace {

// ---- dtypes ---------------------------------------------------------------------------------

bool is_16bit_float(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

bool is_floating(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || is_16bit_float(t);
}

// The MPI type that moves (and, except for 16-bit floats, reduces) elements of `t`; nullopt-like
// MPI_DATATYPE_NULL when unsupported.
MPI_Datatype mpi_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kInt:
      return MPI_INT32_T;
    case at::kLong:
      return MPI_INT64_T;
    case at::kByte:
      return MPI_UINT8_T;
    case at::kChar:
      return MPI_INT8_T;
    case at::kBFloat16:
    case at::kHalf:
      return MPI_UINT16_T;  // raw words; reductions upcast first
    default:
      return MPI_DATATYPE_NULL;
  }
}

// kAvg reduces as a sum; the division happens when the op finishes.
MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}

}  // namespace

// ---- Staging ----------------------------------------------------------------------------------

// Reused host buffers for tensors MPI cannot take as they are: CUDA tensors (pinned memory, so
// the copies run at full PCIe speed) and 16-bit floats being reduced (float32). Grown on
// demand; a buffer stays leased to one operation until that operation is destroyed, so several
// operations in flight never share one. Thread-safe.
class StagingPool : public std::enable_shared_from_this<StagingPool> {
 public:
  class Lease {
   public:
    Lease(std::shared_ptr<StagingPool> pool, size_t slot, at::Tensor bytes)
        : pool_(std::move(pool)), slot_(slot), bytes_(std::move(bytes)) {}
    ~Lease() { pool_->release(slot_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    const at::Tensor& bytes() const { return bytes_; }  // (capacity,) uint8

   private:
    std::shared_ptr<StagingPool> pool_;
    size_t slot_;
    at::Tensor bytes_;
  };

  std::shared_ptr<Lease> acquire(int64_t nbytes, bool pinned) {
    constexpr int64_t kGrain = 1 << 20;  // round capacities up to 1 MiB to avoid regrowing
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = slots_.size();
    for (size_t i = 0; i < slots_.size(); ++i) {
      const Slot& s = slots_[i];
      if (s.in_use || s.pinned != pinned) continue;
      const bool fits = s.bytes.numel() >= nbytes;
      if (best == slots_.size()) {
        best = i;
        continue;
      }
      const Slot& b = slots_[best];
      const bool best_fits = b.bytes.numel() >= nbytes;
      // Prefer the smallest buffer that fits, else the largest one to grow.
      if ((fits && (!best_fits || s.bytes.numel() < b.bytes.numel())) ||
          (!fits && !best_fits && s.bytes.numel() > b.bytes.numel()))
        best = i;
    }
    if (best == slots_.size()) slots_.push_back(Slot{at::Tensor(), pinned, false});
    Slot& slot = slots_[best];
    if (!slot.bytes.defined() || slot.bytes.numel() < nbytes) {
      const int64_t capacity = std::max<int64_t>(kGrain, (nbytes + kGrain - 1) / kGrain * kGrain);
      slot.bytes =
          at::empty({capacity}, at::TensorOptions().dtype(at::kByte).pinned_memory(pinned));
    }
    slot.in_use = true;
    return std::make_shared<Lease>(shared_from_this(), best, slot.bytes);
  }

 private:
  struct Slot {
    at::Tensor bytes;  // (capacity,) uint8
    bool pinned = false;
    bool in_use = false;
  };

  void release(size_t slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    slots_[slot].in_use = false;
  }

  std::mutex mutex_;
  std::vector<Slot> slots_;
};

namespace {

// A tensor as MPI sees it: the caller's own memory, or a host copy in a staging buffer.
struct Staged {
  at::Tensor user;  // the caller's tensor
  at::Tensor host;  // what MPI reads and writes; == user when not staged
  std::shared_ptr<StagingPool::Lease> lease;

  void* data() const { return host.data_ptr(); }
  // Copies the result back into the caller's tensor (synchronously for CUDA tensors, so the
  // staging buffer can be reused as soon as this returns).
  void unstage() {
    if (lease) user.copy_(host);
  }
};

// Stages `t` as dtype `as` on the host when MPI cannot use it directly; copies its contents in
// when `copy_in`.
Staged stage(StagingPool& pool, const at::Tensor& t, at::ScalarType as, bool copy_in) {
  Staged s;
  s.user = t;
  if (!t.is_cuda() && as == t.scalar_type()) {
    s.host = t;
    return s;
  }
  const int64_t nbytes = t.numel() * static_cast<int64_t>(c10::elementSize(as));
  s.lease = pool.acquire(nbytes, /*pinned=*/t.is_cuda());
  s.host = s.lease->bytes().narrow(0, 0, nbytes).view(as).view(t.sizes());
  if (copy_in) s.host.copy_(t);
  return s;
}

int checked_count(const CommIdentity& id, std::string_view op, int64_t n) {
  if (n > INT_MAX)
    throw_contract(id, op,
                   fmt::format("{} elements exceed MPI's int count limit; split the "
                               "tensor",
                               n));
  return static_cast<int>(n);
}

void check_tensor(const CommIdentity& id, std::string_view op, const at::Tensor& t,
                  std::string_view name) {
  if (!t.defined()) throw_contract(id, op, fmt::format("`{}` is an undefined tensor", name));
  if (!t.is_contiguous()) throw_contract(id, op, fmt::format("`{}` must be contiguous", name));
  if (mpi_type(t.scalar_type()) == MPI_DATATYPE_NULL)
    throw_contract(id, op,
                   fmt::format("`{}` has unsupported dtype {}; use float32, float64, "
                               "bfloat16, float16, int32, int64, uint8 or int8",
                               name, dtype_name(t.scalar_type())));
  if (!t.is_cpu() && !t.is_cuda())
    throw_contract(id, op,
                   fmt::format("`{}` is on {}; the MPI backend takes CPU and CUDA "
                               "tensors",
                               name, t.device().str()));
  checked_count(id, op, t.numel());
}

void check_reduce(const CommIdentity& id, std::string_view op, at::ScalarType t, ReduceOp r) {
  if (r == ReduceOp::kAvg && !is_floating(t))
    throw_contract(id, op,
                   fmt::format("ReduceOp::kAvg needs a floating dtype, got {}", dtype_name(t)));
}

void check_root(const CommIdentity& id, std::string_view op, int root) {
  if (root < 0 || root >= id.size)
    throw_contract(id, op, fmt::format("root {} is not a rank of this {}-rank job", root, id.size));
}

void check_same(const CommIdentity& id, std::string_view op, const at::Tensor& out,
                const at::Tensor& in) {
  if (out.scalar_type() != in.scalar_type())
    throw_contract(id, op,
                   fmt::format("`out` is {} but `in` is {}", dtype_name(out.scalar_type()),
                               dtype_name(in.scalar_type())));
  if (out.device() != in.device())
    throw_contract(
        id, op,
        fmt::format("`out` is on {} but `in` on {}", out.device().str(), in.device().str()));
}

std::shared_ptr<MpiOp> make_op(std::string what, std::function<int(MPI_Request*)> post,
                               std::shared_ptr<void> buffers) {
  auto op = std::make_shared<MpiOp>();
  op->what = std::move(what);
  op->post = std::move(post);
  op->buffers = std::move(buffers);
  return op;
}

}  // namespace

// ---- MpiWork ----------------------------------------------------------------------------------

// An all-reduce in flight: what it reduces, and how it finishes (average, copy back).
struct MpiCommunicator::ReduceJob {
  Staged buffer;
  ReduceOp op = ReduceOp::kSum;
  int size = 1;
  std::shared_ptr<MpiOp> mpi;

  // On the caller's thread once MPI is done.
  void finish() {
    if (op == ReduceOp::kAvg) buffer.host.div_(size);
    buffer.unstage();
  }
};

namespace {

class MpiWork final : public Work {
 public:
  MpiWork(MpiProgress& progress, std::function<void()> finish, std::shared_ptr<MpiOp> op,
          Deadline default_deadline)
      : Work(default_deadline),
        progress_(progress),
        finish_(std::move(finish)),
        op_(std::move(op)) {}

  bool is_completed() override { return finished_ || progress_.test(*op_); }

 protected:
  void do_wait(Deadline deadline) override {
    if (finished_) return;
    progress_.wait(*op_, deadline);
    finish_();
    finished_ = true;
  }

 private:
  MpiProgress& progress_;
  std::function<void()> finish_;
  std::shared_ptr<MpiOp> op_;
  bool finished_ = false;
};

}  // namespace

// ---- MpiCommunicator --------------------------------------------------------------------------

MpiCommunicator::MpiCommunicator(const RankEnv& env, const DistConfig& dist,
                                 MpiProgressOptions progress)
    : Communicator(CommIdentity{env.world_rank, env.world_size, env.host, "mpi"},
                   c10::Device(env.device), dist.timeout_s),
      staging_(std::make_shared<StagingPool>()) {
  const MPI_Comm world = world_comm(env);  // throws if env was not discovered
  PFT_MPI_CHECK(MPI_Comm_dup(world, &comm_));
  PFT_MPI_CHECK(MPI_Comm_dup(world, &async_comm_));
  PFT_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  PFT_MPI_CHECK(MPI_Comm_set_errhandler(async_comm_, MPI_ERRORS_RETURN));
  int level = 0;
  PFT_MPI_CHECK(MPI_Query_thread(&level));
  if (progress.mode == MpiProgressMode::kThread && level < MPI_THREAD_MULTIPLE) {
    log::warn_once(
        "MPI provides thread level {} < MPI_THREAD_MULTIPLE: async all-reduces "
        "advance only while the trainer waits (no overlap)",
        level);
    progress.mode = MpiProgressMode::kPoll;
  }
  progress_ = std::make_unique<MpiProgress>(identity(), latch(), progress);
}

MpiCommunicator::~MpiCommunicator() {
  progress_.reset();  // drains (or leaks) what is in flight before the communicators go
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (async_comm_ != MPI_COMM_NULL) MPI_Comm_free(&async_comm_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::shared_ptr<MpiCommunicator::ReduceJob> MpiCommunicator::prepare_all_reduce(
    const at::Tensor& tensor, ReduceOp op, MPI_Comm comm, const char* name) {
  check_usable(name);
  check_tensor(identity(), name, tensor, "tensor");
  check_reduce(identity(), name, tensor.scalar_type(), op);
  auto job = std::make_shared<ReduceJob>();
  const at::ScalarType as =
      is_16bit_float(tensor.scalar_type()) ? at::kFloat : tensor.scalar_type();
  job->buffer = stage(*staging_, tensor, as, /*copy_in=*/true);
  job->op = op;
  job->size = size();
  count_sent(2 * (size() - 1) * tensor.numel() / size(), c10::elementSize(as));  // ring
  void* data = job->buffer.data();
  const int count = static_cast<int>(tensor.numel());
  const MPI_Datatype type = mpi_type(as);
  const MPI_Op mop = mpi_op(op);
  job->mpi = make_op(
      fmt::format("{}({}, {})", name, to_string(op), describe_tensor(tensor)),
      [=](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, data, count, type, mop, comm, r); },
      nullptr);
  // The MpiOp keeps the buffers alive while MPI may touch them; the job must not own the op
  // back (that would be a cycle), so it holds only what finish() needs.
  job->mpi->buffers = std::make_shared<Staged>(job->buffer);
  return job;
}

void MpiCommunicator::all_reduce(const at::Tensor& tensor, ReduceOp op) {
  const Deadline deadline = deadline_from_now();
  auto job = prepare_all_reduce(tensor, op, comm_, "all_reduce");
  run(job->mpi, deadline);
  job->finish();
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(const at::Tensor& tensor, ReduceOp op) {
  const Deadline deadline = deadline_from_now();
  auto job = prepare_all_reduce(tensor, op, async_comm_, "all_reduce_async");
  auto mpi = job->mpi;
  progress_->submit(mpi);
  return std::make_unique<MpiWork>(
      *progress_, [job] { job->finish(); }, std::move(mpi), deadline);
}

void MpiCommunicator::broadcast(const at::Tensor& tensor, int root) {
  const Deadline deadline = deadline_from_now();
  const char* name = "broadcast";
  check_usable(name);
  check_tensor(identity(), name, tensor, "tensor");
  check_root(identity(), name, root);
  auto buffer = std::make_shared<Staged>(
      stage(*staging_, tensor, tensor.scalar_type(), /*copy_in=*/rank() == root));
  void* data = buffer->data();
  const int count = static_cast<int>(tensor.numel());
  const MPI_Datatype type = mpi_type(tensor.scalar_type());
  const MPI_Comm comm = comm_;
  run(make_op(
          fmt::format("broadcast(root {}, {})", root, describe_tensor(tensor)),
          [=](MPI_Request* r) { return MPI_Ibcast(data, count, type, root, comm, r); }, buffer),
      deadline);
  if (rank() != root) buffer->unstage();
}

MpiCommunicator::Job MpiCommunicator::prepare_all_gather(const at::Tensor& out,
                                                         const at::Tensor& in, MPI_Comm comm,
                                                         const char* name) {
  check_usable(name);
  check_tensor(identity(), name, in, "in");
  check_tensor(identity(), name, out, "out");
  check_same(identity(), name, out, in);
  if (out.numel() != in.numel() * size())
    throw_contract(identity(), name,
                   fmt::format("`out` has {} elements, expected size() * in.numel() = {} * {}",
                               out.numel(), size(), in.numel()));
  const at::ScalarType t = in.scalar_type();
  auto buffers = std::make_shared<std::pair<Staged, Staged>>(
      stage(*staging_, in, t, /*copy_in=*/true), stage(*staging_, out, t, /*copy_in=*/false));
  count_sent((size() - 1) * in.numel(), c10::elementSize(t));
  void* send = buffers->first.data();
  void* recv = buffers->second.data();
  const int count = static_cast<int>(in.numel());
  const MPI_Datatype type = mpi_type(t);
  Job job;
  job.mpi = make_op(
      fmt::format("{}({} per rank)", name, describe_tensor(in)),
      [=](MPI_Request* r) { return MPI_Iallgather(send, count, type, recv, count, type, comm, r); },
      buffers);
  job.finish = [buffers] { buffers->second.unstage(); };
  return job;
}

void MpiCommunicator::all_gather(const at::Tensor& out, const at::Tensor& in) {
  const Deadline deadline = deadline_from_now();
  Job job = prepare_all_gather(out, in, comm_, "all_gather");
  run(job.mpi, deadline);
  job.finish();
}

std::unique_ptr<Work> MpiCommunicator::all_gather_async(const at::Tensor& out,
                                                        const at::Tensor& in) {
  return submit(prepare_all_gather(out, in, async_comm_, "all_gather_async"));
}

std::unique_ptr<Work> MpiCommunicator::submit(Job job) {
  const Deadline deadline = deadline_from_now();
  progress_->submit(job.mpi);
  return std::make_unique<MpiWork>(*progress_, std::move(job.finish), job.mpi, deadline);
}

at::Tensor MpiCommunicator::all_gather_v(const at::Tensor& in, std::vector<int64_t>* counts) {
  const Deadline deadline = deadline_from_now();
  const char* name = "all_gather_v";
  check_usable(name);
  check_tensor(identity(), name, in, "in");
  if (in.dim() == 0) throw_contract(identity(), name, "`in` must have at least one dimension");

  // Step 1: every rank's row count.
  struct Sizes {
    int64_t mine = 0;
    std::vector<int64_t> all;
  };
  auto sizes = std::make_shared<Sizes>();
  sizes->mine = in.size(0);
  sizes->all.assign(size(), 0);
  const MPI_Comm comm = comm_;
  run(make_op(
          "all_gather_v(row counts)",
          [sizes, comm](MPI_Request* r) {
            return MPI_Iallgather(&sizes->mine, 1, MPI_INT64_T, sizes->all.data(), 1, MPI_INT64_T,
                                  comm, r);
          },
          sizes),
      deadline);

  // Step 2: the rows, at their offsets.
  int64_t row_elems = 1;  // elements per row: the product of the trailing shape S
  for (int64_t d = 1; d < in.dim(); ++d) row_elems *= in.size(d);
  struct Layout {
    std::vector<int> counts;
    std::vector<int> displs;
  };
  auto layout = std::make_shared<Layout>();
  int64_t total_rows = 0;
  for (int r = 0; r < size(); ++r) {
    const int64_t rows = sizes->all[r];
    if (rows < 0) throw_contract(identity(), name, fmt::format("rank {} sent {} rows", r, rows));
    layout->displs.push_back(checked_count(identity(), name, total_rows * row_elems));
    layout->counts.push_back(checked_count(identity(), name, rows * row_elems));
    total_rows += rows;
  }
  checked_count(identity(), name, total_rows * row_elems);
  std::vector<int64_t> out_shape = in.sizes().vec();
  out_shape[0] = total_rows;
  at::Tensor out = at::empty(out_shape, in.options());
  const at::ScalarType t = in.scalar_type();
  auto buffers = std::make_shared<std::pair<Staged, Staged>>(
      stage(*staging_, in, t, /*copy_in=*/true), stage(*staging_, out, t, /*copy_in=*/false));
  void* send = buffers->first.data();
  void* recv = buffers->second.data();
  const int send_count = static_cast<int>(in.numel());
  const MPI_Datatype type = mpi_type(t);
  auto keep = std::make_shared<std::pair<decltype(buffers), decltype(layout)>>(buffers, layout);
  run(make_op(
          fmt::format("all_gather_v({} rows of {} x {})", total_rows, row_elems, dtype_name(t)),
          [=](MPI_Request* r) {
            return MPI_Iallgatherv(send, send_count, type, recv, layout->counts.data(),
                                   layout->displs.data(), type, comm, r);
          },
          keep),
      deadline);
  buffers->second.unstage();
  if (counts != nullptr) *counts = sizes->all;
  return out;
}

MpiCommunicator::Job MpiCommunicator::prepare_reduce_scatter(const at::Tensor& out,
                                                             const at::Tensor& in, ReduceOp op,
                                                             MPI_Comm comm, const char* name) {
  check_usable(name);
  check_tensor(identity(), name, in, "in");
  check_tensor(identity(), name, out, "out");
  check_same(identity(), name, out, in);
  check_reduce(identity(), name, in.scalar_type(), op);
  if (in.numel() != out.numel() * size())
    throw_contract(identity(), name,
                   fmt::format("`in` has {} elements, expected size() * out.numel() = {} * {}",
                               in.numel(), size(), out.numel()));
  const int count = static_cast<int>(out.numel());
  const int world = size();
  const std::string what =
      fmt::format("{}({}, {} per rank)", name, to_string(op), describe_tensor(out));
  Job job;
  if (is_16bit_float(in.scalar_type())) {
    // Note [reduced-precision reduce-scatter]: 16-bit words out, float32 sum in rank order.
    struct Buffers {
      Staged send;
      std::shared_ptr<StagingPool::Lease> recv_lease;
      at::Tensor recv;  // (world, count) host: block q is rank q's block rank()
    };
    auto b = std::make_shared<Buffers>();
    b->send = stage(*staging_, in, in.scalar_type(), /*copy_in=*/true);
    const int64_t recv_bytes = in.numel() * static_cast<int64_t>(in.element_size());
    b->recv_lease = staging_->acquire(recv_bytes, /*pinned=*/in.is_cuda());
    b->recv = b->recv_lease->bytes()
                  .narrow(0, 0, recv_bytes)
                  .view(in.scalar_type())
                  .view({world, out.numel()});
    count_sent((world - 1) * out.numel(), in.element_size());
    void* send = b->send.data();
    void* recv = b->recv.data_ptr();
    job.mpi = make_op(
        what,
        [=](MPI_Request* r) {
          return MPI_Ialltoall(send, count, MPI_UINT16_T, recv, count, MPI_UINT16_T, comm, r);
        },
        b);
    job.finish = [b, out, op, world] {
      at::Tensor acc = b->recv[0].to(at::kFloat);
      for (int q = 1; q < world; ++q) {
        const at::Tensor x = b->recv[q].to(at::kFloat);
        switch (op) {
          case ReduceOp::kSum:
          case ReduceOp::kAvg:
            acc.add_(x);
            break;
          case ReduceOp::kMax:
            acc = at::maximum(acc, x);
            break;
          case ReduceOp::kMin:
            acc = at::minimum(acc, x);
            break;
        }
      }
      if (op == ReduceOp::kAvg) acc.div_(world);
      out.view({-1}).copy_(acc);  // the one rounding (and the copy to the GPU for CUDA tensors)
    };
    return job;
  }
  const at::ScalarType t = in.scalar_type();
  auto buffers = std::make_shared<std::pair<Staged, Staged>>(
      stage(*staging_, in, t, /*copy_in=*/true), stage(*staging_, out, t, /*copy_in=*/false));
  count_sent((world - 1) * out.numel(), c10::elementSize(t));  // ring reduce-scatter
  void* send = buffers->first.data();
  void* recv = buffers->second.data();
  const MPI_Datatype type = mpi_type(t);
  const MPI_Op mop = mpi_op(op);
  job.mpi = make_op(
      what,
      [=](MPI_Request* r) {
        return MPI_Ireduce_scatter_block(send, recv, count, type, mop, comm, r);
      },
      buffers);
  job.finish = [buffers, op, world] {
    if (op == ReduceOp::kAvg) buffers->second.host.div_(world);
    buffers->second.unstage();
  };
  return job;
}

void MpiCommunicator::reduce_scatter(const at::Tensor& out, const at::Tensor& in, ReduceOp op) {
  const Deadline deadline = deadline_from_now();
  Job job = prepare_reduce_scatter(out, in, op, comm_, "reduce_scatter");
  run(job.mpi, deadline);
  job.finish();
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter_async(const at::Tensor& out,
                                                            const at::Tensor& in, ReduceOp op) {
  return submit(prepare_reduce_scatter(out, in, op, async_comm_, "reduce_scatter_async"));
}

void MpiCommunicator::barrier() {
  const Deadline deadline = deadline_from_now();
  check_usable("barrier");
  const MPI_Comm comm = comm_;
  run(make_op(
          "barrier", [comm](MPI_Request* r) { return MPI_Ibarrier(comm, r); }, nullptr),
      deadline);
}

double MpiCommunicator::all_reduce_scalar(double value, ReduceOp op) {
  const Deadline deadline = deadline_from_now();
  check_usable("all_reduce_scalar");
  auto v = std::make_shared<double>(value);
  const MPI_Op mop = mpi_op(op);
  const MPI_Comm comm = comm_;
  run(make_op(
          fmt::format("all_reduce_scalar({}, double)", to_string(op)),
          [=](MPI_Request* r) {
            return MPI_Iallreduce(MPI_IN_PLACE, v.get(), 1, MPI_DOUBLE, mop, comm, r);
          },
          v),
      deadline);
  return op == ReduceOp::kAvg ? *v / size() : *v;
}

int64_t MpiCommunicator::all_reduce_scalar(int64_t value, ReduceOp op) {
  const Deadline deadline = deadline_from_now();
  const char* name = "all_reduce_scalar";
  check_usable(name);
  check_reduce(identity(), name, at::kLong, op);
  auto v = std::make_shared<int64_t>(value);
  const MPI_Op mop = mpi_op(op);
  const MPI_Comm comm = comm_;
  run(make_op(
          fmt::format("all_reduce_scalar({}, int64)", to_string(op)),
          [=](MPI_Request* r) {
            return MPI_Iallreduce(MPI_IN_PLACE, v.get(), 1, MPI_INT64_T, mop, comm, r);
          },
          v),
      deadline);
  return *v;
}

void MpiCommunicator::broadcast_bytes(std::string& bytes, int root) {
  const Deadline deadline = deadline_from_now();
  const char* name = "broadcast_bytes";
  check_usable(name);
  check_root(identity(), name, root);
  // The op owns its buffer: after a missed deadline MPI may still write into it.
  struct Message {
    int64_t length = 0;
    std::string data;
  };
  auto m = std::make_shared<Message>();
  if (rank() == root) {
    m->length = static_cast<int64_t>(bytes.size());
    m->data = bytes;
  }
  const MPI_Comm comm = comm_;
  run(make_op(
          "broadcast_bytes(length)",
          [=](MPI_Request* r) { return MPI_Ibcast(&m->length, 1, MPI_INT64_T, root, comm, r); }, m),
      deadline);
  const int count = checked_count(identity(), name, m->length);
  if (rank() != root) m->data.resize(static_cast<size_t>(count));
  if (count > 0) {
    run(make_op(
            fmt::format("broadcast_bytes({} bytes)", count),
            [=](MPI_Request* r) {
              return MPI_Ibcast(m->data.data(), count, MPI_BYTE, root, comm, r);
            },
            m),
        deadline);
  }
  if (rank() != root) bytes = std::move(m->data);
}

std::vector<std::string> MpiCommunicator::gather_bytes_to_root(const std::string& bytes, int root) {
  const Deadline deadline = deadline_from_now();
  const char* name = "gather_bytes_to_root";
  check_usable(name);
  check_root(identity(), name, root);
  struct Message {
    int64_t length = 0;
    std::vector<int64_t> lengths;  // root only
    std::string data;              // this rank's bytes
    std::string all;               // root only: every rank's, concatenated
    std::vector<int> counts, displs;
  };
  auto m = std::make_shared<Message>();
  m->length = static_cast<int64_t>(bytes.size());
  m->data = bytes;
  checked_count(identity(), name, m->length);
  const bool is_root = rank() == root;
  if (is_root) m->lengths.assign(size(), 0);
  const MPI_Comm comm = comm_;
  run(make_op(
          "gather_bytes_to_root(lengths)",
          [=](MPI_Request* r) {
            return MPI_Igather(&m->length, 1, MPI_INT64_T, is_root ? m->lengths.data() : nullptr, 1,
                               MPI_INT64_T, root, comm, r);
          },
          m),
      deadline);
  int64_t total = 0;
  if (is_root) {
    for (int64_t n : m->lengths) {
      m->displs.push_back(checked_count(identity(), name, total));
      m->counts.push_back(checked_count(identity(), name, n));
      total += n;
    }
    checked_count(identity(), name, total);
    m->all.resize(static_cast<size_t>(total));
  }
  run(make_op(
          "gather_bytes_to_root(bytes)",
          [=](MPI_Request* r) {
            return MPI_Igatherv(m->data.data(), static_cast<int>(m->length), MPI_BYTE,
                                is_root ? m->all.data() : nullptr,
                                is_root ? m->counts.data() : nullptr,
                                is_root ? m->displs.data() : nullptr, MPI_BYTE, root, comm, r);
          },
          m),
      deadline);
  std::vector<std::string> out;
  if (!is_root) return out;
  out.reserve(size());
  for (int r = 0; r < size(); ++r) out.push_back(m->all.substr(m->displs[r], m->counts[r]));
  return out;
}

}  // namespace pft
