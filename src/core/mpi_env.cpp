// The MPI side of core (contract: core/mpi_env.h, core/mpi_check.h).
#include "core/mpi_env.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/format.h"
#include "core/leak_check.h"
#include "core/logging.h"
#include "core/mpi_check.h"
#include "core/mpi_roll_call.h"
#include "core/rank_env.h"
#include "core/test_hooks.h"

namespace pft {

namespace {

std::string host_name() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return host;
}

// write_launcher_verdict with the rank given: the finalize watchdog may not call MPI while the
// main thread is inside MPI_Finalize.
void write_verdict(int code, int rank) {
  const char* path = std::getenv("PFT_VERDICT_FILE");
  if (path == nullptr || *path == '\0') return;
  const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return;  // another rank's verdict came first, or the launcher's host is elsewhere
  const std::string line = fmt::format("{} {} {}\n", code, rank, host_name());
  (void)!write(fd, line.data(), line.size());
  close(fd);
}

// The first rank past MPI_Finalize creates PFT_VERDICT_FILE.finalized ("<rank> <host>\n"):
// launch/pft-mpirun ends an mpirun still waiting for a rank's exit PFT_MPIRUN_FINALIZE_GRACE_S
// later (a rank stopped or hung after its MPI_Finalize). Never throws.
void write_finalized_marker(int rank) {
  const char* verdict = std::getenv("PFT_VERDICT_FILE");
  if (verdict == nullptr || *verdict == '\0') return;
  const std::string path = std::string(verdict) + ".finalized";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return;  // another rank was first, or the launcher's host is elsewhere
  const std::string line = fmt::format("{} {}\n", rank, host_name());
  (void)!write(fd, line.data(), line.size());
  close(fd);
}

}  // namespace

void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw RuntimeFailure(fmt::format("MPI call {} failed at {}:{} on rank {} ({}): {}", call, file,
                                   line, mpi_world_rank(), host_name(), std::string(text, len)));
}

MpiEnvironment::MpiEnvironment() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    MPI_Query_thread(&provided_);
    return;
  }
  // Note [singleton without a daemon]: a process no launcher started (`pft train cfg` alone)
  // is an MPI singleton, and Open MPI 4.1 then forks a local daemon (orted) through its rsh
  // launcher, which needs `ssh` or `rsh` on the PATH even on one host: on an image without
  // them (containers, the GPU check's bare image) MPI_Init fails with "plm_rsh_agent: ssh :
  // rsh ... could not be found". pft never spawns processes through MPI, so a singleton needs
  // no daemon: ask for an isolated one, unless the user set the parameter.
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr ||
                        std::getenv("PMIX_RANK") != nullptr || std::getenv("PMI_RANK") != nullptr;
  if (!launched) setenv("OMPI_MCA_ess_singleton_isolated", "1", /*overwrite=*/0);
  PFT_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided_));
  owns_ = true;
  // Errors come back as return codes (checked by PFT_MPI_CHECK) instead of aborting the job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiEnvironment::~MpiEnvironment() {
  if (!owns_) return;
  // Unwinding from a failure: MPI_Finalize waits for every rank, and a peer that died or stalled
  // never comes, so the job would hang here before the error is even printed. main() reports it,
  // then finalizes (the ranks agreed on the failure) or aborts the job (they did not).
  if (std::uncaught_exceptions() > 0) return;
  // The command ended normally on every rank (its outputs are written): a peer that stops now
  // must not hang the job either (finalize_mpi_job; exit 3 if it does).
  finalize_mpi_job(static_cast<int>(ExitCode::kRuntime),
                   "this rank had finished its command; for `pft train`, the run's outputs are "
                   "complete once rank 0 printed its `done:` line");
}

namespace {

// Node index of this rank's node among `comms`' nodes: the local leaders, ordered by rank, number
// the nodes. Collective over comms.world.
void number_nodes(const MpiComms& c, MpiTopology& t) {
  const int leader = t.local_rank == 0 ? 1 : 0;
  std::vector<int> leaders(static_cast<size_t>(t.world_size), 0);
  PFT_MPI_CHECK(MPI_Allgather(&leader, 1, MPI_INT, leaders.data(), 1, MPI_INT, c.world));
  int node_leader_rank = t.world_rank;
  PFT_MPI_CHECK(MPI_Bcast(&node_leader_rank, 1, MPI_INT, 0, c.node));
  t.num_nodes = 0;
  for (int r = 0; r < t.world_size; ++r) {
    if (leaders[static_cast<size_t>(r)] == 0) continue;
    if (r == node_leader_rank) t.node_rank = t.num_nodes;
    ++t.num_nodes;
  }
}

}  // namespace

