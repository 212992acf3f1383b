#include "sweep/executor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "sweep/results.h"

namespace pft::sweep {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-+=./,:@%") == std::string::npos)
    return s;
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string command_text(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) s += (s.empty() ? "" : " ") + shell_quote(a);
  return s;
}

int attempts_of(const std::vector<TrialEvent>& events, const std::string& id) {
  return static_cast<int>(std::count_if(events.begin(), events.end(), [&](const TrialEvent& e) {
    return e.trial == id && e.kind == "started";
  }));
}

void print_event(const SweepRun& run, const TrialEvent& e) {
  std::string what;
  const std::string metric = run.spec.objective.metric;
  if (e.kind == "started") {
    Trial t;
    t.params = e.params;
    what = fmt::format("started ({})", params_text(t));
  } else if (e.kind == "finished") {
    what = fmt::format("finished: {} {:.4f} at step {}", metric, e.objective.value_or(NAN),
                       e.step.value_or(0));
  } else if (e.kind == "failed") {
    what = fmt::format("failed{}: {}",
                       e.exit_code && *e.exit_code != 0 ? fmt::format(" (exit {})", *e.exit_code) : "",
                       e.message);
  } else {
    what = e.kind + (e.message.empty() ? "" : ": " + e.message);
  }
  log::info("sweep: {} {}", e.trial, what);
}

}  // namespace

fs::path self_exe() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw RuntimeFailure("cannot find the running pft binary (/proc/self/exe): " + ec.message());
  return p;
}

SweepRun prepare_sweep(SweepSpec spec, const fs::path& dir, bool lock) {
  SweepRun run{std::move(spec), {}, {}, SweepDir(dir), self_exe()};
  run.trials = expand(run.spec);
  if (run.trials.empty())
    throw InputError(fmt::format("sweep {}: no trials (a parameter without values?)",
                                 run.spec.file.string()));
  run.configs = load_trial_configs(run.spec, run.trials, run.dir.root());
  run.dir.create();
  if (lock) run.dir.lock("");
  run.dir.record_or_check_identity(run.spec, sweep_hash(run.spec, run.configs));
  return run;
}

std::vector<std::string> local_launcher(const ExecutorSpec& executor) {
  if (executor.ranks_per_trial <= 1) return {};
  std::string wrapper = executor.launcher;
  if (wrapper.empty()) {
    if (const char* env = std::getenv("PFT_MPIRUN"); env != nullptr && *env != '\0') wrapper = env;
  }
  if (wrapper.empty()) {
    const fs::path bin = self_exe().parent_path();
    for (const fs::path& p : {bin / "../../../launch/pft-mpirun", bin / "pft-mpirun"}) {
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) {
        wrapper = fs::weakly_canonical(p).string();
        break;
      }
    }
  }
  if (wrapper.empty()) wrapper = "pft-mpirun";
  return {wrapper, "-np", std::to_string(executor.ranks_per_trial)};
}

std::vector<std::string> slurm_launcher(const ExecutorSpec& executor) {
  if (executor.ranks_per_trial <= 1) return {};
  return {"srun", "--mpi=pmix", "-n", std::to_string(executor.ranks_per_trial),
          "--kill-on-bad-exit=1"};
}

std::vector<std::string> trial_command(const SweepRun& run, const Trial& trial,
                                       const std::vector<std::string>& launcher) {
  std::vector<std::string> argv = launcher;
  argv.push_back(run.pft.string());
  argv.push_back("train");
  argv.push_back(trial_config_file(run.spec, run.dir.root()).string());
  for (const std::string& o : trial_overrides(trial, run.dir.root())) {
    argv.push_back("--set");
    argv.push_back(o);
  }
  argv.push_back("--set");
  argv.push_back("train.resume=auto");
  return argv;
}

