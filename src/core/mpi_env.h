// The MPI side of core: the MPI environment (init/finalize), the communicators a RankEnv owns,
// rank discovery, the deadline-bounded exchange behind agree(), and how main ends a failed job.
// Every MPI call of core/ lives in core/mpi_*.cpp; the rest of pft talks to other ranks through
// agree() (core/agree.h) and the Communicator (comm/communicator.h).
#pragma once

#include <mpi.h>

#include <memory>
#include <span>
#include <string>
#include <vector>
#include <string_view>

namespace pft {

struct RankEnv;

// RAII for MPI_Init_thread / MPI_Finalize. Requests MPI_THREAD_MULTIPLE (the gradient reducer's
// communication thread and the controller issue MPI calls from different threads); the level
// actually provided is recorded. If MPI is already initialised (tests), it neither inits nor
// finalizes. Non-copyable. Errors on MPI_COMM_WORLD come back as return codes (PFT_MPI_CHECK).
class MpiEnvironment {
 public:
  MpiEnvironment();
  // Not collective when unwinding from an exception (a stalled peer would never come): main
  // then finalizes or aborts the job itself (end_mpi_job). Otherwise (the command returned)
  // finalize_mpi_job, exiting 3 if MPI_Finalize hangs.
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int thread_level() const { return provided_; }

 private:
  bool owns_ = false;
  int provided_ = 0;
};

// pft's own communicators, held by a discovered RankEnv (RankEnv::mpi).
struct MpiComms {
  MPI_Comm world = MPI_COMM_NULL;  // a duplicate of MPI_COMM_WORLD owned by pft (or a group of it)
  MPI_Comm node = MPI_COMM_NULL;   // the ranks on this node (MPI_Comm_split_type SHARED)
  MPI_Comm roll_call = MPI_COMM_NULL;  // a duplicate for the roll call only (core/mpi_roll_call.h)
  // A group's comms (split_mpi_topology): the roll call registered again when they are freed.
  MPI_Comm parent_roll_call = MPI_COMM_NULL;
  std::vector<std::string> parent_hosts;
};

// What MPI alone tells a rank about the job (the rest of RankEnv comes from the host and torch).
struct MpiTopology {
  int world_rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_size = 1;
  int node_rank = 0;  // nodes numbered by the lowest world rank on each
  int num_nodes = 1;
  int thread_level = 0;
  std::shared_ptr<MpiComms> comms;
};

// Collective over MPI_COMM_WORLD: duplicates it (twice: pft's world and the roll call's), splits
// it by node, numbers the nodes.
MpiTopology discover_mpi_topology();

// Collective over `parent`'s ranks: splits its three communicators by `color` (ranks keep the
// parent's order), so a group of ranks runs as a job of its own (core/rank_env.h:
// split_rank_env). The topology's ranks and sizes are those within the group.
MpiTopology split_mpi_topology(const MpiComms& parent, int color);

// Frees `comms` (collective over their ranks); a no-op after MPI_Finalize or when already freed.
void free_mpi_comms(MpiComms& comms);

// env's duplicate of MPI_COMM_WORLD. Throws RuntimeFailure when env was not discovered (a bug).
MPI_Comm world_comm(const RankEnv& env);

// This process's rank in MPI_COMM_WORLD (0 before MPI_Init or after MPI_Finalize).
int mpi_world_rank();

// Element-wise maximum of `values` over the ranks of env's world (MPI_COMM_WORLD when `env` is
// null), in place. Collective. A nonblocking all-reduce polled with short sleeps (a waiting rank
// leaves the cores to a peer that works alone), so it cannot hang: when it has not completed
// `timeout_s` after the call it throws RuntimeFailure naming `what`, the rank, the host, the
// elapsed time and the deadline, with the roll call's answer (core/mpi_roll_call.h: which ranks
// are lost), and leaks the pending request (MPI may still write into it).
void max_over_ranks(const RankEnv* env, std::span<int> values, double timeout_s,
                    std::string_view what);

// After main caught a failure with exit code `code`: when MPI is up and the job has several
// ranks, MPI_Abort the whole job unless every rank `agreed` on the failure (core/agree.h: they
// all exit on their own), else finalize_mpi_job(code). Called once, by main only.
//
// MPI_Abort may not hang the process: a launcher that lost a host can leave it waiting forever,
// so a watchdog thread ends the process with _exit(code) kEndJobGraceS after the call began. The
// launcher is told first (write_launcher_verdict), so that launch/pft-mpirun can stop an mpirun
// that cannot reach a lost host's daemon.
void end_mpi_job(bool agreed, int code);

// How long end_mpi_job lets MPI_Abort run before _exit(code).
inline constexpr double kEndJobGraceS = 3.0;

// The end of a job whose ranks all ended the same way (the command returned on every rank, or a
// failure they all agreed on): MPI_Finalize, bounded. MPI_Finalize waits for every rank (Open MPI
// 4.1: a fence over all processes), and has no deadline: a peer stopped or hung after its last
// collective (SIGSTOP, a stuck filesystem, a host cut off) would hang this rank, and so mpirun and
// the job, forever. So a watchdog thread, kFinalizeGraceS after the call began, logs which phase
// hung (`outcome` says what had been done), writes the launcher's verdict (write_launcher_verdict;
// launch/pft-mpirun then stops an mpirun still waiting) and _exits `code_if_hung` without
// finalizing; Open MPI then ends the job, the stopped peer included (SIGKILL). Callers pass the
// code the job agreed on for a failure, and 3 after a success: the outputs are complete but a
// rank of the job is stuck and its node needs a look, which 0 would hide (docs/launching.md,
// "Exit codes"). Once MPI_Finalize returned, the rank creates PFT_VERDICT_FILE.finalized (the
// first rank's "<rank> <host>"): a rank stopped after its own MPI_Finalize cannot end itself, so
// launch/pft-mpirun stops an mpirun still waiting for it PFT_MPIRUN_FINALIZE_GRACE_S (10) s later
// and exits 3. A no-op before MPI_Init or after MPI_Finalize. Test hook: PFT_TEST_DELAY
// point `finalize` (core/test_hooks.h), just before MPI_Finalize.
void finalize_mpi_job(int code_if_hung, std::string_view outcome);

// How long finalize_mpi_job waits for MPI_Finalize. A healthy finalize takes well under a second
// (a fence and the transports' teardown; 2 ranks here: ~0.1 s); 10 s leaves a loaded or
// multi-host job a wide margin while ending a job that already finished far sooner than
// dist.timeout_s (default 300 s), which bounds work, not teardown.
inline constexpr double kFinalizeGraceS = 10.0;

// Tells the launcher this rank ends the job with `code` (not agreed by every rank): when
// PFT_VERDICT_FILE is set (launch/pft-mpirun sets it), creates that file with "<code> <rank>
// <host>\n" unless it exists (the first verdict wins). Only ranks on the launcher's host can
// reach it; elsewhere the write fails quietly. Never throws.
void write_launcher_verdict(int code);

}  // namespace pft
