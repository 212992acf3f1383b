// The sweep's message channel (contract: comm/trial_channel.h).
#include "comm/trial_channel.h"

#include <chrono>
#include <memory>
#include <thread>

#include "core/error.h"
#include "core/format.h"
#include "core/leak_check.h"
#include "core/mpi_check.h"
#include "core/mpi_env.h"

namespace pft {

namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(double timeout_s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(timeout_s));
}

// Waits politely: yields for the first millisecond, then sleeps 1 ms between polls (a rank
// waiting for the controller leaves the cores to the ranks that train).
void wait_a_little(Clock::time_point start) {
  if (Clock::now() - start < std::chrono::milliseconds(1)) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Receives the message `status` describes (from MPI_Iprobe on `comm`).
TrialChannel::Message receive_probed(MPI_Comm comm, const MPI_Status& status) {
  int count = 0;
  PFT_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
  TrialChannel::Message m;
  m.source = status.MPI_SOURCE;
  m.tag = status.MPI_TAG;
  m.bytes.resize(static_cast<size_t>(count));
  PFT_MPI_CHECK(MPI_Recv(m.bytes.data(), count, MPI_BYTE, m.source, m.tag, comm,
                         MPI_STATUS_IGNORE));
  return m;
}

}  // namespace

TrialChannel::TrialChannel(const RankEnv& env) {
  PFT_MPI_CHECK(MPI_Comm_dup(world_comm(env), &comm_));
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  PFT_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
}

TrialChannel::~TrialChannel() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void TrialChannel::send(int dest, int tag, std::string_view bytes, double timeout_s,
                        std::string_view what) {
  // Heap-held: a send abandoned at the deadline may still read its buffer.
  auto buffer = std::make_unique<std::string>(bytes);
  MPI_Request request = MPI_REQUEST_NULL;
  PFT_MPI_CHECK(MPI_Isend(buffer->data(), static_cast<int>(buffer->size()), MPI_BYTE, dest, tag,
                          comm_, &request));
  const Clock::time_point start = Clock::now(), deadline = deadline_after(timeout_s);
  for (int done = 0;;) {
    PFT_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (Clock::now() >= deadline) {
      leaked_on_purpose(buffer.release());  // like the request
      throw RuntimeFailure(fmt::format(
          "sweep: sending {} from rank {} to rank {} did not complete within {:g} s: that rank "
          "is lost or hung; the sweep ends (exit 3) and a rerun of the same command resumes it",
          what, rank_, dest, timeout_s));
    }
    wait_a_little(start);
  }
}

TrialChannel::Message TrialChannel::receive(int source, int tag, double timeout_s,
                                            std::string_view what,
                                            const std::function<void()>& between) {
  const Clock::time_point start = Clock::now(), deadline = deadline_after(timeout_s);
  MPI_Status status;
  for (int found = 0;;) {
    PFT_MPI_CHECK(MPI_Iprobe(source, tag, comm_, &found, &status));
    if (found) break;
    if (Clock::now() >= deadline)
      throw RuntimeFailure(fmt::format(
          "sweep: rank {} waited {:g} s for {} from rank {}: that rank is lost or hung; the sweep "
          "ends (exit 3) and a rerun of the same command resumes it (raise dist.timeout_s if the "
          "sweep controller is merely slow)",
          rank_, timeout_s, what, source));
    if (between) between();
    wait_a_little(start);
  }
  return receive_probed(comm_, status);
}

std::optional<TrialChannel::Message> TrialChannel::try_receive(int tag) {
  MPI_Status status;
  int found = 0;
  PFT_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, tag, comm_, &found, &status));
  if (!found) return std::nullopt;
  return receive_probed(comm_, status);
}

}  // namespace pft
