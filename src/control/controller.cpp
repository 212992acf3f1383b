// The rank-0 controller (contract: control/controller.h).
#include "control/controller.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/string.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "comm/communicator.h"
#include "config/schema.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "data/packer.h"

namespace pft {

namespace json = boost::json;

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kNone: return "none";
    case StopReason::kPreempted: return "preempted";
    case StopReason::kEarlyStopping: return "early_stopping";
    case StopReason::kSchedule: return "schedule";
    case StopReason::kExternal: return "external";
  }
  return "?";
}

namespace {

// Doubles of the state go through JSON as their shortest round-trip text ("0.1", std::to_chars):
// Boost.JSON 1.81 parses numbers without correct rounding, and a resumed schedule must see the
// same bits.
json::string exact(double x) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return json::string(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
}
double exact(const json::value& v) {
  const json::string& s = v.as_string();
  double x = 0.0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size())
    throw std::invalid_argument("`" + std::string(s) + "` is not a number");
  return x;
}

json::array to_array(const std::vector<int32_t>& v) {
  json::array a;
  for (int32_t x : v) a.emplace_back(x);
  return a;
}

json::object state_to_json(const ScheduleState& s, const EarlyStopState& e) {
  json::object o;
  o["version"] = 1;
  o["phase"] = s.phase;
  o["phase_start"] = s.phase_start;
  json::array shares;
  for (double x : s.shares) shares.emplace_back(exact(x));
  o["shares"] = std::move(shares);
  json::object table;
  for (const auto& [k, v] : s.last_eval) table[k] = exact(v);
  o["last_eval"] = std::move(table);
  json::object early;
  early["best"] = exact(e.best);
  early["has_best"] = e.has_best;
  early["best_step"] = e.best_step;
  early["bad_evals"] = e.bad_evals;
  o["early_stopping"] = std::move(early);
  return o;
}

void state_from_json(const std::string& text, ScheduleState& s, EarlyStopState& e) {
  const json::value v = json::parse(text);
  const json::object& o = v.as_object();
  s.phase = static_cast<int32_t>(o.at("phase").to_number<int64_t>());
  s.phase_start = o.at("phase_start").to_number<int64_t>();
  s.shares.clear();
  for (const json::value& x : o.at("shares").as_array()) s.shares.push_back(exact(x));
  s.last_eval.clear();
  for (const auto& kv : o.at("last_eval").as_object())
    s.last_eval[std::string(kv.key())] = exact(kv.value());
  const json::object& early = o.at("early_stopping").as_object();
  e.best = exact(early.at("best"));
  e.has_best = early.at("has_best").as_bool();
  e.best_step = early.at("best_step").to_number<int64_t>();
  e.bad_evals = early.at("bad_evals").to_number<int64_t>();
}

}  // namespace

Controller::Controller(const Config& config, Communicator& comm, std::vector<std::string> tasks,
                       std::vector<int64_t> examples, int64_t slots, int64_t tokens_per_step)
    : config_(config),
      comm_(comm),
      tasks_(std::move(tasks)),
      slots_(slots),
      lookahead_(config.schedule.lookahead),
      root_(comm.rank() == 0) {
  const auto fail = [&](const std::string& path, const std::string& what) {
    config::fail(config.source_of(path), path, what);
  };
  const std::vector<PhaseSpec> phases =
      tasks_.empty() ? std::vector<PhaseSpec>{}
                     : resolve_phases(config, tasks_, examples, tokens_per_step);
  if (root_ && !tasks_.empty()) {
    schedule_ = std::make_unique<Schedule>(phases, examples, tasks_,
                                           static_cast<uint64_t>(config.run.seed));
    plan_log_ = std::make_unique<PlanRecorder>(std::filesystem::path(config.run.dir) /
                                                   kPlanFileName,
                                               slots_);
  }
  const EarlyStoppingConfig& es = config.early_stopping;
  if (!es.metric.empty()) {
    if (tasks_.empty())
      fail("early_stopping.metric", "early stopping watches a held-out metric; it needs "
                                    "data.source: tasks with validation splits");
    std::string error;
    const std::optional<MetricRef> ref = parse_metric_ref(es.metric, tasks_, &error);
    if (!ref) fail("early_stopping.metric", error);
    early_ = EarlyStopping(*ref, higher_is_better(ref->metric, es.mode), es.patience,
                           es.min_delta);
    if (config.eval.every_steps == 0 && root_)
      log::warn("early_stopping.metric is set but eval.every_steps is 0: the run evaluates only "
                "at the end, so it never stops early; set eval.every_steps");
  }
  const std::string& best = config.checkpoint.best_metric;
  if (best.starts_with("eval.")) {
    if (tasks_.empty())
      fail("checkpoint.best_metric", "an eval.* metric needs held-out evaluation (data.source: "
                                     "tasks with validation splits); use `loss`");
    std::string error;
    best_ref_ = parse_metric_ref(std::string_view(best).substr(5), tasks_, &error);
    if (!best_ref_) fail("checkpoint.best_metric", error);
  } else if (best != "loss") {
    fail("checkpoint.best_metric",
         fmt::format("`{}` is not a metric pft records; use `loss` (training loss) or "
                     "`eval.[task.]metric` (e.g. eval.exact_match, eval.add.loss)",
                     best));
  }
}

