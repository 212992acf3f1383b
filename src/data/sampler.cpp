// Task sample streams, the task mixture, evaluation sharding (contract: data/sampler.h).
#include "data/sampler.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/format.h"

namespace pft {

uint64_t derive_seed(uint64_t seed, std::string_view purpose, std::string_view name, uint64_t a,
                     uint64_t b) {
  // Framed little-endian fields, so different (purpose, name) splits never collide by
  // concatenation.
  std::string buf;
  const auto put64 = [&buf](uint64_t v) {
    for (int i = 0; i < 8; ++i) buf.push_back(static_cast<char>(v >> (8 * i)));
  };
  put64(seed);
  put64(purpose.size());
  buf.append(purpose);
  put64(name.size());
  buf.append(name);
  put64(a);
  put64(b);
  return XXH3_64bits(buf.data(), buf.size());
}

uint64_t uniform_below(std::mt19937_64& g, uint64_t n) {
  PFT_ASSERT(n >= 1, "uniform_below needs n >= 1");
  // Lemire, "Fast random integer generation in an interval" (2019): multiply-shift, rejecting
  // the few low products that would bias the result.
  unsigned __int128 m = static_cast<unsigned __int128>(g()) * n;
  auto low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(g()) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

std::vector<uint32_t> seeded_permutation(uint64_t n, uint64_t seed) {
  PFT_ASSERT(n <= std::numeric_limits<uint32_t>::max(), "permutation too large for 32-bit indices");
  std::vector<uint32_t> p(n);
  std::iota(p.begin(), p.end(), uint32_t{0});
  std::mt19937_64 g(seed);
  for (uint64_t i = n; i > 1; --i) std::swap(p[i - 1], p[uniform_below(g, i)]);
  return p;
}

// ---- TaskSampler ----------------------------------------------------------------------------

TaskSampler::TaskSampler(uint64_t seed, std::string task, int64_t num_examples,
                         int32_t num_templates)
    : seed_(seed),
      task_(std::move(task)),
      num_examples_(num_examples),
      num_templates_(num_templates) {
  if (num_examples_ <= 0 || num_templates_ <= 0)
    throw InputError(
        fmt::format("task '{}': nothing to sample: {} training examples under {} "
                    "templates",
                    task_, num_examples_, num_templates_));
  if (num_examples_ > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
    throw InputError(fmt::format("task '{}': {} training examples; at most 2^32 - 1 per task",
                                 task_, num_examples_));
}

const std::vector<uint32_t>& TaskSampler::permutation(int64_t epoch) {
  for (Cached& c : cache_)
    if (c.epoch == epoch) return c.perm;
  Cached& c = cache_[next_victim_];
  next_victim_ ^= 1;
  c.perm = seeded_permutation(static_cast<uint64_t>(num_examples_),
                              derive_seed(seed_, "order", task_, static_cast<uint64_t>(epoch)));
  c.epoch = epoch;
  return c.perm;
}

SampleRef TaskSampler::at(int64_t g) {
  PFT_ASSERT(g >= 0, "negative sample index");
  SampleRef r;
  r.sample = g;
  r.epoch = g / num_examples_;
  r.example = permutation(r.epoch)[static_cast<size_t>(g % num_examples_)];
  r.slot = static_cast<int32_t>((r.example + r.epoch) % num_templates_);
  return r;
}

// ---- TaskMixture ----------------------------------------------------------------------------

std::vector<int64_t> mixture_weights(const std::vector<int64_t>& examples,
                                     const MixingOptions& options) {
  std::vector<int64_t> w(examples.size(), 0);
  if (options.strategy == "proportional") {
    for (size_t k = 0; k < examples.size(); ++k)
      w[k] = options.cap > 0 ? std::min(examples[k], options.cap) : examples[k];
  } else if (options.strategy == "uniform" || options.strategy == "round_robin") {
    for (size_t k = 0; k < examples.size(); ++k) w[k] = examples[k] > 0 ? 1 : 0;
  } else if (options.strategy == "fixed") {
    if (options.weights.size() != examples.size())
      throw InputError(fmt::format("data.mixing_weights: {} weight(s) for {} task(s); give one per "
                                   "task, in data.tasks order",
                                   options.weights.size(), examples.size()));
    double top = 0.0;
    for (size_t k = 0; k < examples.size(); ++k) {
      if (!(options.weights[k] >= 0.0) || !std::isfinite(options.weights[k]))
        throw InputError(fmt::format("data.mixing_weights: weight {} of task {} must be a finite "
                                     "number >= 0",
                                     options.weights[k], k + 1));
      if (examples[k] > 0) top = std::max(top, options.weights[k]);
    }
    for (size_t k = 0; k < examples.size(); ++k)
      if (examples[k] > 0 && options.weights[k] > 0)
        w[k] = std::max<int64_t>(1, std::llround(options.weights[k] / top * (1 << 30)));
  } else if (options.strategy == "temperature") {
    PFT_ASSERT(options.temperature > 0, "data.mixing_temperature must be positive");
    std::vector<double> real(examples.size(), 0.0);
    double top = 0.0;
    for (size_t k = 0; k < examples.size(); ++k) {
      if (examples[k] <= 0) continue;
      real[k] = std::pow(static_cast<double>(examples[k]), 1.0 / options.temperature);
      top = std::max(top, real[k]);
    }
    for (size_t k = 0; k < examples.size(); ++k)
      if (real[k] > 0) w[k] = std::max<int64_t>(1, std::llround(real[k] / top * (1 << 30)));
  } else {
    throw InputError(fmt::format("data.mixing: unknown strategy `{}`; use proportional, "
                                 "temperature, uniform, fixed or round_robin",
                                 options.strategy));
  }
  int64_t total = 0;
  for (int64_t x : w) total += x;
  if (total == 0) throw InputError("data.mixing: no task has training examples to draw from");
  return w;
}

TaskMixture::TaskMixture(uint64_t seed, std::vector<int64_t> weights, bool round_robin)
    : seed_(seed) {
  uint64_t total = 0;
  for (size_t k = 0; k < weights.size(); ++k) {
    PFT_ASSERT(weights[k] >= 0, "negative mixture weight");
    total += static_cast<uint64_t>(weights[k]);
    cumulative_.push_back(total);
    if (round_robin && weights[k] > 0) turns_.push_back(static_cast<int32_t>(k));
  }
  if (total == 0) throw InputError("the task mixture has no task with training examples");
}

int32_t TaskMixture::task_of(int64_t step, int64_t slot) const {
  if (!turns_.empty())
    return turns_[static_cast<size_t>(step % static_cast<int64_t>(turns_.size()))];
  std::mt19937_64 g(
      derive_seed(seed_, "mixture", "", static_cast<uint64_t>(step), static_cast<uint64_t>(slot)));
  const uint64_t x = uniform_below(g, cumulative_.back());
  const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), x);
  return static_cast<int32_t>(it - cumulative_.begin());
}

// ---- EvalShard ------------------------------------------------------------------------------

EvalShard::EvalShard(int64_t num_items, int world_size, int rank, int64_t batch)
    : num_items_(num_items), world_size_(world_size), rank_(rank), batch_(batch) {
  PFT_ASSERT(num_items >= 0 && world_size >= 1 && rank >= 0 && rank < world_size && batch >= 1,
             "EvalShard: bad arguments");
  const int64_t per_round = static_cast<int64_t>(world_size) * batch;
  rounds_ = (num_items + per_round - 1) / per_round;
}

EvalBatch EvalShard::batch(int64_t round) const {
  PFT_ASSERT(round >= 0 && round < rounds_, "EvalShard: round out of range");
  const int64_t per_round = static_cast<int64_t>(world_size_) * batch_;
  const int64_t begin = std::min(num_items_, round * per_round + rank_ * batch_);
  const int64_t end = std::min(num_items_, begin + batch_);
  return EvalBatch{begin, end};
}

int64_t EvalShard::local_items() const {
  int64_t n = 0;
  for (int64_t k = 0; k < rounds_; ++k) n += batch(k).size();
  return n;
}

}  // namespace pft
