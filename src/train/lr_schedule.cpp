#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace pft {

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "constant") return ScheduleKind::kConstant;
  if (name == "linear") return ScheduleKind::kLinear;
  if (name == "cosine") return ScheduleKind::kCosine;
  throw InputError("train.schedule: unknown schedule '" + name +
                   "'; use constant, linear or cosine");
}

LrSchedule::LrSchedule(const LrScheduleOptions& options) : options_(options) {
  PFT_ASSERT(options.total_steps >= 1 && options.warmup_steps >= 0, "bad schedule lengths");
}

double LrSchedule::lr(int64_t step) const {
  const LrScheduleOptions& o = options_;
  if (step < o.warmup_steps)
    return o.peak_lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
  const double p = std::min(1.0, static_cast<double>(step - o.warmup_steps) / decay_steps);
  const double m = o.min_lr_ratio;
  switch (o.kind) {
    case ScheduleKind::kConstant:
      return o.peak_lr;
    case ScheduleKind::kLinear:
      return o.peak_lr * (1.0 - (1.0 - m) * p);
    case ScheduleKind::kCosine:
      return o.peak_lr * (m + (1.0 - m) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
  }
  return o.peak_lr;
}

}  // namespace pft