Controller::~Controller() = default;

std::vector<StepPlan> Controller::fill_queue() {
  std::vector<StepPlan> out;
  while (static_cast<int64_t>(queue_.size()) < lookahead_ && next_plan_ < config_.train.steps &&
         end_step_ < 0) {
    StepPlan p;
    p.step = next_plan_;
    if (schedule_) {
      const ScheduleState before = schedule_->state();
      std::optional<std::vector<int32_t>> tasks = schedule_->plan(next_plan_, slots_);
      if (!tasks) {
        end_step_ = next_plan_;
        schedule_->set_state(before);  // the state of the step that never runs
        break;
      }
      queued_states_.push_back(before);
      p.phase = schedule_->state().phase;
      p.slot_tasks = std::move(*tasks);
    }
    queue_.push_back(p);
    out.push_back(std::move(p));
    ++next_plan_;
  }
  return out;
}

void Controller::restore(int64_t first_step, const std::optional<ControlState>& resumed) {
  if (root_) {
    next_plan_ = first_step;
    if (resumed && schedule_) {
      ScheduleState s;
      EarlyStopState e;
      try {
        state_from_json(resumed->json, s, e);
      } catch (const std::exception& ex) {
        throw InputError(fmt::format("the checkpoint's /controller/state is not a controller state "
                                     "this pft reads ({})", ex.what()));
      }
      if (s.phase < 0 || static_cast<size_t>(s.phase) >= schedule_->phases().size() ||
          (!s.shares.empty() && s.shares.size() != tasks_.size()))
        throw InputError(fmt::format(
            "the checkpoint's schedule is in phase {} of a schedule with other phases or tasks; "
            "this run has {} phase(s) (schedule.phases) and {} task(s)",
            s.phase, schedule_->phases().size(), tasks_.size()));
      schedule_->set_state(s);
      (void)schedule_->take_events();  // the fresh schedule's start: not this run's
      pending_events_.clear();
      early_.set_state(e);
      last_table_ = s.last_eval;
    }
    if (plan_log_) plan_log_->start(first_step, resumed ? &resumed->log : nullptr);
  }
}

Decision Controller::start(int64_t first_step) {
  std::vector<StepPlan> plans = root_ ? fill_queue() : std::vector<StepPlan>{};
  collect_events();
  release_events(first_step);
  Decision d;
  d.step = first_step;
  if (root_ && end_step_ == first_step && first_step < config_.train.steps)
    d.stop = StopReason::kSchedule;
  return exchange(d, /*replace=*/true, std::move(plans), "start");
}

const StepPlan& Controller::plan(int64_t step) const {
  PFT_ASSERT(!queue_.empty() && queue_.front().step == step,
             fmt::format("controller: no plan for step {} (queue starts at {})", step,
                         queue_.empty() ? -1 : queue_.front().step));
  return queue_.front();
}

void Controller::log_plan(const StepPlan& plan, int world_size,
                          const std::vector<std::vector<DocRef>>& slot_documents) {
  if (!plan_log_ || plan.slot_tasks.empty()) return;
  PlanRecord r;
  r.step = plan.step;
  r.phase = plan.phase;
  r.world_size = world_size;
  r.slot_task = plan.slot_tasks;
  for (const std::vector<DocRef>& docs : slot_documents) {
    std::vector<int32_t>& examples = r.doc_example.emplace_back();
    std::vector<int32_t>& templates = r.doc_template.emplace_back();
    for (const DocRef& d : docs) {
      examples.push_back(static_cast<int32_t>(d.example));
      templates.push_back(d.template_id);
    }
  }
  plan_log_->record(std::move(r));
}

