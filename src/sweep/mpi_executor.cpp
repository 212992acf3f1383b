// The in-allocation executor (contract and Note [sweep protocol]: sweep/mpi_executor.h).
#include "sweep/mpi_executor.h"

#include <unistd.h>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <exception>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <thread>

#include "comm/trial_channel.h"
#include "control/controller.h"
#include "core/agree.h"
#include "core/rank_env.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_env.h"
#include "core/signals.h"
#include "sweep/executor.h"
#include "sweep/results.h"
#include "sweep/sweep_dir.h"
#include "train/trainer.h"

namespace pft::sweep {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

enum Tag : int {
  kRequest = 1, kAssign = 2, kReport = 3, kVerdict = 4, kDone = 5, kIdle = 6, kError = 7
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Doubles cross the channel as their shortest round-trip text ("nan" and "inf" included).
std::string exact(double x) { return fmt::format("{}", x); }
double from_exact(const json::value& v) { return std::stod(std::string(v.as_string())); }

std::string table_key(const std::string& objective) {
  const std::string prefix = "eval.";
  return objective.rfind(prefix, 0) == 0 ? objective.substr(prefix.size()) : objective;
}

// What an earlier run of this sweep recorded (sweep.jsonl), for resume.
struct Recorded {
  std::map<std::string, MpiTrialOutcome> ended;  // by trial id: its final event
  std::vector<std::string> started;              // started, in order (ended ones included)
  std::map<std::string, int64_t> attempts;       // `started` events per trial
  struct Rung {
    std::string trial;
    int64_t step;
    double objective;
    AshaVerdict verdict;
  };
  std::vector<Rung> rungs;
  std::map<std::string, double> last_objective;
};

Recorded read_recorded(const fs::path& path) {
  Recorded r;
  for (const TrialEvent& e : read_events(path)) {
    const double objective = e.objective.value_or(kNaN);
    if (e.kind == "started") {
      r.started.push_back(e.trial);
      ++r.attempts[e.trial];
    } else if (e.kind == "rung") {
      const auto d = e.extra.find("decision");
      const bool stop = d != e.extra.end() && d->value().is_string() && d->value().as_string() == "stop";
      r.rungs.push_back({e.trial, e.step.value_or(0), objective,
                         stop ? AshaVerdict::kStop : AshaVerdict::kContinue});
      r.last_objective[e.trial] = objective;
    } else if (is_final(e.kind)) {
      MpiTrialOutcome o;
      o.id = e.trial;
      o.state = e.kind;
      o.steps = e.step.value_or(0);
      o.objective = objective;
      o.message = e.message;
      r.ended[e.trial] = o;
    }
  }
  return r;
}

std::string this_host() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return host;
}

// The sweep controller (world rank 0, its own thread): serves the protocol until every group
// was told there is nothing left.
class SweepController {
 public:
  SweepController(const std::vector<MpiTrial>& trials, const MpiSweepSettings& settings,
                  int groups, TrialChannel& channel)
      : trials_(trials), settings_(settings), groups_left_(groups), channel_(channel),
        log_(settings.dir / "sweep.jsonl") {
    if (settings.asha) asha_.emplace(*settings.asha);
    objective_.metric = settings.objective;
    objective_.key = table_key(settings.objective);
    objective_.higher_is_better = settings.higher_is_better;
    const Recorded recorded = read_recorded(settings.dir / "sweep.jsonl");
    attempts_ = recorded.attempts;
    outcomes_.resize(trials.size());
    std::map<std::string, size_t>& index = index_;
    for (size_t i = 0; i < trials.size(); ++i) {
      index[trials[i].id] = i;
      outcomes_[i].id = trials[i].id;
      outcomes_[i].state = "not run";
      outcomes_[i].objective = kNaN;
    }
    for (const auto& [id, o] : recorded.ended)
      if (index.count(id)) outcomes_[index[id]] = o;
    for (const auto& [id, x] : recorded.last_objective)
      if (index.count(id)) last_objective_[id] = x;
    if (asha_)
      for (const Recorded::Rung& r : recorded.rungs) asha_->restore(r.trial, r.step, r.objective, r.verdict);
    // A trial started but not ended whose `pft train` had ended (its `end` record written, the
    // sweep killed before its end event): recorded now from its run dir, as the local executor
    // does (sweep/executor.cpp). Trained again, it would resume from its final checkpoint and
    // take no step (no evaluation: `failed` with 0 steps), or, stopped by ASHA at a rung, train
    // on past it (the verdict is not asked again).
    std::set<std::string> ended = {};
    for (const auto& [id, o] : recorded.ended) ended.insert(id);
    size_t ended_now = 0;
    for (const std::string& id : recorded.started)
      if (index.count(id) && !ended.count(id) && record_ended_run(trials[index[id]])) {
        ended.insert(id);
        ++ended_now;
      }
    // In-progress trials of an earlier run first (they resume from their checkpoints), then the
    // rest in order.
    std::set<size_t> queued;
    for (const std::string& id : recorded.started)
      if (index.count(id) && !ended.count(id) && queued.insert(index[id]).second)
        queue_.push_back(index[id]);
    const size_t in_progress = queue_.size();
    for (size_t i = 0; i < trials.size(); ++i)
      if (!ended.count(trials[i].id) && queued.insert(i).second) queue_.push_back(i);
    if (!recorded.started.empty())
      log::info("sweep: resuming {}: {} trial(s) ended earlier (not run again; {} of them recorded "
                "now from their run dirs), {} to run, {} of them from their checkpoints",
                settings.dir.string(), ended.size(), ended_now, queue_.size(), in_progress);
  }