MpiTopology discover_mpi_topology() {
  MpiTopology t;
  t.comms = std::make_shared<MpiComms>();
  MpiComms& c = *t.comms;
  MPI_Query_thread(&t.thread_level);
  PFT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c.world));
  MPI_Comm_set_errhandler(c.world, MPI_ERRORS_RETURN);
  PFT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c.roll_call));
  MPI_Comm_set_errhandler(c.roll_call, MPI_ERRORS_RETURN);
  PFT_MPI_CHECK(MPI_Comm_rank(c.world, &t.world_rank));
  PFT_MPI_CHECK(MPI_Comm_size(c.world, &t.world_size));
  PFT_MPI_CHECK(
      MPI_Comm_split_type(c.world, MPI_COMM_TYPE_SHARED, t.world_rank, MPI_INFO_NULL, &c.node));
  PFT_MPI_CHECK(MPI_Comm_rank(c.node, &t.local_rank));
  PFT_MPI_CHECK(MPI_Comm_size(c.node, &t.local_size));

  number_nodes(c, t);
  return t;
}

MpiTopology split_mpi_topology(const MpiComms& parent, int color) {
  MpiTopology t;
  t.comms = std::make_shared<MpiComms>();
  MpiComms& c = *t.comms;
  MPI_Query_thread(&t.thread_level);
  int parent_rank = 0;
  PFT_MPI_CHECK(MPI_Comm_rank(parent.world, &parent_rank));
  PFT_MPI_CHECK(MPI_Comm_split(parent.world, color, parent_rank, &c.world));
  MPI_Comm_set_errhandler(c.world, MPI_ERRORS_RETURN);
  PFT_MPI_CHECK(MPI_Comm_split(parent.roll_call, color, parent_rank, &c.roll_call));
  MPI_Comm_set_errhandler(c.roll_call, MPI_ERRORS_RETURN);
  PFT_MPI_CHECK(MPI_Comm_split(parent.node, color, parent_rank, &c.node));
  PFT_MPI_CHECK(MPI_Comm_rank(c.world, &t.world_rank));
  PFT_MPI_CHECK(MPI_Comm_size(c.world, &t.world_size));
  PFT_MPI_CHECK(MPI_Comm_rank(c.node, &t.local_rank));
  PFT_MPI_CHECK(MPI_Comm_size(c.node, &t.local_size));
  number_nodes(c, t);
  return t;
}

void free_mpi_comms(MpiComms& comms) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (comms.roll_call != MPI_COMM_NULL) {
    unregister_roll_call();
    MPI_Comm_free(&comms.roll_call);
    // A group's: the job's roll call again.
    if (comms.parent_roll_call != MPI_COMM_NULL)
      register_roll_call(comms.parent_roll_call, comms.parent_hosts);
  }
  if (comms.node != MPI_COMM_NULL) MPI_Comm_free(&comms.node);
  if (comms.world != MPI_COMM_NULL) MPI_Comm_free(&comms.world);
}

MPI_Comm world_comm(const RankEnv& env) {
  PFT_ASSERT(env.mpi != nullptr && env.mpi->world != MPI_COMM_NULL,
             "this RankEnv was not made by discover_rank_env (or was released)");
  return env.mpi->world;
}

int mpi_world_rank() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

