// The in-allocation executor (contract and Note [sweep protocol]: sweep/mpi_executor.h).
#include "sweep/mpi_executor.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <thread>

#include "comm/trial_channel.h"
#include "control/controller.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "train/trainer.h"

namespace pft::sweep {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

enum Tag : int { kRequest = 1, kAssign = 2, kReport = 3, kVerdict = 4, kDone = 5, kIdle = 6 };

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Doubles cross the channel as their shortest round-trip text ("nan" and "inf" included).
std::string exact(double x) { return fmt::format("{}", x); }
double from_exact(const json::value& v) { return std::stod(std::string(v.as_string())); }

// sweep.jsonl's objective: a number, null when not finite (JSON has no NaN).
json::value json_number(double x) {
  if (!std::isfinite(x)) return nullptr;
  return x;
}

std::string table_key(const std::string& objective) {
  const std::string prefix = "eval.";
  return objective.rfind(prefix, 0) == 0 ? objective.substr(prefix.size()) : objective;
}

// SWEEP_DIR/sweep.jsonl, appended one fsync'd line per event (the controller thread only).
class EventLog {
 public:
  explicit EventLog(const fs::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw InputError(fmt::format("sweep: cannot open {} for appending: {}; check that the sweep "
                                   "directory is writable", path.string(), std::strerror(errno)));
  }
  ~EventLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void write(json::object event) {
    // Seconds since the epoch, to the millisecond (the benchmark's time to the best objective).
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    event["time"] = static_cast<double>(
                        std::chrono::duration_cast<std::chrono::milliseconds>(now).count()) / 1e3;
    const std::string line = json::serialize(event) + "\n";
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
        ::fsync(fd_) != 0)
      throw RuntimeFailure(fmt::format("sweep: writing {} failed: {}", path_.string(),
                                       std::strerror(errno)));
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// What an earlier run of this sweep recorded (sweep.jsonl), for resume.
struct Recorded {
  std::map<std::string, MpiTrialOutcome> ended;  // by trial id
  std::vector<std::string> started;              // started, in order (ended ones included)
  struct Rung {
    std::string trial;
    int64_t step;
    double objective;
    AshaVerdict verdict;
  };
  std::vector<Rung> rungs;
  std::map<std::string, double> last_objective;
};

Recorded read_events(const fs::path& path) {
  Recorded r;
  std::ifstream in(path);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    json::object e;
    try {
      e = json::parse(line).as_object();
    } catch (const std::exception& ex) {
      // A line cut by a kill -9 mid-write is the last one: ignore it (its event happens again).
      log::warn("sweep: {}:{} is not a JSON object ({}); ignoring it", path.string(), line_no,
                ex.what());
      continue;
    }
    const std::string event(e.at("event").as_string());
    const std::string trial(e.at("trial").as_string());
    const auto objective = [&] {
      const json::value* v = e.if_contains("objective");
      return v == nullptr || v->is_null() ? kNaN : v->to_number<double>();
    };
    if (event == "started") {
      r.started.push_back(trial);
    } else if (event == "rung") {
      r.rungs.push_back({trial, e.at("step").to_number<int64_t>(), objective(),
                         e.at("decision").as_string() == "stop" ? AshaVerdict::kStop
                                                                : AshaVerdict::kContinue});
      r.last_objective[trial] = objective();
    } else if (event == "finished" || event == "stopped" || event == "failed") {
      MpiTrialOutcome o;
      o.id = trial;
      o.state = event;
      o.steps = e.at("steps").to_number<int64_t>();
      o.objective = objective();
      if (const json::value* m = e.if_contains("message")) o.message = std::string(m->as_string());
      r.ended[trial] = o;
    }
  }
  return r;
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
    const Recorded recorded = read_events(settings.dir / "sweep.jsonl");
    outcomes_.resize(trials.size());
    std::map<std::string, size_t> index;
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
    // In-progress trials of an earlier run first (they resume from their checkpoints), then the
    // rest in order.
    std::set<size_t> queued;
    for (const std::string& id : recorded.started)
      if (index.count(id) && !recorded.ended.count(id) && queued.insert(index[id]).second)
        queue_.push_back(index[id]);
    for (size_t i = 0; i < trials.size(); ++i)
      if (!recorded.ended.count(trials[i].id) && queued.insert(i).second) queue_.push_back(i);
    size_t in_progress = 0;
    for (const std::string& id : recorded.started) in_progress += recorded.ended.count(id) ? 0 : 1;
    if (!recorded.started.empty())
      log::info("sweep: resuming {}: {} trial(s) ended earlier (not run again), {} to run, {} of "
                "them from their checkpoints", settings.dir.string(), recorded.ended.size(),
                queue_.size(), in_progress);
  }

