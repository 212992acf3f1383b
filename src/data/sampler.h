// Deterministic sampling: the order of each task's training examples, the task mixture, and the
// sharding of evaluation splits over ranks.
//
// Note [sampler PRNG]
// ~~~~~~~~~~~~~~~~~~~
// Every random choice is a pure function of (run.seed, purpose, task name, counters), so it is
// the same on every rank, every world size, every run and every platform:
//   - seed:     derive_seed() = XXH3-64 of (seed, purpose, name, a, b) framed as in
//               data/content_hash.h;
//   - stream:   std::mt19937_64 seeded with it (its output sequence is fixed by the C++
//               standard);
//   - integers: uniform_below(n) by Lemire's multiply-shift with rejection (unbiased). The std
//               distributions and std::shuffle are NOT used: their algorithms differ between
//               standard libraries.
//   - shuffle:  Fisher-Yates, i = n-1 .. 1: swap(p[i], p[uniform_below(i + 1)]).
//
// Task streams (TaskSampler)
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// Each task has one infinite stream of samples, indexed by the global sample index g = 0, 1, ...
// over all ranks. With N training examples and S training templates:
//   epoch e = g / N, example = perm_e[g % N], template slot = (example + e) % S
// where perm_e is the Fisher-Yates permutation seeded by derive_seed(seed, "order", task, e).
// Every epoch visits every example exactly once; an example moves to the next template each
// epoch, so over S epochs it is trained under each of them. The whole state of a stream is the
// next g: no replay, no skip, no duplicate is possible as long as consumers advance g by what they
// took (the loader, data/loader.h, does that for all ranks at once).
//
// Evaluation sharding (EvalShard)
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// N items over W ranks in rounds of `batch` items per rank: round k covers items
// [k*W*batch, (k+1)*W*batch); rank r takes [k*W*batch + r*batch, ... + batch) clipped to N. Every
// rank sees the same number of rounds (ceil(N / (W*batch)), at least 1 when N > 0), so ranks that
// run out get an explicit empty batch ("no more": EvalBatch::empty()) and still join the round's
// collectives: no item is evaluated twice, none is missed, nobody waits forever.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace pft {

// See Note [sampler PRNG].
uint64_t derive_seed(uint64_t seed, std::string_view purpose, std::string_view name, uint64_t a,
                     uint64_t b = 0);
// Uniform integer in [0, n), n >= 1, from `g`'s raw output.
uint64_t uniform_below(std::mt19937_64& g, uint64_t n);
// The Fisher-Yates permutation of [0, n) for `seed`.
std::vector<uint32_t> seeded_permutation(uint64_t n, uint64_t seed);

struct SampleRef {
  int64_t sample = 0;  // global sample index g in the task's stream
  int64_t epoch = 0;
  int64_t example = 0;  // index in the split
  int32_t slot = 0;     // template slot (DocumentSource: doc = example * S + slot)
};

// The sample stream of one task. Not thread-safe (caches the current epochs' permutations:
// 4 bytes per example per cached epoch, two epochs).
class TaskSampler {
 public:
  // Throws InputError when the task has no examples or no templates.
  TaskSampler(uint64_t seed, std::string task, int64_t num_examples, int32_t num_templates);

  SampleRef at(int64_t g);
  int64_t num_examples() const { return num_examples_; }
  int32_t num_templates() const { return num_templates_; }
  const std::string& task() const { return task_; }

 private:
  const std::vector<uint32_t>& permutation(int64_t epoch);

  uint64_t seed_;
  std::string task_;
  int64_t num_examples_;
  int32_t num_templates_;
  struct Cached {
    int64_t epoch = -1;
    std::vector<uint32_t> perm;
  };
  Cached cache_[2];
  int next_victim_ = 0;
};

// How a multi-task run weighs its tasks (data.mixing), from each task's training examples n_k:
//   proportional  w_k = min(n_k, cap), cap = data.mixing_cap (0: no cap) - T5's
//                 examples-proportional mixing; a cap keeps big tasks from drowning small ones;
//   temperature   w_k proportional to n_k^(1/T), T = data.mixing_temperature (T = 1 is
//                 proportional, larger T flattens towards uniform);
//   uniform       w_k = 1 for every task with examples.
// A task without examples gets weight 0. The weights are integers (TaskMixture draws with
// integer arithmetic, identically on every rank): temperature weights are scaled so the largest
// is 2^30 and rounded.
struct MixingOptions {
  std::string strategy = "proportional";  // proportional | temperature | uniform | fixed |
                                          // round_robin
  int64_t cap = 0;
  double temperature = 1.0;
  std::vector<double> weights;  // fixed: one per task, in task order (data.mixing_weights)
};

// The mixture weights of `examples` (training examples per task) under `options`: proportional
// (capped), temperature (n^(1/T), scaled to 2^30 at the largest), uniform (1 per task), fixed
// (options.weights, scaled to 2^30 at the largest; a positive weight never rounds to 0),
// round_robin (1 per task: each gets whole steps in turn, see TaskMixture). A task without
// examples gets 0. Throws InputError naming data.mixing when no task gets a positive weight, and
// data.mixing_weights when they are not one non-negative number per task.
std::vector<int64_t> mixture_weights(const std::vector<int64_t>& examples,
                                     const MixingOptions& options);

// The task mixture: the task of micro-batch slot `slot` of step `step` is drawn with probability
// weights[k] / sum(weights) from derive_seed(seed, "mixture", "", step, slot). Round robin
// instead gives every slot of step s the ((s mod m)+1)-th of the m tasks with a positive weight:
// whole steps per task, in turn. The controller's schedule (control/schedule.h) draws every
// step's plan with it, from the weights of the step's phase.
class TaskMixture {
 public:
  // weights: non-negative, at least one positive (e.g. training examples per task).
  TaskMixture(uint64_t seed, std::vector<int64_t> weights, bool round_robin = false);
  int32_t task_of(int64_t step, int64_t slot) const;
  int32_t num_tasks() const { return static_cast<int32_t>(cumulative_.size()); }

 private:
  uint64_t seed_;
  std::vector<uint64_t> cumulative_;  // inclusive prefix sums
  std::vector<int32_t> turns_;        // round robin: the tasks with a positive weight; else empty
};

// One rank's items in one evaluation round: [begin, end); empty() = nothing for this rank in
// this round (it still takes part in the round's collectives).
struct EvalBatch {
  int64_t begin = 0, end = 0;
  bool empty() const { return end <= begin; }
  int64_t size() const { return end > begin ? end - begin : 0; }
};

class EvalShard {
 public:
  // `num_items` >= 0 items over `world_size` ranks, at most `batch` >= 1 per rank per round.
  EvalShard(int64_t num_items, int world_size, int rank, int64_t batch);
  // Same on every rank: ceil(num_items / (world_size * batch)).
  int64_t rounds() const { return rounds_; }
  // This rank's items in round `round` (0 <= round < rounds()); may be empty.
  EvalBatch batch(int64_t round) const;
  // Items this rank gets over all rounds.
  int64_t local_items() const;

 private:
  int64_t num_items_;
  int world_size_, rank_;
  int64_t batch_;
  int64_t rounds_;
};

}  // namespace pft