std::optional<pid_t> start_trial(const SweepRun& run, size_t index,
                                 const std::vector<std::string>& launcher, EventLog& log,
                                 int lock_wait_seconds) {
  const Trial& trial = run.trials[index];
  const fs::path tdir = run.dir.trial(trial.id);
  std::error_code ec;
  fs::create_directories(tdir, ec);
  if (ec)
    throw InputError(fmt::format("cannot create the trial directory '{}': {}", tdir.string(),
                                 ec.message()));
  // A trial of a killed sweep may still be checkpointing (Note [trials die with the sweep]).
  for (int i = 0; i < lock_wait_seconds && run_lock_held(tdir); ++i) {
    if (i == 0)
      log::info("sweep: {} waits for the earlier run of this trial to release {}", trial.id,
                (tdir / "run.lock").string());
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  // Still held: `pft train` would refuse (exit 2) and the trial be recorded failed for good.
  if (run_lock_held(tdir)) return std::nullopt;
  const std::vector<std::string> argv = trial_command(run, trial, launcher);
  const int out = ::open(run.dir.trial_log(trial.id).c_str(),
                         O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (out < 0)
    throw InputError(fmt::format("cannot open '{}': {}", run.dir.trial_log(trial.id).string(),
                                 std::strerror(errno)));
  TrialEvent e;
  e.kind = "started";
  e.trial = trial.id;
  e.params = trial.params;
  e.extra["attempt"] = attempts_of(read_events(run.dir.events()), trial.id) + 1;
  e.extra["command"] = command_text(argv);
  // Who waits for the trial (sweep/results.h: a trial whose runner is alive is running).
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '?';
  e.extra["host"] = host;
  e.extra["pid"] = static_cast<int64_t>(::getpid());
  log.write(e);
  print_event(run, e);
  const std::string banner = fmt::format("==== pft sweep: {} attempt {}: {}\n", trial.id,
                                         e.extra["attempt"].as_int64(), command_text(argv));
  if (::write(out, banner.data(), banner.size()) < 0) {
    // The log is informational; the trial runs without its banner.
  }

  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const pid_t parent = ::getpid();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out);
    throw RuntimeFailure(fmt::format("cannot start trial {}: fork: {}", trial.id, std::strerror(errno)));
  }
  if (pid == 0) {
    // Note [trials die with the sweep]; the check after it closes the race with a parent that
    // died before the prctl.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(75);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execvp(cargv[0], cargv.data());
    const std::string msg = fmt::format("pft sweep: error: cannot run {}: {}\n", argv[0],
                                        std::strerror(errno));
    if (::write(STDERR_FILENO, msg.data(), msg.size()) < 0) {
    }
    ::_exit(127);
  }
  ::close(out);
  return pid;
}

std::string last_error_line(const fs::path& log) {
  std::ifstream in(log);
  std::string last, last_error;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line.starts_with("==== pft sweep:")) continue;
    last = line;
    std::string lower = line;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower.find("error") != std::string::npos) last_error = line;
  }
  std::string out = last_error.empty() ? last : last_error;
  constexpr size_t kMax = 600;
  if (out.size() > kMax) out = out.substr(0, kMax) + "...";
  return out;
}

TrialEvent trial_outcome(const SweepRun& run, const Trial& trial, int wait_status, double seconds) {
  TrialEvent e;
  e.trial = trial.id;
  e.params = trial.params;
  const TrialProgress p = read_trial_progress(run.dir.trial(trial.id) / "metrics.jsonl",
                                              run.spec.objective);
  e.step = p.steps;
  if (p.objective) e.objective = *p.objective;
  e.extra["seconds"] = std::round(seconds * 1000.0) / 1000.0;
  const fs::path log = run.dir.trial_log(trial.id);
  if (WIFSIGNALED(wait_status)) {
    e.kind = "failed";
    e.message = fmt::format("killed by signal {} ({}); last line of {}: {}", WTERMSIG(wait_status),
                            strsignal(WTERMSIG(wait_status)), log.string(), last_error_line(log));
    e.exit_code = 128 + WTERMSIG(wait_status);
    return e;
  }
  const int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  if (code == 75) {
    e.kind = "interrupted";
    e.exit_code = code;
    e.message = "preempted: it checkpointed and a rerun of the sweep resumes it";
    return e;
  }
  if (code != 0) {
    e.kind = "failed";
    e.exit_code = code;
    e.message = last_error_line(log);
    if (e.message.empty()) e.message = fmt::format("exited {} without output ({})", code, log.string());
    return e;
  }
  e.kind = "failed";
  e.exit_code = 0;
  if (p.divergence) {
    e.message = "diverged: " + *p.divergence;
  } else if (!p.ended) {
    e.message = fmt::format("exited 0 but its metrics.jsonl has no `end` record ({})", log.string());
  } else if (!p.objective) {
    e.message = fmt::format("no evaluation recorded {} (metrics.jsonl `eval` records)",
                            run.spec.objective.metric);
  } else if (!std::isfinite(*p.objective)) {
    e.message = fmt::format("diverged: {} is {} at step {}", run.spec.objective.metric,
                            *p.objective, p.objective_step);
  } else {
    e.kind = "finished";
    e.exit_code.reset();
  }
  return e;
}

