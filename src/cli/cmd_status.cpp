// pft status RUN_DIR [--json] [--stall-after SECONDS]
//
// Where a training run stands, from its run directory alone (a job running on another node, one
// that finished, one that died): metrics.jsonl (steps, throughput, evaluations, phase, mixture,
// the end), checkpoints/latest, config.resolved.yaml (train.steps before the first record) and
// run.lock (who holds it). Reads only; takes no lock; never blocks a running job. Single
// process, no MPI. docs/observability.md describes the output and the exit codes:
//
//   0  running (a step recorded within the stall deadline) or finished
//   1  stalled: running, but no step recorded for longer than the deadline
//   2  not a run directory (no metrics.jsonl), or a bad flag
//   3  failed: the run ended without its `end` record (it crashed, or was killed)
//   75 preempted: checkpointed after a preemption signal, waiting to be requeued
//
// Note [stall deadline]
// ~~~~~~~~~~~~~~~~~~~~~
// A step record that does not come is the only sign of a hung job visible from the directory. A
// run's steps are not evenly spaced: an evaluation or a checkpoint save sits between two of them.
// So the default deadline is 5 times the longest gap between consecutive step records among the
// last 50 of the current process (evaluations and saves included), and at least 2 minutes;
// before the first step (start-up, data preparation, the step-0 evaluation) it is 30 minutes.
// The last 50 steps may hold no evaluation (eval.every_steps: 500, say), so a long one would look
// like a hang: after a step at which config.resolved.yaml's eval.every_steps or
// checkpoint.every_steps puts an evaluation or a save, and after the last step (the final
// evaluation and save), the deadline is at least the start-up one.
// Times are the records' wall clocks (the writer's host) against this host's: across hosts,
// clock skew adds to the age. A holder of run.lock on this host whose process is gone makes the
// run failed whatever the deadline says; on another host only the deadline can tell.
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>

#include "ckpt/run_checkpoints.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/format.h"
#include "core/run_dir.h"
#include "train/progress.h"

namespace pft::cli {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr int kStalled = 1;
constexpr int kFailed = 3;
constexpr int kPreempted = 75;
constexpr size_t kWindow = 50;        // step records the rates and the deadline look at
constexpr double kStallFactor = 5.0;  // Note [stall deadline]
constexpr double kMinStallS = 120.0;
constexpr double kStartupStallS = 1800.0;

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A metric as the human output prints it: metrics.jsonl writes a non-finite value as null.
std::string metric_text(const json::value& v) {
  return v.is_number() ? fmt::format("{:.4f}", v.to_number<double>()) : std::string("nan");
}

double num(const json::object& o, std::string_view key, double fallback = 0.0) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return fallback;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return fallback;
}

std::string str(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

// What metrics.jsonl says about the current (last started) process and the run before it.
struct Reading {
  int64_t total_steps = 0;
  int world_size = 0;
  double start_time = 0;                   // the last start record's
  std::vector<json::object> steps;         // the last kWindow train records of this process
  std::optional<json::object> last_train;  // the run's, across resumes
  std::optional<json::object> phase, mixture, end, preempted;
  int64_t eval_step = -1;
  std::vector<json::object> eval;  // the "all" records of the last evaluation
};

Reading read_metrics(const fs::path& file) {
  Reading r;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;  // a line cut by a kill (Note [a line cut by a kill])
    json::object& o = v.as_object();
    const std::string kind = str(o, "kind");
    if (kind == "start") {
      r.total_steps = static_cast<int64_t>(num(o, "steps"));
      r.world_size = static_cast<int>(num(o, "world_size"));
      r.start_time = num(o, "time");
      r.steps.clear();
      r.end.reset();
      r.preempted.reset();
    } else if (kind == "train") {
      r.steps.push_back(o);
      if (r.steps.size() > kWindow) r.steps.erase(r.steps.begin());
      r.last_train = o;
    } else if (kind == "eval" && o.contains("template") && o.at("template").is_string()) {
      const auto step = static_cast<int64_t>(num(o, "step"));
      if (step != r.eval_step) r.eval.clear();
      r.eval_step = step;
      r.eval.push_back(o);
    } else if (kind == "phase") {
      r.phase = o;
    } else if (kind == "mixture") {
      r.mixture = o;
    } else if (kind == "end") {
      r.end = o;
    } else if (kind == "preempted") {
      r.preempted = o;
    }
  }
  return r;
}

