// MetricsSink: the one owner of the metrics.jsonl schema. Every record `pft train` writes goes
// through one function here, one per record kind, so the schema lives in one file and
// docs/metrics.md documents exactly these functions (tests/train/metrics_sink_test.cpp checks
// every record against that page, field by field).
//
// Kinds, in the order a run writes them:
//   start      once per process start: world size, steps, parameters, method, first mixture
//   resume     after a checkpoint was restored (train.resume)
//   phase      the schedule entered a phase            (controller events, rank 0)
//   mixture    the schedule's task weights changed     (controller events, rank 0)
//   eval       per task and template, then per task ("template": "all"), at each evaluation
//   train      every optimizer step
//   checkpoint every save that finished
//   preempted  a preemption signal was honoured (the run then exits 75)
//   stopped    the run ended before train.steps (early stopping, the schedule's end)
//   end        the run finished (train.steps or stopped)
// and one that only `pft eval` writes (to its --output file, after its eval records):
//   eval_summary  what was scored, on which split and ranks; the means over tasks
// Every record also has "time" (seconds since the epoch, added by MetricsWriter).
//
// Rank 0 owns the file; on other ranks the sink is disabled and every call is a no-op, so callers
// need no rank checks. Not thread-safe; not collective.
//
// With run.tensorboard, every record also goes to a TensorBoard event file (train/tensorboard.h,
// Note [TensorBoard tags]): one writer of the schema feeds both, so they hold the same numbers.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/run_dir.h"

namespace pft {

namespace ckpt {
struct SaveReport;
}
struct ScheduleEvent;
struct StepResult;
struct TaskEval;
class TensorBoardWriter;

class MetricsSink {
 public:
  MetricsSink();  // disabled: every call is a no-op
  // Appends to `path` (created when missing); each line is flushed as written.
  explicit MetricsSink(const std::filesystem::path& path);
  MetricsSink(MetricsSink&&) noexcept;
  MetricsSink& operator=(MetricsSink&&) noexcept;
  ~MetricsSink();  // flushes the TensorBoard events (a failure there is logged)

  bool enabled() const { return writer_.enabled(); }

  // run.tensorboard: every record written from here on also goes to a new event file in `dir`
  // (created when missing); `task_names` name the train records' per-task arrays. Throws
  // InputError naming the file when it cannot be created. No-op when disabled.
  void enable_tensorboard(const std::filesystem::path& dir, std::vector<std::string> task_names);
  // The event file, empty without TensorBoard.
  std::filesystem::path tensorboard_file() const;
  // Writes the buffered TensorBoard events out: the trainer calls it at each progress line
  // (run.log_every); eval, stopped, preempted and end records flush by themselves. A failed
  // write throws RuntimeFailure naming the file, as a failed metrics.jsonl append does.
  void flush();

  struct Start {
    int world_size = 1;
    int64_t steps = 0;             // train.steps
    int64_t parameters = 0;        // trainable parameters (flat)
    std::string method;            // train.method
    std::string base_model_hash;   // PEFT methods: the frozen base's hash; else empty (omitted)
    // The first phase's mixture, task -> share; empty without a task schedule (omitted).
    std::vector<std::pair<std::string, double>> mixture;
  };
  void start(const Start& s);

  void resume(int64_t step, int world_size);

  struct Train {
    int64_t step = 0;              // 1-based: the step just finished
    double lr = 0.0;
    const StepResult* result = nullptr;
    int64_t tokens = 0;            // input tokens of the step over all ranks
    double step_time_s = 0.0;      // this rank's (rank 0's) step time
    double step_time_max_s = 0.0;  // the slowest rank's
    double control_s = 0.0;        // the controller's step boundary, collectives included
    int world_size = 1;
    std::optional<int32_t> phase;  // the schedule's phase (data.source: tasks)
    double flops_per_token = 0.0;  // model FLOPs per training token (train/flops.h)
    std::optional<double> peak_flops;  // the device's peak FLOP/s, when known: "mfu"
  };
  // Also kept in history() for the checkpoints' /metrics/history.
  void train(const Train& t);

  // Per task: one record per template, then one with "template": "all".
  void eval(int64_t step, const std::vector<TaskEval>& evals);

  struct EvalSummary {
    int64_t step = 0;          // the checkpoint's step (0 without one)
    std::string split;         // validation | test
    int world_size = 1;
    std::string method;        // train.method of what was scored (full without a checkpoint)
    std::string model;         // model.from_pretrained; empty (omitted) when none
    std::string checkpoint;    // the checkpoint file; empty (omitted) when none
    double seconds = 0.0;      // wall time of the evaluation (all tasks)
  };
  // `pft eval`: after eval(step, evals), the means over tasks of metric_table(evals).
  void eval_summary(const EvalSummary& s, const std::vector<TaskEval>& evals);

  // A phase change or new mixture weights; `phase_name` is the event's phase's name.
  void schedule_event(const ScheduleEvent& e, const std::string& phase_name,
                      const std::vector<std::string>& task_names);

  void checkpoint(const ckpt::SaveReport& r);
  void preempted(int64_t step, std::string_view signal);
  void stopped(int64_t step, std::string_view reason);

  struct End {
    int64_t step = 0;
    int64_t tokens_seen = 0;
    std::string param_hash;
    double peak_rss_mb = 0.0;       // the largest rank's
    std::string stopped;            // why the run ended early; empty (omitted) otherwise
    std::string base_model_hash;    // PEFT methods: the base's hash at the end; else omitted
  };
  void end(const End& e);

  // The last kHistory train records (serialized JSON), oldest first: what a checkpoint saves
  // under /metrics/history and a resumed run continues from.
  const std::deque<std::string>& history() const { return history_; }
  void restore_history(std::deque<std::string> lines) { history_ = std::move(lines); }
  static constexpr size_t kHistory = 256;

 private:
  void write(boost::json::object record);

  MetricsWriter writer_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::deque<std::string> history_;
};

}  // namespace pft
