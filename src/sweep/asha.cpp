// ASHA (contract: sweep/asha.h).
#include "sweep/asha.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/format.h"

namespace pft::sweep {

const char* asha_verdict_name(AshaVerdict v) {
  return v == AshaVerdict::kContinue ? "continue" : "stop";
}

Asha::Asha(AshaConfig config) : config_(config) {
  if (config_.min_steps <= 0)
    throw InputError(fmt::format("asha.min_steps: {} is not a step count; the first rung must be "
                                 "at least step 1", config_.min_steps));
  if (!(config_.eta > 1.0))
    throw InputError(fmt::format("asha.eta: {} must be greater than 1 (the fraction of trials "
                                 "kept at each rung is 1/eta; 3 is usual)", config_.eta));
  if (config_.max_steps <= config_.min_steps)
    throw InputError(fmt::format("asha.min_steps: {} leaves no rung below train.steps = {}; use "
                                 "a smaller asha.min_steps or more steps",
                                 config_.min_steps, config_.max_steps));
  // min_steps * eta^k, rounded down to a step (eta need not be an integer), strictly increasing.
  double r = static_cast<double>(config_.min_steps);
  while (r < static_cast<double>(config_.max_steps)) {
    const auto step = static_cast<int64_t>(std::floor(r));
    if (rungs_.empty() || step > rungs_.back()) rungs_.push_back(step);
    r *= config_.eta;
  }
}

bool Asha::is_rung(int64_t step) const {
  return std::binary_search(rungs_.begin(), rungs_.end(), step);
}

bool Asha::better(double a, double b) const {
  const bool fa = std::isfinite(a), fb = std::isfinite(b);
  if (fa != fb) return fa;
  if (!fa) return false;
  return config_.higher_is_better ? a > b : a < b;
}

AshaVerdict Asha::report(const std::string& trial, int64_t step, double objective) {
  if (!is_rung(step))
    throw InputError(fmt::format("ASHA: trial {} reported at step {}, which is not a rung ({})",
                                 trial, step, fmt::join(rungs_, ", ")));
  std::vector<Result>& rung = by_rung_[step];
  for (const Result& r : rung)
    if (r.trial == trial) return r.verdict;  // a resumed trial passing its rung again
  Result mine{trial, objective, AshaVerdict::kStop};
  if (std::isfinite(objective)) {
    // Rank among the results so far, this one last (ties: the earlier report ranks first).
    int64_t rank = 1;
    for (const Result& r : rung)
      if (!better(objective, r.objective)) ++rank;
    const auto n = static_cast<int64_t>(rung.size()) + 1;
    const auto kept = std::max<int64_t>(
        1, static_cast<int64_t>(std::floor(static_cast<double>(n) / config_.eta)));
    if (rank <= kept) mine.verdict = AshaVerdict::kContinue;
  }
  rung.push_back(mine);
  return mine.verdict;
}

void Asha::restore(const std::string& trial, int64_t step, double objective,
                   AshaVerdict verdict) {
  if (!is_rung(step))
    throw InputError(fmt::format("ASHA: the recorded result of trial {} at step {} is not at a "
                                 "rung of this sweep ({}): was asha.* changed since it ran?",
                                 trial, step, fmt::join(rungs_, ", ")));
  std::vector<Result>& rung = by_rung_[step];
  for (const Result& r : rung)
    if (r.trial == trial) return;
  rung.push_back({trial, objective, verdict});
}

const std::vector<Asha::Result>& Asha::results(int64_t step) const {
  static const std::vector<Result> kNone;
  const auto it = by_rung_.find(step);
  return it == by_rung_.end() ? kNone : it->second;
}

}  // namespace pft::sweep