void max_over_ranks(const RankEnv* env, std::span<int> values, double timeout_s,
                    std::string_view what) {
  using Clock = std::chrono::steady_clock;
  const MPI_Comm comm = env != nullptr ? world_comm(*env) : MPI_COMM_WORLD;
  const Clock::time_point start = Clock::now();
  // The buffer must outlive a request abandoned at the deadline: MPI may still write into it.
  auto buffer = std::make_unique<std::vector<int>>(values.begin(), values.end());
  MPI_Request request = MPI_REQUEST_NULL;
  PFT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buffer->data(), static_cast<int>(buffer->size()),
                               MPI_INT, MPI_MAX, comm, &request));
  // Poll: yield for the first millisecond (the usual case: every rank is already there), then
  // sleep 1 ms between tests, so ranks waiting for a peer that works alone (a store build, a
  // checkpoint write on rank 0) leave it the cores.
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(timeout_s));
  for (int done = 0;;) {
    PFT_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) break;
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      int rank = 0, size = 1;
      MPI_Comm_rank(comm, &rank);
      MPI_Comm_size(comm, &size);
      const double elapsed = std::chrono::duration<double>(now - start).count();
      leaked_on_purpose(buffer.release());  // like `request`: the collective is still active
      const std::string roll_call = roll_call_after_deadline(timeout_s);
      throw RuntimeFailure(fmt::format(
          "{} on rank {} of {} (host {}) did not complete within the deadline of {:g} s "
          "(elapsed {:.2f} s): a rank is stalled or died, or its share of this step takes longer "
          "than the deadline. {}{}HINT: if a rank is merely slow here (a large data store build, a "
          "big synchronous checkpoint write), raise dist.timeout_s, or prepare the data stores "
          "beforehand with `pft data prepare`",
          what, rank, size, host_name(), timeout_s, elapsed, roll_call,
          roll_call.empty() ? "" : " "));
    }
    if (now - start < std::chrono::milliseconds(1)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::copy(buffer->begin(), buffer->end(), values.begin());
}

void write_launcher_verdict(int code) { write_verdict(code, mpi_world_rank()); }

void finalize_mpi_job(int code_if_hung, std::string_view outcome) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  const int rank = mpi_world_rank();
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  test_delay_point("finalize", rank);
  // The ASan build only (Note [leak check before MPI_Finalize]); before the watchdog starts, as
  // the check stops this process for as long as it takes.
  leak_check_before_mpi_finalize();
  // The watchdog: a detached thread, so a finalize that never returns cannot keep it from firing;
  // `done` (shared, it may outlive this frame) makes it do nothing once MPI_Finalize returned.
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread([done, rank, size, code_if_hung, what = std::string(outcome)] {
    std::this_thread::sleep_for(std::chrono::duration<double>(kFinalizeGraceS));
    if (done->load()) return;
    log::error(
        "MPI_Finalize (the end of the job; {}) has not completed on rank {} of {} (host {}) "
        "within {:g} s: a peer rank stopped answering (stopped, hung, or its host cut off) and "
        "MPI_Finalize waits for every rank. Exiting {} without finalizing; the launcher ends the "
        "rest of the job (docs/launching.md, \"Exit codes\")",
        what, rank, size, host_name(), kFinalizeGraceS, code_if_hung);
    log::flush();
    write_verdict(code_if_hung, rank);  // pft-mpirun stops an mpirun that still waits
    std::fflush(nullptr);
    _exit(code_if_hung);
  }).detach();
  MPI_Finalize();
  done->store(true);
  // Past MPI_Finalize's fence every rank has reached the end; one stopped after this point (its
  // exit never comes) is for the launcher to end: tell it the job has finalized.
  write_finalized_marker(rank);
  test_delay_point("finalized", rank);
}

void end_mpi_job(bool agreed, int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Every rank failed the same way and exits with `code` on its own: end the job normally, within
  // kFinalizeGraceS even when a peer stops answering now.
  if (size == 1 || agreed) {
    finalize_mpi_job(code, fmt::format("every rank had agreed on exit {}", code));
    return;
  }
  // The watchdog: whatever MPI does below, this process ends kEndJobGraceS from now with `code`.
  std::thread([code] {
    std::this_thread::sleep_for(std::chrono::duration<double>(kEndJobGraceS));
    std::fflush(nullptr);
    _exit(code);
  }).detach();
  // A failure the ranks did not agree on may leave peers blocked in a collective: take the whole
  // job down rather than hang.
  write_launcher_verdict(code);
  // After a roll call, the lowest rank that answered prints the job's one message (main stays
  // quiet here): abort a moment later, so the launcher's kill does not cut it off mid-unwind.
  if (!roll_call_reporter()) std::this_thread::sleep_for(std::chrono::seconds(1));
  MPI_Abort(MPI_COMM_WORLD, code);
  _exit(code);  // MPI_Abort does not return; should it, the job still ends with `code`
}

}  // namespace pft