  void serve(const std::atomic<bool>& abandon) {
    using Clock = std::chrono::steady_clock;
    const auto beat = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::clamp(settings_.timeout_s / 4, 0.5, 5.0)));
    const auto deadline = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(settings_.timeout_s));
    Clock::time_point last_beat = Clock::now(), preempted_at;
    while (groups_left_ > 0 && !abandon.load()) {
      // Note [sweep preemption]: from the signal on, no trial starts and no rank is sent anything
      // but a verdict; the controller waits (dist.timeout_s at most) for every busy group's last
      // message.
      if (!preempted_ && preemption_signal() != 0) preempted_ = true;
      if (preempted_ && preempted_at == Clock::time_point{}) {
        preempted_at = Clock::now();
        log::info("sweep: preempted: no trial starts; {} group(s) checkpoint their trials",
                  groups_left_);
      }
      if (preempted_ && Clock::now() - preempted_at >= deadline) break;
      if (!preempted_ && Clock::now() - last_beat >= beat) {
        idle(false);
        last_beat = Clock::now();
      }
      bool quiet = true;
      for (const int tag : {kRequest, kReport, kDone}) {
        const std::optional<TrialChannel::Message> m = channel_.try_receive(tag);
        if (!m) continue;
        quiet = false;
        const json::object o = json::parse(m->bytes).as_object();
        if (tag == kReport) {
          report(m->source, o);
          continue;
        }
        if (tag == kDone && o.at("state").as_string() == "interrupted") {
          interrupted(o);
          continue;
        }
        if (tag == kDone) done(o);
        const int group = static_cast<int>(o.at("group").to_number<int64_t>());
        if (preempted_)
          --groups_left_;  // its ranks leave on the signal, without an answer
        else
          assign(group);  // DONE asks for the next
      }
      if (quiet) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (groups_left_ == 0 && !preempted_) idle(true);
  }

  std::vector<MpiTrialOutcome> outcomes() const { return outcomes_; }

 private:
  // IDLE to every rank whose group has no trial left: the end of the sweep, or a heartbeat that
  // tells them the controller is still there (they wait with dist.timeout_s as deadline).
  void idle(bool end) {
    json::object o;
    o["end"] = end;
    const std::string bytes = json::serialize(o);
    for (const int rank : idle_ranks_)
      channel_.send(rank, kIdle, bytes, settings_.timeout_s, end ? "the sweep's end" : "a heartbeat");
  }

  void assign(int group) {
    int64_t trial = -1;
    if (!queue_.empty()) {
      trial = static_cast<int64_t>(queue_.front());
      queue_.pop_front();
      const MpiTrial& t = trials_[static_cast<size_t>(trial)];
      TrialEvent e;
      e.kind = "started";
      e.trial = t.id;
      e.params = t.params;
      e.extra["attempt"] = ++attempts_[t.id];
      e.extra["group"] = group;
      e.extra["ranks"] = fmt::format("{}-{}", group * settings_.ranks_per_trial,
                                     (group + 1) * settings_.ranks_per_trial - 1);
      // The process that runs it (world rank 0's): `pft sweep status` counts the trial running
      // while it lives (sweep/results.h).
      e.extra["host"] = this_host();
      e.extra["pid"] = static_cast<int64_t>(::getpid());
      log_.write(e);
      started_at_[t.id] = std::chrono::steady_clock::now();
      log::info("sweep: trial {} on ranks {}-{} ({})", t.id, group * settings_.ranks_per_trial,
                (group + 1) * settings_.ranks_per_trial - 1, fmt::join(t.overrides, " "));
    } else {
      --groups_left_;
      for (int r = 0; r < settings_.ranks_per_trial; ++r)
        idle_ranks_.push_back(group * settings_.ranks_per_trial + r);
    }
    json::object a;
    a["trial"] = trial;
    const std::string bytes = json::serialize(a);
    for (int r = 0; r < settings_.ranks_per_trial; ++r)
      channel_.send(group * settings_.ranks_per_trial + r, kAssign, bytes, settings_.timeout_s,
                    "a trial assignment");
  }

  // The verdict recorded for `trial` at rung `step`, if it reported there before (a trial resumed
  // from a checkpoint before a rung it had passed).
  std::optional<AshaVerdict> recorded_verdict(const std::string& trial, int64_t step) const {
    for (const Asha::Result& r : asha_->results(step))
      if (r.trial == trial) return r.verdict;
    return std::nullopt;
  }

  void report(int source, const json::object& o) {
    const std::string trial(o.at("trial").as_string());
    const int64_t step = o.at("step").to_number<int64_t>();
    const double objective = from_exact(o.at("objective"));
    last_objective_[trial] = objective;
    bool stop = false;
    if (asha_ && asha_->is_rung(step)) {
      const std::optional<AshaVerdict> before = recorded_verdict(trial, step);
      const AshaVerdict v = asha_->report(trial, step, objective);  // `before` when there is one
      stop = v == AshaVerdict::kStop;
      if (before) {
        // One `rung` event per trial and rung: the decision stands as recorded.
        log::info("sweep: trial {} at rung {} again (resumed): {} as decided before", trial, step,
                  asha_verdict_name(v));
        channel_.send(source, kVerdict, json::serialize(json::object{{"stop", stop}}),
                      settings_.timeout_s, "a rung verdict");
        return;
      }
      TrialEvent e;
      e.kind = "rung";
      e.trial = trial;
      e.params = params_of(trial);
      e.step = step;
      e.objective = objective;
      e.extra["decision"] = asha_verdict_name(v);
      log_.write(e);
      log::info("sweep: trial {} at rung {}: {} = {:.4f} -> {}", trial, step, settings_.objective,
                objective, asha_verdict_name(v));
    }
    json::object reply;
    reply["stop"] = stop;
    channel_.send(source, kVerdict, json::serialize(reply), settings_.timeout_s, "a rung verdict");
  }

  void done(const json::object& o) {
    const std::string trial(o.at("trial").as_string());
    MpiTrialOutcome out;
    out.id = trial;
    out.state = std::string(o.at("state").as_string());
    out.steps = o.at("steps").to_number<int64_t>();
    out.message = std::string(o.at("message").as_string());
    const auto it = last_objective_.find(trial);
    out.objective = it == last_objective_.end() ? kNaN : it->second;
    TrialEvent e;
    if (const json::value* code = o.if_contains("exit_code")) e.exit_code = static_cast<int>(code->to_number<int64_t>());
    const auto t0 = started_at_.find(trial);
    if (t0 != started_at_.end())
      e.extra["seconds"] = std::round(std::chrono::duration<double>(
                                          std::chrono::steady_clock::now() - t0->second).count() *
                                      1000.0) / 1000.0;
    end_trial(out, e);
  }

  // A group preempted in its trial (it checkpointed; its ranks exit 75): an `interrupted` event
  // (a rerun resumes the trial) and the group is gone.
  void interrupted(const json::object& o) {
    preempted_ = true;
    --groups_left_;
    const std::string trial(o.at("trial").as_string());
    TrialEvent e;
    e.kind = "interrupted";
    e.trial = trial;
    e.params = params_of(trial);
    e.exit_code = static_cast<int>(ExitCode::kPreempted);
    e.message = "preempted: it checkpointed and a rerun of the sweep resumes it";
    log_.write(e);
    log::info("sweep: trial {} interrupted (preempted; a rerun resumes it)", trial);
    for (MpiTrialOutcome& x : outcomes_)
      if (x.id == trial) x.state = "interrupted";
  }

  // A trial of `recorded.started` without an end event: when its metrics.jsonl has an `end`
  // record, writes its end event (stopped: its end record says `stopped: external`, or ASHA's
  // recorded verdict at one of its rungs was stop) and returns true.
  bool record_ended_run(const MpiTrial& t) {
    const TrialProgress p = read_trial_progress(fs::path(t.config.run.dir) / "metrics.jsonl", objective_);
    if (!p.ended) return false;
    bool asha_stopped = false;
    if (asha_)
      for (const int64_t rung : asha_->rungs())
        asha_stopped = asha_stopped || recorded_verdict(t.id, rung) == AshaVerdict::kStop;
    MpiTrialOutcome out;
    out.id = t.id;
    out.state = p.stopped == stop_reason_name(StopReason::kExternal) || asha_stopped ? "stopped"
                                                                                     : "finished";
    out.steps = p.steps;
    out.objective = p.objective.value_or(kNaN);
    TrialEvent e;
    e.extra["recorded_from"] = "run dir";  // ended while the sweep was killed: not trained again
    end_trial(out, e);
    return true;
  }

  // Writes the end event of `out` (state as the group reported it) into `e` and sweep.jsonl, with
  // the local executor's checks (sweep/executor.h trial_outcome): a training loss that was not
  // finite (`pft train` skips such steps and exits 0) or a non-finite objective is `failed:
  // diverged`.
  void end_trial(MpiTrialOutcome out, TrialEvent& e) {
    const std::string& trial = out.id;
    if (out.state != "failed") {
      const TrialProgress p = read_trial_progress(
          fs::path(trials_[index_.at(trial)].config.run.dir) / "metrics.jsonl", objective_);
      if (p.divergence) {
        out.message = "diverged: " + *p.divergence;
        out.state = "failed";
      } else if (!std::isfinite(out.objective)) {
        out.message = fmt::format("diverged: {} is not finite after {} steps", settings_.objective,
                                  out.steps);
        out.state = "failed";
      }
    }
    e.kind = out.state;
    e.trial = trial;
    e.params = params_of(trial);
    e.step = out.steps;
    e.objective = out.objective;
    e.message = out.message;
    log_.write(e);
    log::info("sweep: trial {} {} after {} steps: {} = {:.4f}{}", trial, out.state, out.steps,
              settings_.objective, out.objective,
              out.message.empty() ? "" : " (" + out.message + ")");
    for (MpiTrialOutcome& x : outcomes_)
      if (x.id == trial) x = out;
  }

  const std::vector<MpiTrial>& trials_;
  const MpiSweepSettings& settings_;
  int groups_left_;
  TrialChannel& channel_;
  EventLog log_;
  std::optional<Asha> asha_;
  std::vector<std::pair<std::string, std::string>> params_of(const std::string& id) const {
    for (const MpiTrial& t : trials_)
      if (t.id == id) return t.params;
    return {};
  }

  Objective objective_;                   // settings_.objective, for read_trial_progress
  std::map<std::string, size_t> index_;   // trial id -> its index in trials_
  std::map<std::string, int64_t> attempts_;
  std::map<std::string, std::chrono::steady_clock::time_point> started_at_;
  std::deque<size_t> queue_;
  std::vector<int> idle_ranks_;
  std::map<std::string, double> last_objective_;
  std::vector<MpiTrialOutcome> outcomes_;
  bool preempted_ = false;  // Note [sweep preemption]
};