std::string Controller::in_flight(int64_t step) const {
  for (const StepPlan& p : queue_) {
    if (p.step != step) continue;
    std::set<std::string> names;
    for (int32_t t : p.slot_tasks) names.insert(tasks_.at(static_cast<size_t>(t)));
    return names.empty() ? "synthetic data" : fmt::format("{}", fmt::join(names, ", "));
  }
  return "none planned";
}

Decision Controller::after_step(int64_t steps_done, int signal, double step_time_s,
                                bool checkpoint_failed) {
  const std::string tasks = in_flight(steps_done - 1);
  Decision d;
  d.step = steps_done;
  try {
    // The signal (below 2^31) and a failed save (bit 32) share one all-reduce: the maximum
    // has the bit when any rank set it; the signal of a rank without it may then be lost, which
    // does not matter, since a failed save stops the job anyway.
    constexpr int64_t kFailedSaveBit = int64_t{1} << 32;
    const int64_t local = static_cast<int64_t>(signal) | (checkpoint_failed ? kFailedSaveBit : 0);
    const int64_t reduced = comm_.all_reduce_scalar(local, ReduceOp::kMax);
    d.signal = static_cast<int32_t>(reduced & (kFailedSaveBit - 1));
    d.checkpoint_failed = (reduced & kFailedSaveBit) != 0;
    d.step_time_max = comm_.all_reduce_scalar(step_time_s, ReduceOp::kMax);
  } catch (const RuntimeFailure& e) {
    throw RuntimeFailure(fmt::format("controller: gathering the statistics of step {} (tasks in "
                                     "flight: {}): {}",
                                     steps_done, tasks, e.what()));
  }
  if (!queue_.empty() && queue_.front().step == steps_done - 1) queue_.pop_front();
  std::vector<StepPlan> plans;
  if (root_) {
    if (!queued_states_.empty()) queued_states_.pop_front();
    plans = fill_queue();
    const int64_t total = config_.train.steps;
    const bool preempt = d.signal != 0 && steps_done < total;
    const bool ends = steps_done == total || steps_done == end_step_;
    const int64_t eval_every = config_.eval.every_steps;
    const int64_t ckpt_every = config_.checkpoint.every_steps;
    if (preempt) d.stop = StopReason::kPreempted;
    else if (steps_done == end_step_ && steps_done < total) d.stop = StopReason::kSchedule;
    d.evaluate = !preempt && (ends || (eval_every > 0 && steps_done % eval_every == 0));
    d.checkpoint = preempt || ends || (ckpt_every > 0 && steps_done % ckpt_every == 0);
    if (d.checkpoint_failed) {  // nothing more: the trainer stops every rank (train/trainer.cpp)
      d.evaluate = d.checkpoint = false;
      d.stop = StopReason::kNone;
    }
    collect_events();
    release_events(d.evaluate ? steps_done - 1 : steps_done);  // an evaluation may re-plan
  }
  return exchange(d, /*replace=*/false, std::move(plans), "step decision");
}

Decision Controller::after_eval(int64_t steps_done, const MetricTable& table) {
  Decision d;
  d.step = steps_done;
  std::vector<StepPlan> plans;
  bool replanned = false;
  if (root_) {
    last_table_ = table;
    bool finished = false;
    if (schedule_ && steps_done < config_.train.steps) {
      replanned = true;
      // Back to the state before step `steps_done` was planned; the queue is planned again.
      if (!queued_states_.empty()) schedule_->set_state(queued_states_.front());
      queue_.clear();
      queued_states_.clear();
      next_plan_ = steps_done;
      end_step_ = -1;
      collect_events();
      drop_events_from(steps_done);  // planned again below
      schedule_->on_eval(steps_done, table, &finished);
      if (finished) end_step_ = steps_done;
      plans = fill_queue();
    }
    collect_events();
    release_events(steps_done);
    const bool stop_early = early_.on_eval(steps_done, table);
    if (finished && steps_done < config_.train.steps) d.stop = StopReason::kSchedule;
    if (stop_early && steps_done < config_.train.steps) d.stop = StopReason::kEarlyStopping;
    const bool hook_stop = eval_hook_ && eval_hook_(steps_done, table);
    if (hook_stop && d.stop == StopReason::kNone && steps_done > 0 &&
        steps_done < config_.train.steps)
      d.stop = StopReason::kExternal;
    d.checkpoint = steps_done > 0 && (best_ref_.has_value() || d.stop != StopReason::kNone);
  }
  return exchange(d, replanned, std::move(plans), "evaluation decision");
}