struct Status {
  std::string state;  // starting | running | stalled | finished | preempted | failed
  std::string why;
  int code = 0;
  json::object out;  // --json
};

std::string percent(double x) { return fmt::format("{:.1f}%", 100.0 * x); }

// `stall_after_flag`: --stall-after, 0 when not given.
Status compute(const fs::path& dir, double stall_after_flag) {
  const Reading r = read_metrics(dir / "metrics.jsonl");
  const double now = now_s();
  json::object out;
  out["run_dir"] = dir.string();

  int64_t total = r.total_steps;
  int64_t eval_every = 0, save_every = 0;  // Note [stall deadline]
  try {
    const YAML::Node cfg = YAML::LoadFile((dir / "config.resolved.yaml").string());
    // No start record yet: the resolved config has the steps.
    if (total == 0 && cfg["train"] && cfg["train"]["steps"])
      total = cfg["train"]["steps"].as<int64_t>();
    if (cfg["eval"] && cfg["eval"]["every_steps"])
      eval_every = cfg["eval"]["every_steps"].as<int64_t>();
    if (cfg["checkpoint"] && cfg["checkpoint"]["every_steps"])
      save_every = cfg["checkpoint"]["every_steps"].as<int64_t>();
  } catch (const YAML::Exception&) {
  }
  const int64_t step = r.last_train ? static_cast<int64_t>(num(*r.last_train, "step")) : 0;
  out["step"] = step;
  out["total_steps"] = total;
  out["world_size"] = r.world_size;

  // Rates over the window of this process's step records (Note [stall deadline]).
  double interval = 0, longest_gap = 0, tok_s = 0, step_time = 0;
  if (!r.steps.empty()) {
    for (const json::object& s : r.steps) {
      tok_s += num(s, "tokens_per_s");
      step_time += num(s, "step_time_s");
    }
    tok_s /= static_cast<double>(r.steps.size());
    step_time /= static_cast<double>(r.steps.size());
    if (r.steps.size() >= 2) {
      const double span = num(r.steps.back(), "time") - num(r.steps.front(), "time");
      const double n = num(r.steps.back(), "step") - num(r.steps.front(), "step");
      interval = n > 0 ? span / n : 0;
      for (size_t i = 1; i < r.steps.size(); ++i)
        longest_gap = std::max(longest_gap, num(r.steps[i], "time") - num(r.steps[i - 1], "time"));
    } else {
      interval = step_time;
      longest_gap = step_time;
    }
  }
  const double last_step_time = r.steps.empty() ? r.start_time : num(r.steps.back(), "time");
  const double age = last_step_time > 0 ? std::max(0.0, now - last_step_time) : 0.0;
  // The last step always ends with an evaluation and a save (control/controller.cpp).
  const bool eval_or_save_due = step > 0 && ((eval_every > 0 && step % eval_every == 0) ||
                                              (save_every > 0 && step % save_every == 0) ||
                                              (total > 0 && step >= total));
  const double stall_after =
      stall_after_flag > 0 ? stall_after_flag
      : r.steps.empty()    ? kStartupStallS
                           : std::max(eval_or_save_due ? kStartupStallS : kMinStallS,
                                      kStallFactor * longest_gap);
  out["tokens_per_s"] = tok_s;
  out["step_time_s"] = step_time;
  out["seconds_per_step"] = interval;
  out["last_step_age_s"] = age;
  out["stall_after_s"] = stall_after;

  // The lock, and the state.
  const RunLockInfo lock = read_run_lock(dir);
  json::object lock_json;
  std::string lock_process = !lock.present                                  ? "absent"
                             : lock.holder.empty()                          ? "released"
                             : lock.process == RunLockInfo::Process::kAlive ? "alive"
                             : lock.process == RunLockInfo::Process::kGone  ? "gone"
                                                                            : "unknown";
  lock_json["process"] = lock_process;
  if (!lock.holder.empty()) lock_json["holder"] = lock.holder;
  out["lock"] = std::move(lock_json);

  Status st;
  if (r.end) {
    st.state = "finished";
    if (const std::string why = str(*r.end, "stopped"); !why.empty())
      st.why = "stopped early: " + why;
  } else if (r.preempted) {
    st.state = "preempted";
    st.why = fmt::format("{} at step {}; checkpointed, waiting to be requeued (train.resume: auto)",
                         str(*r.preempted, "signal"), num(*r.preempted, "step"));
    st.code = kPreempted;
  } else if (lock_process == "released" || lock_process == "gone") {
    st.state = "failed";
    st.why = lock_process == "gone"
                 ? fmt::format("its process ({}) is gone without an end record", lock.holder)
                 : "the run ended without an end record (see its log)";
    st.code = kFailed;
  } else if (age > stall_after) {
    st.state = "stalled";
    st.why = fmt::format("no step recorded for {} (deadline {})", format_duration(age),
                         format_duration(stall_after));
    st.code = kStalled;
  } else {
    st.state = r.steps.empty() ? "starting" : "running";
  }
  out["state"] = st.state;
  if (!st.why.empty()) out["detail"] = st.why;
  out["exit_code"] = st.code;

  const bool active = st.state == "running" || st.state == "stalled" || st.state == "starting";
  const double eta = active && interval > 0 ? interval * static_cast<double>(total - step) : -1;
  if (eta >= 0) out["eta_s"] = eta;
  if (r.last_train)  // null when it was not finite (a diverged run), as in metrics.jsonl
    if (const json::value* loss = r.last_train->if_contains("loss")) out["loss"] = *loss;

  if (r.phase) {
    json::object p;
    p["name"] = str(*r.phase, "phase");
    p["index"] = static_cast<int64_t>(num(*r.phase, "index"));
    p["since_step"] = static_cast<int64_t>(num(*r.phase, "step"));
    out["phase"] = std::move(p);
  }
  if (r.mixture) {
    json::object m;
    m["since_step"] = static_cast<int64_t>(num(*r.mixture, "step"));
    m["reason"] = str(*r.mixture, "reason");
    m["weights"] = r.mixture->at("weights");
    out["mixture"] = std::move(m);
  }
  if (!r.eval.empty()) {
    json::object e, tasks;
    e["step"] = r.eval_step;
    for (const json::object& t : r.eval) {
      json::object metrics;
      for (const char* k : {"loss", "exact_match", "accuracy", "worst_template_loss"})
        if (t.contains(k)) metrics[k] = t.at(k);
      tasks[str(t, "task")] = std::move(metrics);
    }
    e["tasks"] = std::move(tasks);
    out["last_eval"] = std::move(e);
  }
  // The newest checkpoint: `latest` (what a resume would start from), its age from the file.
  std::optional<std::string> latest;
  try {
    latest = ckpt::read_latest(dir / "checkpoints");
  } catch (const InputError&) {  // a link named latest: not followed, reported as none
  }
  if (latest) {
    json::object c;
    c["file"] = (dir / "checkpoints" / *latest).string();
    if (const auto s = ckpt::parse_checkpoint_step(*latest)) c["step"] = *s;
    struct stat sb {};
    if (::lstat((dir / "checkpoints" / *latest).c_str(), &sb) == 0)
      c["age_s"] = std::max(0.0, now - static_cast<double>(sb.st_mtime));
    else
      c["missing"] = true;
    out["checkpoint"] = std::move(c);
  }
  st.out = std::move(out);
  return st;
}

