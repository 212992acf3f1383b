// The multi-task schedule the controller (control/controller.h) runs on rank 0: phases, each with
// a task set and a mixing strategy, ending by steps, tokens or a held-out metric condition;
// adaptive mixtures; early stopping. Pure logic: no communication, no torch (docs/schedules.md).
//
// Note [plans are a function of the state]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The tasks of step t's micro-batch slots are drawn by TaskMixture(seed, weights).task_of(t, j)
// (data/sampler.h), with the weights of the phase that step t belongs to. ScheduleState holds
// everything that decides them -- the phase, its first step, the adaptive shares, the last
// held-out results -- so plan(t) from the same state gives the same tasks on any machine, any
// world size, in any run. A checkpoint at step s saves the state before planning step s; a
// resumed run plans s, s+1, ... exactly as the uninterrupted one did.
//
// Phases end (whichever first):
//   - after `steps` steps, or `tokens` input tokens (global batch x seq_len per step, rounded up
//     to whole steps): known when a step is planned, so plans ahead cross the boundary in time;
//   - at the first evaluation where `until` holds (on_eval): the next step is the new phase's
//     first. The end of the last phase ends the run (stop reason "schedule").
//
// Adaptive mixing (mixing: adaptive), at each evaluation and at the phase's start (from the last
// evaluation, if any):
//   score_k  = held-out loss of task k (adaptive_metric loss), or 1 - its exact_match / accuracy;
//              a phase task without a score (no validation split) gets the mean of the others;
//   target   = score_k / sum(score) over the phase's tasks (uniform when the sum is 0), then
//              clamped to [floor, ceiling] by water-filling (clamped tasks are fixed, the rest
//              rescaled to the remaining mass, repeated until nothing moves);
//   share_k <- smoothing * share_k + (1 - smoothing) * target_k   (the first update starts from
//              uniform shares).
// The shares become integer weights round(share * 2^30) (at least 1 for a positive share).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "data/sampler.h"

namespace pft {

// ---- Held-out metrics ------------------------------------------------------------------------

// Held-out results of one evaluation: "task.metric" per task and "metric" for the mean over the
// tasks that have it. Metrics: loss, perplexity, exact_match, accuracy, worst_template_loss,
// worst_template_exact_match, worst_template_accuracy.
using MetricTable = std::map<std::string, double>;

// "[task.]metric": the task is everything before the last '.'; no task = the mean over tasks.
struct MetricRef {
  std::string task;
  std::string metric;
  std::string key() const { return task.empty() ? metric : task + "." + metric; }
};
// Parses and checks `text` against the metric names and `tasks` (when not empty); on failure
// returns nullopt with the reason in `error`.
std::optional<MetricRef> parse_metric_ref(std::string_view text,
                                          const std::vector<std::string>& tasks,
                                          std::string* error);
// "ref OP value", OP one of >= > <= <.
struct MetricCondition {
  MetricRef ref;
  std::string op;
  double value = 0.0;
  std::string text;
  // False when the table lacks the metric (not evaluated yet, or the task has no validation
  // split).
  bool holds(const MetricTable& table) const;
};
std::optional<MetricCondition> parse_metric_condition(std::string_view text,
                                                      const std::vector<std::string>& tasks,
                                                      std::string* error);
// Loss-like metrics (loss, perplexity, worst_template_loss) are better when lower.
bool lower_is_better(const std::string& metric);
// A mode key (`auto`, `min`, `max`) for `metric`: whether higher is better.
bool higher_is_better(const std::string& metric, const std::string& mode);

// ---- Adaptive mixing -------------------------------------------------------------------------

// Clamps `shares` (summing to 1 over the tasks where `in_phase`) to [floor, ceiling] by
// water-filling; tasks outside the phase stay 0. When the bounds cannot all hold (floor x tasks
// > 1, or ceiling x tasks < 1) the uniform shares are returned.
std::vector<double> clamp_shares(std::vector<double> shares, const std::vector<uint8_t>& in_phase,
                                 double floor, double ceiling);
// One adaptive update (see the Note above). `scores`: NaN = no score for that task. `old_shares`
// empty = uniform over the phase.
std::vector<double> adaptive_shares(const std::vector<double>& old_shares,
                                    const std::vector<double>& scores,
                                    const std::vector<uint8_t>& in_phase, double floor,
                                    double ceiling, double smoothing);

// ---- Phases ----------------------------------------------------------------------------------

struct PhaseSpec {
  std::string name;
  std::vector<uint8_t> in_phase;  // per task of data.tasks
  MixingOptions mixing;           // non-adaptive strategies; weights expanded to every task
  bool adaptive = false;
  int64_t max_steps = 0;  // from steps / tokens; 0 = none
  std::optional<MetricCondition> until;
  std::string adaptive_metric = "loss";
  double floor = 0.0, ceiling = 1.0, smoothing = 0.5;
};

// schedule.phases resolved against the task list (one phase from data.mixing* when empty).
// Throws InputError naming the key (an unknown task, a bad condition, weights that do not match
// the phase's tasks, a phase without training examples).
std::vector<PhaseSpec> resolve_phases(const Config& config, const std::vector<std::string>& tasks,
                                      const std::vector<int64_t>& examples,
                                      int64_t tokens_per_step);

// Everything that decides the plans (Note [plans are a function of the state]).
struct ScheduleState {
  int32_t phase = 0;
  int64_t phase_start = 0;     // the phase's first step
  std::vector<double> shares;  // adaptive phase: current shares (empty = not set yet)
  MetricTable last_eval;       // the last held-out results
  bool operator==(const ScheduleState&) const = default;
};

// What changed, for the logs and metrics.jsonl (rank 0).
struct ScheduleEvent {
  enum class Kind { kPhase, kWeights } kind = Kind::kPhase;
  int64_t step = 0;  // the first step it applies to
  int32_t phase = 0;
  std::string reason;           // "start", "steps", the condition, "adaptive"
  std::vector<double> shares;   // kWeights: every task's share
};

class Schedule {
 public:
  // `examples`: training examples per task; `tasks`: their names (data.tasks order).
  Schedule(std::vector<PhaseSpec> phases, std::vector<int64_t> examples,
           std::vector<std::string> tasks, uint64_t seed);

