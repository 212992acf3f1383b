// The slurm executor (sweep/executor.h): one `sbatch --array` job, one array task per trial not
// yet ended, each running `pft sweep trial SWEEP_DIR <index>` -- the local executor's
// start_trial / trial_outcome, under srun for multi-rank trials.
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>

#include "core/error.h"
#include "core/logging.h"
#include "sweep/executor.h"
#include "sweep/results.h"

namespace pft::sweep {

namespace fs = std::filesystem;

namespace {

std::string quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// "0,2,5-7": the array indices of `indices` (sorted), ranges folded.
std::string array_spec(const std::vector<size_t>& indices) {
  std::string out;
  for (size_t i = 0; i < indices.size();) {
    size_t j = i;
    while (j + 1 < indices.size() && indices[j + 1] == indices[j] + 1) ++j;
    out += (out.empty() ? "" : ",") +
           (j > i ? fmt::format("{}-{}", indices[i], indices[j]) : std::to_string(indices[i]));
    i = j + 1;
  }
  return out;
}

}  // namespace

int submit_slurm_sweep(SweepRun& run) {
  const std::map<std::string, TrialEvent> last = last_events(read_events(run.dir.events()));
  std::vector<size_t> todo;
  std::vector<std::string> ids;
  size_t running = 0;
  for (size_t i = 0; i < run.trials.size(); ++i) {
    const auto it = last.find(run.trials[i].id);
    if (it != last.end() && is_final(it->second.kind)) continue;
    // Still running from an earlier submission: not submitted twice.
    if (it != last.end() && run_lock_held(run.dir.trial(run.trials[i].id))) {
      ++running;
      continue;
    }
    todo.push_back(i);
    ids.push_back(run.trials[i].id);
  }
  if (todo.empty()) {
    log::info("sweep: nothing to submit: {} trials ended{}", run.trials.size() - running,
              running > 0 ? fmt::format(", {} still running", running) : "");
    std::cout << refresh_results(run.spec, run.trials, run.dir) << std::flush;
    return 0;
  }
  const ExecutorSpec& ex = run.spec.executor;
  const fs::path slurm_out = run.dir.root() / "slurm";
  fs::create_directories(slurm_out);
  std::string script = fmt::format(
      "#!/usr/bin/env bash\n"
      "# Written by `pft sweep run --executor slurm` (docs/sweeps.md): one array task per trial\n"
      "# not yet ended, each `pft sweep trial SWEEP_DIR <index>`. Flags given to sbatch override\n"
      "# these lines (executor.sbatch_args in the sweep file).\n"
      "#SBATCH --job-name=pft-sweep-{name}\n"
      "#SBATCH --array={array}{limit}\n"
      "#SBATCH --ntasks={ranks}\n"
      "#SBATCH --output={out}/%A_%a.out\n"
      "#SBATCH --open-mode=append\n"
      "set -uo pipefail\n"
      "# As launch/pft-mpirun and launch/slurm/train.sbatch: CMA single-copy fails in containers;\n"
      "# one node needs no TCP transport.\n"
      "export OMPI_MCA_btl_vader_single_copy_mechanism=\"${{OMPI_MCA_btl_vader_single_copy_mechanism:-none}}\"\n"
      "if [[ -z \"${{OMPI_MCA_btl:-}}\" && \"${{SLURM_JOB_NUM_NODES:-1}}\" == 1 ]]; then\n"
      "  export OMPI_MCA_btl=self,vader\n"
      "fi\n"
      "exec {pft} sweep trial {dir} \"$SLURM_ARRAY_TASK_ID\"\n",
      fmt::arg("name", run.dir.root().filename().string()), fmt::arg("array", array_spec(todo)),
      fmt::arg("limit", fmt::format("%{}", ex.parallel)),
      fmt::arg("ranks", ex.ranks_per_trial), fmt::arg("out", slurm_out.string()),
      fmt::arg("pft", quote(run.pft.string())), fmt::arg("dir", quote(run.dir.root().string())));
  RunDir::write_file_atomic(run.dir.sbatch(), script);

  std::string cmd = "sbatch --parsable";
  for (const std::string& a : ex.sbatch_args) cmd += " " + quote(a);
  cmd += " " + quote(run.dir.sbatch().string()) + " 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) throw RuntimeFailure("sweep: cannot run sbatch: " + cmd);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) output += buf;
  const int status = ::pclose(p);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (status != 0 || output.empty())
    throw RuntimeFailure(fmt::format("sweep: `{}` failed (status {}): {}. Is Slurm reachable "
                                     "(sinfo; SLURM_CONF)? The script is {}",
                                     cmd, status, output, run.dir.sbatch().string()));
  const std::string line = output.substr(output.rfind('\n') + 1);  // "jobid[;cluster]"
  const std::string job = line.substr(0, line.find(';'));
  TrialEvent e;
  e.kind = "submitted";
  e.extra["job"] = job;
  e.extra["array"] = array_spec(todo);
  boost::json::array trials;
  for (const std::string& id : ids) trials.emplace_back(id);
  e.extra["trials"] = std::move(trials);
  EventLog(run.dir.events()).write(e);
  log::info("sweep: submitted Slurm job {} (array {}: {} trials, {} at a time, {} rank(s) each); "
            "`pft sweep status {}` shows its progress",
            job, array_spec(todo), todo.size(), ex.parallel, ex.ranks_per_trial,
            run.dir.root().string());
  std::cout << job << "\n" << std::flush;
  return 0;
}

int run_slurm_trial(const fs::path& dir_path, int64_t index) {
  const SweepDir dir(dir_path);
  SweepRun run = prepare_sweep(dir.load_spec(), dir.root(), /*lock=*/false);
  if (index < 0 || index >= static_cast<int64_t>(run.trials.size()))
    throw InputError(fmt::format("pft sweep trial: index {} is out of range: the sweep in {} has "
                                 "{} trials (0..{})",
                                 index, dir.root().string(), run.trials.size(), run.trials.size() - 1));
  const Trial& trial = run.trials[static_cast<size_t>(index)];
  const std::map<std::string, TrialEvent> last = last_events(read_events(dir.events()));
  if (const auto it = last.find(trial.id); it != last.end() && is_final(it->second.kind)) {
    log::info("sweep: {} already {}: nothing to do", trial.id, it->second.kind);
    return 0;
  }
  if (run_lock_held(dir.trial(trial.id))) {
    log::info("sweep: {} is running elsewhere ({}): nothing to do", trial.id,
              (dir.trial(trial.id) / "run.lock").string());
    return 0;
  }
  EventLog log(dir.events());
  const auto start = std::chrono::steady_clock::now();
  const std::optional<pid_t> started =
      start_trial(run, static_cast<size_t>(index), slurm_launcher(run.spec.executor), log);
  if (!started) {
    log::warn("sweep: {} not started: {} is still held after {} s; a rerun of the sweep runs it",
              trial.id, (dir.trial(trial.id) / "run.lock").string(), kLockWaitSeconds);
    return 0;
  }
  const pid_t pid = *started;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw RuntimeFailure(fmt::format("sweep: waitpid: {}", std::strerror(errno)));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const TrialEvent e = trial_outcome(run, trial, status, seconds);
  log.write(e);
  log::info("sweep: {} {}{}", trial.id, e.kind, e.message.empty() ? "" : ": " + e.message);
  try {
    refresh_results(run.spec, run.trials, run.dir);
  } catch (const Error& err) {
    // Another array task refreshing at the same moment; `pft sweep status` refreshes again.
    log::warn("sweep: best.yaml / objective.html not refreshed: {}", err.what());
  }
  return 0;
}

}  // namespace pft::sweep