void print_human(const Status& st) {
  const json::object& o = st.out;
  const auto n = [&](std::string_view k) { return num(o, k); };
  std::cout << "run " << str(o, "run_dir") << ": " << st.state
            << (st.why.empty() ? "" : " (" + st.why + ")") << "\n";
  const auto total = static_cast<int64_t>(n("total_steps"));
  const auto step = static_cast<int64_t>(n("step"));
  std::string line = fmt::format("step {}/{}", step, total);
  if (total > 0)
    line += " (" + percent(static_cast<double>(step) / static_cast<double>(total)) + ")";
  if (o.contains("loss")) line += " | loss " + metric_text(o.at("loss"));
  if (n("tokens_per_s") > 0)
    line += fmt::format(" | {} tok/s | {:.3f} s/step", format_rate(n("tokens_per_s")),
                        n("seconds_per_step"));
  if (o.contains("eta_s")) line += " | ETA " + format_duration(n("eta_s"));
  std::cout << line << "\n";
  if (st.state == "running" || st.state == "stalled" || st.state == "starting")
    std::cout << fmt::format(
        "last step {} ago (stalled after {}{})\n", format_duration(n("last_step_age_s")),
        format_duration(n("stall_after_s")), st.state == "starting" ? "; no step yet" : "");
  if (const json::value* p = o.if_contains("phase"))
    std::cout << fmt::format("phase: {} (index {}, since step {})\n", str(p->as_object(), "name"),
                             num(p->as_object(), "index"), num(p->as_object(), "since_step"));
  if (const json::value* m = o.if_contains("mixture")) {
    std::string w;
    for (const auto& kv : m->as_object().at("weights").as_object())
      w += fmt::format("{}{} {}", w.empty() ? "" : ", ", std::string(kv.key()),
                       kv.value().is_number() ? percent(kv.value().to_number<double>()) : "?");
    std::cout << fmt::format("mixture (since step {}, {}): {}\n", num(m->as_object(), "since_step"),
                             str(m->as_object(), "reason"), w);
  }
  if (const json::value* e = o.if_contains("last_eval")) {
    std::cout << fmt::format("last evaluation (step {}):\n", num(e->as_object(), "step"));
    for (const auto& kv : e->as_object().at("tasks").as_object()) {
      std::string m;
      for (const auto& mv : kv.value().as_object())
        m += fmt::format("  {} {}", std::string(mv.key()), metric_text(mv.value()));
      std::cout << fmt::format("  {:<16}{}\n", std::string(kv.key()), m);
    }
  }
  if (const json::value* c = o.if_contains("checkpoint")) {
    const json::object& co = c->as_object();
    std::cout << "checkpoint: " << str(co, "file");
    if (co.contains("step")) std::cout << fmt::format(" (step {}", num(co, "step"));
    if (co.contains("age_s"))
      std::cout << ", written " << format_duration(num(co, "age_s")) << " ago";
    if (co.contains("missing")) std::cout << ", missing";
    std::cout << ")\n";
  } else {
    std::cout << "checkpoint: none\n";
  }
  const json::object& lock = o.at("lock").as_object();
  const std::string process = str(lock, "process");
  std::cout << "lock: "
            << (process == "absent"     ? "no run.lock"
                : process == "released" ? "released (no run holds the directory)"
                : process == "alive"    ? "held by " + str(lock, "holder")
                : process == "gone" ? "stale: " + str(lock, "holder") + " (that process is gone)"
                                    : "held by " + str(lock, "holder") +
                                          " (another host: cannot check its process)")
            << "\n";
}

}  // namespace

