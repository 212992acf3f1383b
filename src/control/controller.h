// The controller: world rank 0 decides what the whole job does next -- the task of every
// micro-batch slot of every step (the plan), and the actions at each step boundary (evaluate,
// checkpoint, change phase, stop) -- and broadcasts its decisions; the other ranks follow them.
// The schedule itself (phases, mixtures, early stopping) is control/schedule.h.
//
// Protocol (every rank calls the collective steps in this order; dist.timeout_s bounds every
// wait: a dead or stalled rank ends the job with a message naming the operation, the step and
// the tasks in flight):
//
//   1. start(s0): rank 0 plans steps s0 .. s0+L-1 (L = schedule.lookahead) from the schedule
//      state (a fresh one, or the checkpoint's) and broadcasts them.                  [bcast]
//   2. Each step s: every rank takes plan(s) from its queue -- decided at least L-1 steps
//      earlier, so no rank waits on rank 0 to start a step -- and trains on it.
//   3. after_step(s+1, stats): every rank contributes its preemption signal, whether a
//      background checkpoint save failed (rank 0's saver) and its step time; the maxima reach
//      every rank (two scalar all-reduces, the signal and the failure share one: the per-task
//      loss sums and token counts were already reduced with the gradients). A failed save is
//      on every rank's Decision (checkpoint_failed: every rank stops, train/trainer.cpp). Rank 0
//      decides: evaluate? checkpoint? stop (a signal: preempt; the schedule's last phase ended:
//      finish)? and plans step s+1+L-1; it broadcasts the decision with that plan.
//                                                                        [all-reduce x2, bcast]
//   4. If the decision says evaluate: every rank evaluates (train/evaluate.h, its own all-reduce);
//      then after_eval(s+1, table): rank 0 feeds the held-out results to the schedule (a phase
//      ending by `until`, adaptive weights) and to early stopping; it re-plans the queued steps
//      from the state of step s+1 (a phase change or new weights apply from the next step) and
//      broadcasts the decision (checkpoint? stop?) with the new plans.                  [bcast]
//      An eval hook (set_eval_hook, rank 0) is asked last, with the step and the table; a stop
//      from it (kExternal) ends the run there like its last step: a final checkpoint, the end
//      record. The other ranks learn it from the same broadcast.
//   5. A checkpoint saves the schedule state of step s+1 and the plan log; a resumed run
//      restarts at 1. with it and plans exactly what the uninterrupted run planned (Note [plans
//      are a function of the state], control/schedule.h).
//
// The plan log (rank 0, control/plan_log.h): per executed step, the phase, the world size and the
// task of each slot, and per slot the documents it packed (example index and template id) -- an
// audit of what every step trained on. RUN_DIR/plan.jsonl holds every step; rank 0's memory and
// each checkpoint (/controller/plan, docs/checkpoint-format.md) only the steps since the previous
// save (Note [plan log]). Rank r trains slots [r*A, (r+1)*A), A = slots / world size
// (data/loader.h).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "control/plan_log.h"
#include "control/schedule.h"

namespace pft {

class Communicator;
struct DocRef;

// The plan of one step: its phase and the task of each micro-batch slot (all ranks).
struct StepPlan {
  int64_t step = 0;
  int32_t phase = 0;
  std::vector<int32_t> slot_tasks;  // empty for the synthetic data source
};

enum class StopReason : uint8_t {
  kNone = 0,
  kPreempted,      // a signal: checkpoint, exit 75
  kEarlyStopping,  // early_stopping.*: no improvement for `patience` evaluations
  kSchedule,       // the last phase ended (steps, tokens or until)
  kExternal,       // the eval hook said stop (Controller::set_eval_hook: a sweep's ASHA rung)
};
const char* stop_reason_name(StopReason r);

struct Decision {
  int64_t step = 0;  // steps done
  bool evaluate = false;
  bool checkpoint = false;
  StopReason stop = StopReason::kNone;
  int32_t signal = 0;          // the preemption signal (max over ranks)
  // after_step: a background checkpoint save failed (any rank; then signal may be 0 although
  // one arrived: the job stops on the failure); every rank sets it from the all-reduce.
  bool checkpoint_failed = false;
  double step_time_max = 0.0;  // the slowest rank's step time
};

// What rank 0's checkpoints record (and a resumed controller starts from).
struct ControlState {
  std::string json;  // the schedule and early-stopping state (ControlState::json is opaque)
  PlanLog log;       // the plan log's window: the steps since the previous save
};

class Controller {
 public:
  // `tasks`/`examples`: the tasks (names, training examples), empty for synthetic data;
  // `slots`: micro-batch slots per step over all ranks. Throws InputError naming the key for a
  // bad schedule (same on every rank).
  Controller(const Config& config, Communicator& comm, std::vector<std::string> tasks,
             std::vector<int64_t> examples, int64_t slots, int64_t tokens_per_step);
  ~Controller();