  // The tasks of step `step`'s `slots` slots (step >= the state's phase_start); advances the
  // phase at a steps/tokens boundary. nullopt: the last phase ended before `step` (the run is
  // over).
  std::optional<std::vector<int32_t>> plan(int64_t step, int64_t slots);
  // An evaluation after `steps_done` steps (before step `steps_done` runs): records the table,
  // ends the phase when its `until` holds (the new phase starts at steps_done; returns true in
  // `*finished` when it was the last), and updates adaptive shares.
  void on_eval(int64_t steps_done, const MetricTable& table, bool* finished);

  const ScheduleState& state() const { return state_; }
  // Replaces the state (resume, re-planning); events already noted stay.
  void set_state(const ScheduleState& s);
  const std::vector<PhaseSpec>& phases() const { return phases_; }
  const PhaseSpec& phase() const { return phases_[static_cast<size_t>(state_.phase)]; }
  // The current phase's integer weights (every task) and shares.
  std::vector<int64_t> weights() const;
  std::vector<double> shares() const;
  // Events since the last call, in order (planning the same steps again notes them again: the
  // controller keeps those of steps not run yet apart, control/controller.h).
  std::vector<ScheduleEvent> take_events();

 private:
  void enter_phase(int32_t phase, int64_t start, const std::string& reason);
  void update_adaptive();
  void note_weights(int64_t step, const std::string& reason);

  std::vector<PhaseSpec> phases_;
  std::vector<int64_t> examples_;
  std::vector<std::string> tasks_;
  uint64_t seed_;
  ScheduleState state_;
  std::vector<ScheduleEvent> events_;
};

// Early stopping on one held-out metric (early_stopping.*).
struct EarlyStopState {
  double best = 0.0;
  bool has_best = false;
  int64_t best_step = -1;
  int64_t bad_evals = 0;
};
class EarlyStopping {
 public:
  EarlyStopping() = default;  // off
  EarlyStopping(MetricRef ref, bool higher_is_better, int64_t patience, double min_delta);
  bool enabled() const { return enabled_; }
  const MetricRef& ref() const { return ref_; }
  // True when the run should stop: no improvement for `patience` evaluations. A table without
  // the metric counts as no evaluation.
  bool on_eval(int64_t step, const MetricTable& table);
  const EarlyStopState& state() const { return state_; }
  void set_state(const EarlyStopState& s) { state_ = s; }

 private:
  bool enabled_ = false;
  MetricRef ref_;
  bool higher_ = false;
  int64_t patience_ = 1;
  double min_delta_ = 0.0;
  EarlyStopState state_;
};

}  // namespace pft