Command add_status_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "status",
      "Where a training run stands, from its run directory alone: step, ETA, tok/s, last "
      "evaluation, phase, mixture, last checkpoint; running, stalled, finished or failed");
  sub->footer(
      "Exit codes: 0 running or finished, 1 stalled (no step within the deadline), 2 not a run "
      "directory, 3 failed (ended without its end record), 75 preempted (waiting to be "
      "requeued). docs/observability.md describes the fields.");
  struct Args {
    std::string run_dir;
    bool json = false;
    double stall_after = 0;
  };
  auto args = std::make_shared<Args>();
  sub->add_option("run_dir", args->run_dir, "Run directory (run.dir of the training job)")
      ->required();
  sub->add_flag("--json", args->json, "One JSON object on stdout instead of the text");
  sub->add_option("--stall-after", args->stall_after,
                  "Seconds without a step record after which a running job counts as stalled "
                  "(default: 5 x the longest recent gap between steps, at least 120; 1800 "
                  "before the first step)")
      ->check(CLI::PositiveNumber);
  return {sub, [args]() -> int {
            const fs::path dir(args->run_dir);
            if (!fs::is_regular_file(dir / "metrics.jsonl"))
              throw InputError(fmt::format(
                  "pft status: '{}' is not a run directory (no metrics.jsonl); give the run.dir "
                  "of a training job",
                  dir.string()));
            const Status st = compute(dir, args->stall_after);
            if (args->json)
              std::cout << json::serialize(st.out) << "\n";
            else
              print_human(st);
            return st.code;
          }};
}

}  // namespace pft::cli
