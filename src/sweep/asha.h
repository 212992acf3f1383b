// ASHA: asynchronous successive halving (Li et al., "A System for Massively Parallel
// Hyperparameter Tuning", 2018), the early-stopping rule of an in-allocation sweep
// (sweep/mpi_executor.h). Pure logic: no MPI, no files, no clock.
//
// Rungs are the steps min_steps * eta^k (k = 0, 1, ...) below max_steps (a trial that reaches
// max_steps has finished; no decision is left to take there). When a trial reports its objective
// at a rung, the result is recorded at that rung and the trial goes on if it is in the top 1/eta
// of every result recorded at that rung so far, itself included (Note [asha cut]); otherwise it
// stops. A NaN or infinite objective always stops (it is recorded, ranked below every finite one).
//
// Deterministic given the order of the reports: ties rank the earlier report first. The state is
// the list of reports in order, so replaying the recorded rung results (sweep.jsonl) through
// report() rebuilds it, with the same verdicts; restore() replays a result with its recorded
// verdict as is (a resumed sweep keeps the decisions it took even where a recorded objective
// came back from JSON one ulp off). A second report of the same trial
// at the same rung (a trial resumed from a checkpoint before the rung it had already passed)
// changes nothing and returns the first verdict.
//
// Note [asha cut]
// ~~~~~~~~~~~~~~~
// With n results at a rung (this one included), the trial goes on when its rank among them
// (1 = best) is at most max(1, floor(n / eta)). The max(1, ...) lets the first trial to reach a
// rung go on (asynchronous: nobody waits for a full rung, and the first arrival is provisionally
// the best), as Ray Tune's AsyncHyperBand does; later arrivals must beat the rung's running top
// 1/eta. So a trial's verdict depends on the trials that reported before it, never on later ones.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace pft::sweep {

struct AshaConfig {
  int64_t min_steps = 0;   // the first rung (> 0)
  int64_t max_steps = 0;   // the longest trial's train.steps (> min_steps for at least one rung)
  double eta = 3.0;        // reduction factor (> 1)
  bool higher_is_better = false;  // the objective's mode: max (true) or min
};

enum class AshaVerdict { kContinue, kStop };
const char* asha_verdict_name(AshaVerdict v);  // "continue" | "stop"

class Asha {
 public:
  // Throws InputError (naming the sweep key asha.*) for min_steps <= 0, eta <= 1, or
  // max_steps <= min_steps.
  explicit Asha(AshaConfig config);

  // The rung steps, ascending.
  const std::vector<int64_t>& rungs() const { return rungs_; }
  bool is_rung(int64_t step) const;

  // Records `objective` of `trial` at rung `step` and decides (see the header). Throws
  // InputError when `step` is not a rung.
  AshaVerdict report(const std::string& trial, int64_t step, double objective);

  // Records a result decided earlier (sweep.jsonl on resume), in report order, with its verdict.
  // Throws InputError when `step` is not a rung of this config.
  void restore(const std::string& trial, int64_t step, double objective, AshaVerdict verdict);

  // Results recorded at rung `step`, in report order.
  struct Result {
    std::string trial;
    double objective = 0.0;
    AshaVerdict verdict = AshaVerdict::kContinue;
  };
  const std::vector<Result>& results(int64_t step) const;
  const AshaConfig& config() const { return config_; }

 private:
  // Whether a is strictly better than b (non-finite values rank below every finite one).
  bool better(double a, double b) const;

  AshaConfig config_;
  std::vector<int64_t> rungs_;
  std::map<int64_t, std::vector<Result>> by_rung_;
};

}  // namespace pft::sweep
