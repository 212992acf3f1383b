// The local executor's building blocks (sweep/executor.h) without training: start_trial leaves a
// trial whose run directory is still locked (Note [trials die with the sweep]) instead of starting
// a `pft train` that would refuse and be recorded failed for good.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "core/run_dir.h"
#include "sweep/executor.h"

namespace pft::sweep {
namespace {

namespace fs = std::filesystem;

TEST(SweepExecutor, TrialWhoseRunDirStaysLockedIsNotStarted) {
  const fs::path root = fs::temp_directory_path() / ("pft-sweep-executor-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  const std::string text = "base: " + (fs::path(PFT_SOURCE_ROOT) / "configs/quickstart.yaml").string() +
                           "\nobjective: {metric: eval.loss}\n";
  SweepRun run = prepare_sweep(parse_sweep_text(text, root / "s.yaml"), root / "sweep", /*lock=*/false);
  run.pft = "/bin/true";  // what the trial "trains" with: nothing, exit 0
  const std::string id = run.trials[0].id;
  EventLog log(run.dir.events());
  {
    RunDir held(run.dir.trial(id), /*create=*/true);  // another run of this trial, alive
    held.lock("");
    EXPECT_EQ(start_trial(run, 0, {}, log, /*lock_wait_seconds=*/1), std::nullopt);
    EXPECT_TRUE(read_events(run.dir.events()).empty());  // no `started`, no end event
  }
  // Released: the trial starts.
  const std::optional<pid_t> pid = start_trial(run, 0, {}, log, /*lock_wait_seconds=*/1);
  ASSERT_TRUE(pid.has_value());
  int status = 0;
  ASSERT_EQ(::waitpid(*pid, &status, 0), *pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::vector<TrialEvent> events = read_events(run.dir.events());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "started");
  EXPECT_EQ(events[0].trial, id);
  fs::remove_all(root);
}

}  // namespace
}  // namespace pft::sweep