// The group's release at every exit (collective over the group when the run ends normally).
struct GroupEnv {
  RankEnv env;
  ~GroupEnv() {
    if (std::uncaught_exceptions() == 0) release_rank_env(env);
  }
};

// The text of an error the group agreed on (core/agree.h), on the group's rank 0: only the
// lowest failing rank holds it, the others hold "failed on rank N (reported there)". Every other
// rank sends its own text (empty when it holds none) to the group's rank 0, which keeps the
// first; the others return "".
std::string agreed_error_text(const Error& e, const RankEnv& group, int group_base,
                              TrialChannel& channel, double timeout_s) {
  const std::string mine = e.reported() ? "" : e.what();
  if (group.world_rank != 0) {
    channel.send(group_base, kError, mine, timeout_s, "a failed trial's error");
    return "";
  }
  std::string text = mine;
  for (int r = 1; r < group.world_size; ++r) {
    const TrialChannel::Message m =
        channel.receive(group_base + r, kError, timeout_s, "a failed trial's error");
    if (text.empty()) text = m.bytes;
  }
  return text.empty() ? "(reported by another rank of the group)" : text;
}

// Every rank: the trials its group trains, until the controller has none left.
void run_group(const RankEnv& world, const std::vector<MpiTrial>& trials,
               const MpiSweepSettings& settings, TrialChannel& channel) {
  const int group = world.world_rank / settings.ranks_per_trial;
  GroupEnv g{split_rank_env(world, group)};
  const bool leader = g.env.world_rank == 0;
  const std::string key = table_key(settings.objective);
  // Note [sweep preemption]: a rank waiting for the controller leaves on a signal.
  const auto leave_if_preempted = [] {
    if (const int sig = preemption_signal(); sig != 0) {
      Preempted e(fmt::format("sweep: preempted (signal {}) between trials: nothing to save; the "
                              "job exits 75 and a rerun of the same command resumes the sweep",
                              sig));
      e.set_agreed(true);  // every rank got the signal (pft-mpirun forwards it to all)
      throw e;
    }
  };
  if (leader) {
    json::object req;
    req["group"] = group;
    channel.send(0, kRequest, json::serialize(req), settings.timeout_s, "a request for a trial");
  }
  for (;;) {
    const TrialChannel::Message m = channel.receive(
        0, kAssign, settings.timeout_s, "the sweep controller's next trial", leave_if_preempted);
    const int64_t index = json::parse(m.bytes).as_object().at("trial").to_number<int64_t>();
    if (index < 0) break;
    const MpiTrial& trial = trials[static_cast<size_t>(index)];
    TrainOptions options;
    if (leader)
      options.on_eval = [&](int64_t step, const std::map<std::string, double>& table) {
        const auto it = table.find(key);
        json::object r;
        r["trial"] = trial.id;
        r["step"] = step;
        r["objective"] = exact(it == table.end() ? kNaN : it->second);
        channel.send(0, kReport, json::serialize(r), settings.timeout_s, "a rung report");
        const TrialChannel::Message v = channel.receive(
            0, kVerdict, settings.timeout_s,
            fmt::format("the verdict on trial {} at step {}", trial.id, step));
        return json::parse(v.bytes).as_object().at("stop").as_bool();
      };
    json::object done;
    done["group"] = group;
    done["trial"] = trial.id;
    done["message"] = "";
    try {
      const TrainSummary summary = train(trial.config, g.env, options);
      done["state"] = summary.stopped == stop_reason_name(StopReason::kExternal) ? "stopped"
                                                                                  : "finished";
      done["steps"] = summary.steps;
    } catch (const Error& e) {
      // Preempted: the trial checkpointed; the controller records it `interrupted` (Note [sweep
      // preemption]) and every rank exits 75.
      if (e.agreed() && dynamic_cast<const Preempted*>(&e) != nullptr && leader) {
        done["state"] = "interrupted";
        done["steps"] = 0;
        channel.send(0, kDone, json::serialize(done), settings.timeout_s, "a trial's interruption");
      }
      // Only a failure the whole group agreed on is the trial's; anything else (a lost rank, a
      // deadline) ends the job.
      if (!e.agreed() || dynamic_cast<const Preempted*>(&e) != nullptr) throw;
      done["state"] = "failed";
      done["steps"] = 0;
      done["exit_code"] = static_cast<int>(e.exit_code());
      done["message"] = agreed_error_text(e, g.env, group * settings.ranks_per_trial, channel,
                                          settings.timeout_s);
    }
    if (leader)
      channel.send(0, kDone, json::serialize(done), settings.timeout_s, "a trial's end");
  }
  // Nothing left for this group: wait for the other groups' trials (the job ends together, see
  // Note [sweep protocol]), hearing the controller's heartbeat at least every timeout_s.
  for (;;) {
    const TrialChannel::Message m =
        channel.receive(0, kIdle, settings.timeout_s,
                        "the sweep controller's heartbeat (or the sweep's end)", leave_if_preempted);
    if (json::parse(m.bytes).as_object().at("end").as_bool()) break;
  }
}

}  // namespace