  void serve(const std::atomic<bool>& abandon) {
    using Clock = std::chrono::steady_clock;
    const auto beat = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::clamp(settings_.timeout_s / 4, 0.5, 5.0)));
    Clock::time_point last_beat = Clock::now();
    while (groups_left_ > 0 && !abandon.load()) {
      if (Clock::now() - last_beat >= beat) {
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
        if (tag == kDone) done(o);
        assign(static_cast<int>(o.at("group").to_number<int64_t>()));  // DONE asks for the next
      }
      if (quiet) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (groups_left_ == 0) idle(true);
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
      json::object e;
      e["event"] = "started";
      e["trial"] = t.id;
      e["group"] = group;
      json::array params;
      for (const std::string& s : t.overrides) params.emplace_back(s);
      e["params"] = std::move(params);
      log_.write(std::move(e));
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

  void report(int source, const json::object& o) {
    const std::string trial(o.at("trial").as_string());
    const int64_t step = o.at("step").to_number<int64_t>();
    const double objective = from_exact(o.at("objective"));
    last_objective_[trial] = objective;
    bool stop = false;
    if (asha_ && asha_->is_rung(step)) {
      const AshaVerdict v = asha_->report(trial, step, objective);
      stop = v == AshaVerdict::kStop;
      json::object e;
      e["event"] = "rung";
      e["trial"] = trial;
      e["step"] = step;
      e["objective"] = json_number(objective);
      e["decision"] = asha_verdict_name(v);
      log_.write(std::move(e));
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
    json::object e;
    e["event"] = out.state;
    e["trial"] = trial;
    e["steps"] = out.steps;
    e["objective"] = json_number(out.objective);
    if (!out.message.empty()) e["message"] = out.message;
    log_.write(std::move(e));
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
  std::deque<size_t> queue_;
  std::vector<int> idle_ranks_;
  std::map<std::string, double> last_objective_;
  std::vector<MpiTrialOutcome> outcomes_;
};

// The group's release at every exit (collective over the group when the run ends normally).
struct GroupEnv {
  RankEnv env;
  ~GroupEnv() {
    if (std::uncaught_exceptions() == 0) release_rank_env(env);
  }
};

// Every rank: the trials its group trains, until the controller has none left.
void run_group(const RankEnv& world, const std::vector<MpiTrial>& trials,
               const MpiSweepSettings& settings, TrialChannel& channel) {
  const int group = world.world_rank / settings.ranks_per_trial;
  GroupEnv g{split_rank_env(world, group)};
  const bool leader = g.env.world_rank == 0;
  const std::string key = table_key(settings.objective);
  if (leader) {
    json::object req;
    req["group"] = group;
    channel.send(0, kRequest, json::serialize(req), settings.timeout_s, "a request for a trial");
  }
  for (;;) {
    const TrialChannel::Message m =
        channel.receive(0, kAssign, settings.timeout_s, "the sweep controller's next trial");
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
      // Only a failure the whole group agreed on is the trial's; anything else (a lost rank, a
      // deadline) ends the job.
      if (!e.agreed() || dynamic_cast<const Preempted*>(&e) != nullptr) throw;
      done["state"] = "failed";
      done["steps"] = 0;
      done["message"] = e.reported() ? "(reported by another rank of the group)" : e.what();
    }
    if (leader)
      channel.send(0, kDone, json::serialize(done), settings.timeout_s, "a trial's end");
  }
  // Nothing left for this group: wait for the other groups' trials (the job ends together, see
  // Note [sweep protocol]), hearing the controller's heartbeat at least every timeout_s.
  for (;;) {
    const TrialChannel::Message m = channel.receive(
        0, kIdle, settings.timeout_s, "the sweep controller's heartbeat (or the sweep's end)");
    if (json::parse(m.bytes).as_object().at("end").as_bool()) break;
  }
}

}  // namespace

std::vector<MpiTrialOutcome> run_mpi_sweep(const RankEnv& world, std::vector<MpiTrial> trials,
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
          if (t.config.eval.every_steps <= 0 || rung % t.config.eval.every_steps != 0)
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

}  // namespace pft::sweep