int run_local_sweep(SweepRun& run) {
  EventLog log(run.dir.events());
  const std::map<std::string, TrialEvent> last = last_events(read_events(run.dir.events()));
  std::deque<size_t> todo;
  size_t skipped = 0;
  for (size_t i = 0; i < run.trials.size(); ++i) {
    const Trial& t = run.trials[i];
    const auto it = last.find(t.id);
    if (it != last.end() && is_final(it->second.kind)) {
      ++skipped;
      continue;
    }
    // Finished while the sweep was being killed: record it without running it again.
    const TrialProgress p = read_trial_progress(run.dir.trial(t.id) / "metrics.jsonl",
                                                run.spec.objective);
    if (it != last.end() && p.ended) {
      const TrialEvent e = trial_outcome(run, t, 0, 0.0);
      log.write(e);
      print_event(run, e);
      continue;
    }
    todo.push_back(i);
  }
  const int64_t parallel = run.spec.executor.parallel;
  log::info("sweep: {} trials in {}: {} to run, {} ended before; {} at a time, {} rank(s) each",
            run.trials.size(), run.dir.root().string(), todo.size(), skipped, parallel,
            run.spec.executor.ranks_per_trial);
  const std::vector<std::string> launcher = local_launcher(run.spec.executor);
  struct Running {
    size_t index;
    Clock::time_point start;
  };
  std::map<pid_t, Running> running;
  std::vector<std::string> held;  // trials not started: their run.lock stayed held
  while (!todo.empty() || !running.empty()) {
    while (static_cast<int64_t>(running.size()) < parallel && !todo.empty()) {
      const size_t i = todo.front();
      todo.pop_front();
      if (const std::optional<pid_t> pid = start_trial(run, i, launcher, log)) {
        running[*pid] = Running{i, Clock::now()};
      } else {
        const fs::path lock = run.dir.trial(run.trials[i].id) / "run.lock";
        log::warn("sweep: {} not started: {} is still held after {} s (an earlier run of this "
                  "trial, or another process using its directory); it keeps no end event, so a "
                  "rerun of the sweep runs it once that process has ended",
                  run.trials[i].id, lock.string(), kLockWaitSeconds);
        held.push_back(run.trials[i].id);
      }
    }
    if (running.empty()) break;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw RuntimeFailure(fmt::format("sweep: waitpid: {}", std::strerror(errno)));
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const double seconds = std::chrono::duration<double>(Clock::now() - it->second.start).count();
    const TrialEvent e = trial_outcome(run, run.trials[it->second.index], status, seconds);
    running.erase(it);
    log.write(e);
    print_event(run, e);
  }
  const std::string table = refresh_results(run.spec, run.trials, run.dir);
  std::cout << table << std::flush;
  const std::vector<TrialStatus> rows = collect_status(run.spec, run.trials, run.dir);
  const size_t finished = static_cast<size_t>(std::count_if(rows.begin(), rows.end(), [](const TrialStatus& s) {
    return s.state == TrialState::kFinished;
  }));
  const size_t failed = static_cast<size_t>(std::count_if(rows.begin(), rows.end(), [](const TrialStatus& s) {
    return s.state == TrialState::kFailed;
  }));
  const size_t interrupted = rows.size() - finished - failed;
  std::error_code ec;
  log::info("sweep: {} finished, {} failed{}{}; {}{}", finished, failed,
            interrupted > 0 ? fmt::format(", {} interrupted (rerun the command to resume)", interrupted) : "",
            held.empty() ? "" : fmt::format(" ({} not started, their run.lock held: {})",
                                            held.size(), fmt::join(held, ", ")),
            fs::exists(run.dir.best(), ec) ? "best config " + run.dir.best().string() : "no best config",
            ", plot " + run.dir.plot().string());
  return finished > 0 ? 0 : static_cast<int>(ExitCode::kRuntime);
}

}  // namespace pft::sweep
