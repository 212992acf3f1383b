// The human-readable progress line rank 0 prints every run.log_every steps:
//
//   step 50/200 | loss 2.345 | lr 3.0e-04 | grad_norm 0.91 | 12.3k tok/s | ETA 1m05s
//
// and on more ranks, with a GPU whose peak is known (train/flops.h), the per-rank rate and MFU:
//
//   step 50/200 | loss 2.345 | lr 3.0e-04 | grad_norm 0.91 | 98.3k tok/s (12.3k/rank) | MFU 41.2% | ETA 1m05s
//
// and the small formatters it is made of. Pure functions (no torch, no I/O), unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pft {

struct ProgressFields {
  int64_t step = 0;         // 1-based step just finished
  int64_t total_steps = 0;
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  double tokens_per_s = 0.0;  // all ranks together
  int world_size = 1;         // > 1: the per-rank rate is shown too
  double mfu = -1.0;          // model FLOPs utilisation in [0, 1]; < 0: unknown (not shown)
  double eta_s = 0.0;       // seconds left, estimated from the mean step time so far
  bool skipped = false;     // fp16 overflow: the update was skipped
  double loss_scale = 0.0;  // > 0: shown (fp16)
};

std::string format_progress_line(const ProgressFields& f);

// The per-task table printed at the end of a run: for every task, its target tokens and the mean
// training loss per target token over the first and the last window of steps (each a tenth of the
// run, at least one step), so a user sees at a glance which tasks learned:
//
//   task          target tokens   loss first 10%   loss last 10%   change
//   add                   1,234            2.910           0.412   -85.8%
//
// Steps are fed in order with the global per-task sums of StepResult. A task with no target tokens
// in a window shows "-" there.
class TaskSummary {
 public:
  // `first_step` = the first step this process runs (> 0 after a resume), `total_steps` the last.
  TaskSummary(std::vector<std::string> task_names, int64_t first_step, int64_t total_steps);

  // Step `step` (0-based) finished with these global sums (size: number of tasks).
  void add(int64_t step, const std::vector<double>& task_loss_sum,
           const std::vector<double>& task_tokens);

  // The table, one line per row (header first); empty when no step was added.
  std::vector<std::string> format() const;

 private:
  struct Window {
    double loss_sum = 0.0;
    double tokens = 0.0;
  };
  std::vector<std::string> names_;
  int64_t first_step_ = 0;
  int64_t window_ = 1;
  int64_t last_start_ = 0;
  int64_t steps_added_ = 0;
  std::vector<Window> first_, last_;
  std::vector<double> total_tokens_;
};

// 950 -> "950", 12345 -> "12.3k", 4.2e6 -> "4.20M".
std::string format_rate(double per_second);
// 65 -> "1m05s", 3725 -> "1h02m05s", 9.4 -> "9s".
std::string format_duration(double seconds);

}  // namespace pft
