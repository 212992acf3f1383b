// Learning-rate schedule: linear warmup, then constant, linear or cosine decay to a floor.
//
// For optimizer step s (0-based, the step about to be taken), peak rate L, S = train.steps,
// W = train.warmup_steps and floor ratio m = train.min_lr_ratio:
//
//   s <  W:  lr(s) = L * (s + 1) / W                       (the first step already moves)
//   s >= W:  p     = (s - W) / max(1, S - W)               (0 at the end of warmup, < 1 after)
//            constant: lr(s) = L
//            linear:   lr(s) = L * (1 - (1 - m) * p)
//            cosine:   lr(s) = L * (m + (1 - m) * 0.5 * (1 + cos(pi * p)))
//
// Steps past S keep p clamped to 1 (lr = L * m for linear and cosine). tests/reference/
// train_reference.py implements the same formulas; the two are compared in tests/train.
#pragma once

#include <cstdint>
#include <string>

namespace pft {

enum class ScheduleKind { kConstant, kLinear, kCosine };

// "constant" | "linear" | "cosine"; throws InputError naming train.schedule otherwise.
ScheduleKind parse_schedule(const std::string& name);

struct LrScheduleOptions {
  ScheduleKind kind = ScheduleKind::kCosine;
  double peak_lr = 0.0;       // train.lr
  int64_t total_steps = 1;    // train.steps
  int64_t warmup_steps = 0;   // train.warmup_steps
  double min_lr_ratio = 0.0;  // train.min_lr_ratio, in [0, 1]
};

class LrSchedule {
 public:
  explicit LrSchedule(const LrScheduleOptions& options);
  // Rate of 0-based optimizer step `step` (>= 0).
  double lr(int64_t step) const;

 private:
  LrScheduleOptions options_;
};

}  // namespace pft