Decision Controller::exchange(Decision d, bool replace, std::vector<StepPlan> plans,
                              const char* what) {
  std::string bytes;
  if (root_) {
    json::object o;
    o["step"] = d.step;
    o["evaluate"] = d.evaluate;
    o["checkpoint"] = d.checkpoint;
    o["stop"] = static_cast<int>(d.stop);
    o["signal"] = d.signal;
    o["step_time_max"] = d.step_time_max;
    o["replace"] = replace;
    json::array ps;
    for (const StepPlan& p : plans) {
      json::array entry;
      entry.emplace_back(p.step);
      entry.emplace_back(p.phase);
      entry.emplace_back(to_array(p.slot_tasks));
      ps.emplace_back(std::move(entry));
    }
    o["plans"] = std::move(ps);
    bytes = json::serialize(o);
  }
  try {
    comm_.broadcast_bytes(bytes, 0);
  } catch (const RuntimeFailure& e) {
    throw RuntimeFailure(fmt::format("controller: waiting for rank 0's {} after step {} (tasks "
                                     "in flight: {}): {}",
                                     what, d.step, in_flight(d.step), e.what()));
  }
  if (root_) return d;
  const json::value v = json::parse(bytes);
  const json::object& o = v.as_object();
  d.step = o.at("step").to_number<int64_t>();
  d.evaluate = o.at("evaluate").as_bool();
  d.checkpoint = o.at("checkpoint").as_bool();
  d.stop = static_cast<StopReason>(o.at("stop").to_number<int>());
  d.signal = static_cast<int32_t>(o.at("signal").to_number<int64_t>());
  d.step_time_max = o.at("step_time_max").to_number<double>();
  if (o.at("replace").as_bool()) queue_.clear();
  for (const json::value& pv : o.at("plans").as_array()) {
    const json::array& a = pv.as_array();
    StepPlan p;
    p.step = a.at(0).to_number<int64_t>();
    p.phase = static_cast<int32_t>(a.at(1).to_number<int64_t>());
    for (const json::value& t : a.at(2).as_array())
      p.slot_tasks.push_back(static_cast<int32_t>(t.to_number<int64_t>()));
    queue_.push_back(std::move(p));
  }
  return d;
}

ControlState Controller::checkpoint_state(int64_t steps_done) {
  ControlState s;
  if (!root_) return s;
  s.log = plan_log_ ? plan_log_->save(steps_done) : to_columns({}, steps_done, 0);
  if (schedule_) {
    const ScheduleState st = queued_states_.empty() ? schedule_->state() : queued_states_.front();
    s.json = json::serialize(state_to_json(st, early_.state()));
  } else {
    s.json = json::serialize(state_to_json(ScheduleState{}, early_.state()));
  }
  return s;
}

void Controller::collect_events() {
  if (!schedule_) return;
  for (ScheduleEvent& e : schedule_->take_events()) pending_events_.push_back(std::move(e));
}

void Controller::release_events(int64_t up_to_step) {
  std::vector<ScheduleEvent> keep;
  for (ScheduleEvent& e : pending_events_)
    (e.step <= up_to_step ? ready_events_ : keep).push_back(std::move(e));
  pending_events_ = std::move(keep);
}

void Controller::drop_events_from(int64_t step) {
  std::erase_if(pending_events_, [step](const ScheduleEvent& e) { return e.step >= step; });
}

std::vector<ScheduleEvent> Controller::take_events() { return std::exchange(ready_events_, {}); }

std::optional<std::pair<std::string, double>> Controller::best_metric_value() const {
  if (!best_ref_) return std::nullopt;
  const auto it = last_table_.find(best_ref_->key());
  if (it == last_table_.end()) return std::nullopt;
  return std::make_pair(config_.checkpoint.best_metric, it->second);
}

}  // namespace pft