  // Before step 1, rank 0 only (not collective, call it under agree()): the run starts at
  // `first_step`, from the checkpoint's control state `resumed` (nullopt for a fresh run); the
  // plan log's file is brought back to the checkpoint's step (PlanRecorder::start). Throws
  // InputError when the state does not fit this run's schedule.
  void restore(int64_t first_step, const std::optional<ControlState>& resumed);
  // Step 1 (collective). The decision's stop is kSchedule when the schedule has no step left
  // before train.steps (its last phase ended at `first_step`).
  Decision start(int64_t first_step);
  // Step 2: the plan of `step` (the next one to run).
  const StepPlan& plan(int64_t step) const;
  // Rank 0: records the plan of the step about to run and its documents per slot in the plan log
  // (the step before it has finished: its line is written to plan.jsonl now).
  void log_plan(const StepPlan& plan, int world_size,
                const std::vector<std::vector<DocRef>>& slot_documents);
  // Step 3 (collective). `checkpoint_failed`: this rank's checkpoint saver holds a failure
  // (Checkpointer::save_failed()).
  Decision after_step(int64_t steps_done, int signal, double step_time_s,
                      bool checkpoint_failed = false);
  // Step 4 (collective): after an evaluation of `steps_done` steps.
  Decision after_eval(int64_t steps_done, const MetricTable& table);

  // Rank 0 (ignored elsewhere): called by after_eval with the step and the held-out table after
  // every evaluation, once the schedule and early stopping decided; true stops the run
  // (StopReason::kExternal) unless they already did, or the step is 0 or train.steps (nothing to
  // stop; the call still hands over the table).
  // It may block (an in-allocation sweep asks its controller, sweep/mpi_executor.h): the other
  // ranks wait in the decision's broadcast, under dist.timeout_s. What it throws reaches rank 0's
  // train() (the others then miss the broadcast's deadline).
  using EvalHook = std::function<bool(int64_t steps_done, const MetricTable& table)>;
  void set_eval_hook(EvalHook hook) { eval_hook_ = std::move(hook); }

  // Rank 0, at a save after `steps_done` steps: the state to checkpoint (the schedule state of
  // that step) and the plan log's window, which starts anew; plan.jsonl is fsync'd first, so it
  // holds every step the checkpoint follows (Note [plan log]).
  ControlState checkpoint_state(int64_t steps_done);
  // Rank 0: the schedule's events (phase changes, new mixture weights) of steps whose plan is
  // final -- an event of a step planned ahead waits until no evaluation can re-plan that step.
  std::vector<ScheduleEvent> take_events();
  // Rank 0: the current phase and its shares per task, for logs and the start record.
  const Schedule* schedule() const { return schedule_.get(); }
  const std::vector<std::string>& tasks() const { return tasks_; }
  // Best-checkpoint metric (checkpoint.best_metric `eval.X`): its value in the last table, if
  // any (rank 0).
  std::optional<std::pair<std::string, double>> best_metric_value() const;
  const EarlyStopping& early_stopping() const { return early_; }
  // The tasks of queued step `step`, "a, b" (messages: the tasks in flight when a wait fails).
  std::string in_flight(int64_t step) const;

 private:
  // Rank 0: plans the steps after the queue's last until it holds L plans (or the schedule
  // ends); returns the new ones.
  std::vector<StepPlan> fill_queue();
  // Broadcasts rank 0's decision and new plans; every rank applies them.
  Decision exchange(Decision d, bool replace, std::vector<StepPlan> plans, const char* what);

  const Config& config_;
  Communicator& comm_;
  std::vector<std::string> tasks_;
  int64_t slots_;
  int64_t lookahead_;
  bool root_;
  std::unique_ptr<Schedule> schedule_;  // rank 0
  // Rank 0: the schedule state before planning each queued step (front = the next step).
  std::deque<ScheduleState> queued_states_;
  int64_t next_plan_ = 0;   // rank 0: the next step to plan
  int64_t end_step_ = -1;   // rank 0: the schedule's last step + 1, once known
  std::deque<StepPlan> queue_;
  EarlyStopping early_;
  std::optional<MetricRef> best_ref_;  // checkpoint.best_metric eval.X
  MetricTable last_table_;
  EvalHook eval_hook_;
  std::unique_ptr<PlanRecorder> plan_log_;  // rank 0, tasks source
  // Rank 0: schedule events of steps that may still be re-planned, and those released.
  std::vector<ScheduleEvent> pending_events_, ready_events_;
  void collect_events();
  void release_events(int64_t up_to_step);
  void drop_events_from(int64_t step);
};

}  // namespace pft