std::vector<MpiTrialOutcome> run_mpi_trials(const RankEnv& world, std::vector<MpiTrial> trials,
                                           const MpiSweepSettings& settings) {
  const int r = settings.ranks_per_trial;
  if (r < 1 || world.world_size % r != 0)
    throw InputError(fmt::format(
        "executor.ranks_per_trial: {} does not divide the job's {} ranks; start mpirun with a "
        "multiple of it (-np {})", r, world.world_size, r * std::max(1, world.world_size / std::max(r, 1))));
  std::set<std::string> ids;
  for (MpiTrial& t : trials) {
    if (t.id.empty() || !ids.insert(t.id).second)
      throw InputError(fmt::format("sweep: trial id '{}' is empty or repeated", t.id));
    t.config.run.dir = (settings.dir / "trials" / t.id).string();
    t.config.train.resume = ResumeFrom{ResumeFrom::Mode::kAuto, ""};
  }
  // Every trial is checked before anything runs; all ranks fail together (exit 2).
  agree(world, "sweep: checking the trials", [&] {
    std::optional<Asha> asha;
    if (settings.asha) asha.emplace(*settings.asha);
    for (const MpiTrial& t : trials) {
      try {
        validate_for_world(t.config, r);
        if (!asha) continue;
        if (t.config.data.source != DataSource::kTasks)
          throw InputError("data.source: ASHA decides on the held-out metric at its rungs, and "
                           "only data.source: tasks evaluates; use it, or turn ASHA off");
        int64_t every = 0;  // the eval interval that hits every rung
        for (const int64_t rung : asha->rungs()) every = std::gcd(every, rung);
        for (const int64_t rung : asha->rungs())
          if (rung < t.config.train.steps &&  // a shorter trial ends before the later rungs
              (t.config.eval.every_steps <= 0 || rung % t.config.eval.every_steps != 0))
            throw InputError(fmt::format(
                "eval.every_steps: {} does not evaluate at ASHA's rung {} (rungs {}); ASHA decides "
                "on the held-out metric at each rung: use an interval that divides every rung "
                "(e.g. {})", t.config.eval.every_steps, rung, fmt::join(asha->rungs(), ", "),
                every));
      } catch (const InputError& e) {
        throw InputError(fmt::format("sweep trial {} ({}): {}", t.id, fmt::join(t.overrides, " "),
                                     e.what()));
      }
    }
  });
  if (world.is_root()) fs::create_directories(settings.dir / "trials");
  TrialChannel channel(world);

  std::vector<MpiTrialOutcome> outcomes;
  if (!world.is_root()) {
    run_group(world, trials, settings, channel);
    return outcomes;
  }
  SweepController controller(trials, settings, world.world_size / r, channel);
  std::atomic<bool> abandon{false};
  std::exception_ptr controller_error;
  std::thread serving([&] {
    try {
      controller.serve(abandon);
    } catch (...) {
      controller_error = std::current_exception();
    }
  });
  try {
    run_group(world, trials, settings, channel);
  } catch (const Preempted&) {
    // The controller answers the other groups' last verdicts and records their interruptions
    // (Note [sweep preemption]); it ends within dist.timeout_s.
    serving.join();
    throw;
  } catch (...) {
    abandon.store(true);
    serving.join();
    // The controller's own failure is the cause when it stopped answering.
    if (controller_error) std::rethrow_exception(controller_error);
    throw;
  }
  serving.join();
  if (controller_error) std::rethrow_exception(controller_error);
  return controller.outcomes();
}

namespace {

// World rank 0's prepared sweep (its directory locked until the end). A wrapper so that the
// prepared SweepRun is built in place (guaranteed elision of prepare_sweep's result).
struct Prepared {
  SweepRun run;
  Prepared(const SweepSpec& spec, const SweepDir& dir)
      : run(prepare_sweep(spec, dir.root(), /*lock=*/true)) {}
};

}  // namespace

int run_mpi_sweep(const SweepSpec& spec, const SweepDir& dir) {
  install_preemption_handlers();  // before MPI_Init, as `pft train` (core/signals.h)
  MpiEnvironment mpi;
  const int rank = mpi_world_rank();
  const std::vector<Trial> trials = expand(spec);
  // World rank 0 prepares the directory (identity, lock, inline base) and validates every
  // trial; then the other ranks load the same configs. All fail together (exit 2).
  std::optional<Prepared> prepared;
  std::vector<Config> configs;
  agree_world([&] {
    if (rank != 0) return;
    prepared.emplace(spec, dir);
    configs = prepared->run.configs;
  });
  agree_world([&] {
    if (rank != 0) configs = load_trial_configs(spec, trials, dir.root());
  });
  if (configs.empty()) throw InputError(fmt::format("sweep {}: no trials", spec.file.string()));
  const Config& first = configs.front();
  RankEnvOptions options;
  options.threads = first.run.threads;
  options.backend = first.dist.backend;
  options.timeout_s = first.dist.timeout_s;
  RankEnv world;
  agree_world([&] {
    log::set_level(log::parse_level(first.run.log_level, "run.log_level"));
    world = discover_rank_env(options);
  }, first.dist.timeout_s);

  std::vector<MpiTrial> mpi_trials;
  for (size_t i = 0; i < trials.size(); ++i)
    mpi_trials.push_back({trials[i].id, trials[i].overrides, trials[i].params, configs[i]});
  MpiSweepSettings settings;
  settings.dir = dir.root();
  settings.ranks_per_trial = static_cast<int>(spec.executor.ranks_per_trial);
  settings.objective = spec.objective.metric;
  settings.higher_is_better = spec.objective.higher_is_better;
  settings.timeout_s = first.dist.timeout_s;
  if (spec.early_stop.enabled) {
    AshaConfig a;
    a.min_steps = spec.early_stop.min_steps;
    // max_steps 0: the rungs reach the longest trial's train.steps (a shorter trial finishes
    // before the later rungs).
    a.max_steps = spec.early_stop.max_steps;
    if (a.max_steps == 0)
      for (const Config& c : configs) a.max_steps = std::max(a.max_steps, c.train.steps);
    a.eta = static_cast<double>(spec.early_stop.eta);
    a.higher_is_better = spec.objective.higher_is_better;
    settings.asha = a;
  }
  const std::vector<MpiTrialOutcome> outcomes = run_mpi_trials(world, mpi_trials, settings);
  int code = 0;
  if (world.is_root()) {
    // The ranked table, best.yaml and objective.html, as the other executors end.
    std::cout << refresh_results(spec, trials, dir) << std::flush;
    bool any = false;
    for (const MpiTrialOutcome& o : outcomes) any = any || o.state == "finished" || o.state == "stopped";
    code = any ? 0 : static_cast<int>(ExitCode::kRuntime);
  }
  release_rank_env(world);
  return code;
}

}  // namespace pft::sweep
