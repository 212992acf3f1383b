// Multi-task schedules (contract: control/schedule.h).
#include "control/schedule.h"

#include <boost/algorithm/string/trim.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>

#include "config/schema.h"
#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = {
      "loss",     "perplexity",          "exact_match",         "accuracy",
      "worst_template_loss", "worst_template_exact_match", "worst_template_accuracy"};
  return names;
}

std::string trim(std::string_view s) { return boost::algorithm::trim_copy(std::string(s)); }

std::vector<double> uniform(const std::vector<uint8_t>& in_phase) {
  const auto n = static_cast<double>(std::count(in_phase.begin(), in_phase.end(), 1));
  std::vector<double> out(in_phase.size(), 0.0);
  for (size_t k = 0; k < in_phase.size(); ++k)
    if (in_phase[k]) out[k] = 1.0 / n;
  return out;
}

}  // namespace

std::optional<MetricRef> parse_metric_ref(std::string_view text,
                                          const std::vector<std::string>& tasks,
                                          std::string* error) {
  const std::string trimmed = trim(text);
  text = trimmed;
  MetricRef ref;
  const size_t dot = text.rfind('.');
  ref.metric = std::string(dot == std::string_view::npos ? text : text.substr(dot + 1));
  if (dot != std::string_view::npos) ref.task = std::string(text.substr(0, dot));
  const auto& names = metric_names();
  if (std::find(names.begin(), names.end(), ref.metric) == names.end()) {
    const std::string close = config::suggest(ref.metric, names);
    *error = fmt::format("`{}` is not a held-out metric ({}){}", ref.metric,
                         fmt::join(names, ", "),
                         close.empty() ? "" : fmt::format("; did you mean `{}`?", close));
    return std::nullopt;
  }
  if (dot != std::string_view::npos && ref.task.empty()) {
    *error = fmt::format("`{}` has an empty task name; write `task.metric` or just `metric` (the "
                         "mean over tasks)", text);
    return std::nullopt;
  }
  if (!ref.task.empty() && !tasks.empty() &&
      std::find(tasks.begin(), tasks.end(), ref.task) == tasks.end()) {
    const std::string close = config::suggest(ref.task, tasks);
    *error = fmt::format("no task `{}` in data.tasks ({}){}", ref.task, fmt::join(tasks, ", "),
                         close.empty() ? "" : fmt::format("; did you mean `{}`?", close));
    return std::nullopt;
  }
  return ref;
}

std::optional<MetricCondition> parse_metric_condition(std::string_view text,
                                                      const std::vector<std::string>& tasks,
                                                      std::string* error) {
  const size_t at = text.find_first_of("<>");
  if (at == std::string_view::npos) {
    *error = fmt::format("`{}` is not a condition; write `[task.]metric OP value` with OP one of "
                         ">=, >, <=, < (e.g. `max_digit.exact_match >= 0.9`)", text);
    return std::nullopt;
  }
  MetricCondition c;
  c.text = trim(text);
  const size_t len = at + 1 < text.size() && text[at + 1] == '=' ? 2 : 1;
  c.op = std::string(text.substr(at, len));
  std::optional<MetricRef> ref = parse_metric_ref(text.substr(0, at), tasks, error);
  if (!ref) return std::nullopt;
  c.ref = *ref;
  const std::string rhs = trim(text.substr(at + len));
  const auto [end, ec] = std::from_chars(rhs.data(), rhs.data() + rhs.size(), c.value);
  if (rhs.empty() || ec != std::errc() || end != rhs.data() + rhs.size()) {
    *error = fmt::format("`{}` after `{}` is not a number", rhs, c.op);
    return std::nullopt;
  }
  return c;
}

bool MetricCondition::holds(const MetricTable& table) const {
  const auto it = table.find(ref.key());
  if (it == table.end()) return false;
  const double v = it->second;
  if (op == ">=") return v >= value;
  if (op == ">") return v > value;
  if (op == "<=") return v <= value;
  return v < value;
}

bool lower_is_better(const std::string& metric) {
  return metric == "loss" || metric == "perplexity" || metric == "worst_template_loss";
}

bool higher_is_better(const std::string& metric, const std::string& mode) {
  if (mode == "max") return true;
  if (mode == "min") return false;
  return !lower_is_better(metric);
}

std::vector<double> clamp_shares(std::vector<double> shares, const std::vector<uint8_t>& in_phase,
                                 double floor, double ceiling) {
  const auto n = static_cast<double>(std::count(in_phase.begin(), in_phase.end(), 1));
  if (n == 0) return shares;
  if (floor * n > 1.0 + 1e-12 || ceiling * n < 1.0 - 1e-12) return uniform(in_phase);
  std::vector<uint8_t> fixed(shares.size(), 0);
  for (size_t round = 0; round <= shares.size(); ++round) {
    double fixed_mass = 0.0, free_sum = 0.0, free_n = 0.0;
    for (size_t k = 0; k < shares.size(); ++k) {
      if (!in_phase[k]) continue;
      if (fixed[k]) fixed_mass += shares[k];
      else {
        free_sum += shares[k];
        free_n += 1.0;
      }
    }
    if (free_n == 0) break;
    const double free_mass = std::max(0.0, 1.0 - fixed_mass);
    bool changed = false;
    for (size_t k = 0; k < shares.size(); ++k) {
      if (!in_phase[k] || fixed[k]) continue;
      shares[k] = free_sum > 0 ? shares[k] / free_sum * free_mass : free_mass / free_n;
    }
    for (size_t k = 0; k < shares.size(); ++k) {
      if (!in_phase[k] || fixed[k]) continue;
      if (shares[k] < floor) {
        shares[k] = floor;
        fixed[k] = 1;
        changed = true;
      } else if (shares[k] > ceiling) {
        shares[k] = ceiling;
        fixed[k] = 1;
        changed = true;
      }
    }
    if (!changed) break;
  }
  for (size_t k = 0; k < shares.size(); ++k)
    if (!in_phase[k]) shares[k] = 0.0;
  return shares;
}

std::vector<double> adaptive_shares(const std::vector<double>& old_shares,
                                    const std::vector<double>& scores,
                                    const std::vector<uint8_t>& in_phase, double floor,
                                    double ceiling, double smoothing) {
  PFT_ASSERT(scores.size() == in_phase.size(), "adaptive_shares: one score per task");
  double known = 0.0, known_n = 0.0;
  for (size_t k = 0; k < scores.size(); ++k)
    if (in_phase[k] && std::isfinite(scores[k])) {
      known += std::max(0.0, scores[k]);
      known_n += 1.0;
    }
  const double fill = known_n > 0 ? known / known_n : 1.0;
  std::vector<double> target(scores.size(), 0.0);
  double total = 0.0;
  for (size_t k = 0; k < scores.size(); ++k) {
    if (!in_phase[k]) continue;
    target[k] = std::isfinite(scores[k]) ? std::max(0.0, scores[k]) : fill;
    total += target[k];
  }
  if (total > 0)
    for (double& t : target) t /= total;
  else
    target = uniform(in_phase);
  target = clamp_shares(std::move(target), in_phase, floor, ceiling);
  const std::vector<double> old = old_shares.empty() ? uniform(in_phase) : old_shares;
  PFT_ASSERT(old.size() == in_phase.size(), "adaptive_shares: one old share per task");
  std::vector<double> out(scores.size(), 0.0);
  double sum = 0.0;
  for (size_t k = 0; k < scores.size(); ++k) {
    if (!in_phase[k]) continue;
    out[k] = smoothing * old[k] + (1.0 - smoothing) * target[k];
    sum += out[k];
  }
  for (double& s : out) s = sum > 0 ? s / sum : 0.0;
  return out;
}

std::vector<PhaseSpec> resolve_phases(const Config& c, const std::vector<std::string>& tasks,
                                      const std::vector<int64_t>& examples,
                                      int64_t tokens_per_step) {
  std::vector<PhaseSpec> out;
  const size_t n = tasks.size();
  if (c.schedule.phases.empty()) {
    PhaseSpec p;
    p.name = "main";
    p.in_phase.assign(n, 1);
    p.mixing = MixingOptions{c.data.mixing, c.data.mixing_cap, c.data.mixing_temperature,
                             c.data.mixing_weights};
    (void)mixture_weights(examples, p.mixing);  // throws naming data.mixing*
    out.push_back(std::move(p));
    return out;
  }
  for (size_t i = 0; i < c.schedule.phases.size(); ++i) {
    const PhaseConfig& pc = c.schedule.phases[i];
    const std::string at = fmt::format("schedule.phases[{}]", i);
    const auto fail = [&](const std::string& key, const std::string& what) {
      const std::string path = at + (key.empty() ? "" : "." + key);
      config::fail(c.source_of(c.sources.count(path) ? path : at), path, what);
    };
    PhaseSpec p;
    p.name = pc.name.empty() ? fmt::format("phase{}", i) : pc.name;
    p.in_phase.assign(n, pc.tasks.empty() ? 1 : 0);
    std::vector<size_t> order;  // the phase's tasks, in its `tasks` order
    for (const std::string& t : pc.tasks) {
      const auto it = std::find(tasks.begin(), tasks.end(), t);
      if (it == tasks.end()) {
        const std::string close = config::suggest(t, tasks);
        fail("tasks", fmt::format("no task `{}` in data.tasks ({}){}", t, fmt::join(tasks, ", "),
                                  close.empty() ? "" : fmt::format("; did you mean `{}`?", close)));
      }
      const auto k = static_cast<size_t>(it - tasks.begin());
      if (p.in_phase[k]) fail("tasks", fmt::format("task `{}` is listed twice", t));
      p.in_phase[k] = 1;
      order.push_back(k);
    }
    if (pc.tasks.empty())
      for (size_t k = 0; k < n; ++k) order.push_back(k);
    std::vector<int64_t> phase_examples(n, 0);
    for (size_t k = 0; k < n; ++k)
      if (p.in_phase[k]) phase_examples[k] = examples[k];
    if (std::all_of(phase_examples.begin(), phase_examples.end(), [](int64_t e) { return e == 0; }))
      fail("tasks", "none of the phase's tasks has training examples");
    p.adaptive = pc.mixing == "adaptive";
    p.mixing.strategy = p.adaptive ? "uniform" : pc.mixing;
    p.mixing.cap = pc.mixing_cap;
    p.mixing.temperature = pc.mixing_temperature;
    if (pc.mixing == "fixed") {
      if (pc.mixing_weights.size() != order.size())
        fail("mixing_weights", fmt::format("{} weight(s) for the phase's {} task(s); give one per "
                                           "task, in the order of its `tasks` (else data.tasks)",
                                           pc.mixing_weights.size(), order.size()));
      p.mixing.weights.assign(n, 0.0);
      bool any = false;
      for (size_t j = 0; j < order.size(); ++j) {
        const double w = pc.mixing_weights[j];
        if (!(w >= 0.0) || !std::isfinite(w))
          fail("mixing_weights", fmt::format("weight {} of task `{}` must be a finite number >= 0",
                                             w, tasks[order[j]]));
        p.mixing.weights[order[j]] = w;
        any = any || (w > 0 && examples[order[j]] > 0);
      }
      if (!any) fail("mixing_weights", "no task with training examples has a positive weight");
    }
    const int64_t by_tokens =
        pc.tokens > 0 ? (pc.tokens + tokens_per_step - 1) / tokens_per_step : 0;
    p.max_steps = pc.steps > 0 && by_tokens > 0 ? std::min(pc.steps, by_tokens)
                                                : std::max(pc.steps, by_tokens);
    if (!pc.until.empty()) {
      std::string error;
      p.until = parse_metric_condition(pc.until, tasks, &error);
      if (!p.until) fail("until", error);
    }
    if (p.max_steps == 0 && !p.until && i + 1 < c.schedule.phases.size())
      fail("", fmt::format("phase `{}` never ends, so the phases after it never run; give it "
                           "steps, tokens or until", p.name));
    if (p.adaptive) {
      p.adaptive_metric = pc.adaptive_metric;
      p.floor = pc.adaptive_floor;
      p.ceiling = pc.adaptive_ceiling;
      p.smoothing = pc.adaptive_smoothing;
      const auto m = static_cast<double>(order.size());
      if (p.floor * m > 1.0 + 1e-12)
        fail("adaptive_floor", fmt::format("a floor of {} for {} tasks exceeds 1 in all",
                                           p.floor, order.size()));
      if (p.ceiling * m < 1.0 - 1e-12)
        fail("adaptive_ceiling", fmt::format("a ceiling of {} for {} tasks cannot add up to 1",
                                             p.ceiling, order.size()));
    }
    out.push_back(std::move(p));
  }
  return out;
}

Schedule::Schedule(std::vector<PhaseSpec> phases, std::vector<int64_t> examples,
                   std::vector<std::string> tasks, uint64_t seed)
    : phases_(std::move(phases)), examples_(std::move(examples)), tasks_(std::move(tasks)),
      seed_(seed) {
  PFT_ASSERT(!phases_.empty(), "a schedule needs a phase");
  enter_phase(0, 0, "start");
}

void Schedule::set_state(const ScheduleState& s) {
  PFT_ASSERT(s.phase >= 0 && static_cast<size_t>(s.phase) < phases_.size(),
             "schedule state names no phase");
  state_ = s;
}

std::vector<int64_t> Schedule::weights() const {
  const PhaseSpec& p = phase();
  if (!p.adaptive) {
    std::vector<int64_t> masked(examples_.size(), 0);
    for (size_t k = 0; k < masked.size(); ++k)
      if (p.in_phase[k]) masked[k] = examples_[k];
    return mixture_weights(masked, p.mixing);
  }
  std::vector<int64_t> w(examples_.size(), 0);
  for (size_t k = 0; k < w.size(); ++k)
    if (state_.shares[k] > 0 && examples_[k] > 0)
      w[k] = std::max<int64_t>(1, std::llround(state_.shares[k] * (1 << 30)));
  return w;
}

std::vector<double> Schedule::shares() const {
  const std::vector<int64_t> w = weights();
  const double total = static_cast<double>(std::accumulate(w.begin(), w.end(), int64_t{0}));
  std::vector<double> out;
  for (int64_t x : w) out.push_back(total > 0 ? static_cast<double>(x) / total : 0.0);
  return out;
}

std::optional<std::vector<int32_t>> Schedule::plan(int64_t step, int64_t slots) {
  for (;;) {
    const PhaseSpec& p = phase();
    if (p.max_steps == 0 || step < state_.phase_start + p.max_steps) break;
    if (static_cast<size_t>(state_.phase) + 1 == phases_.size()) return std::nullopt;
    enter_phase(state_.phase + 1, state_.phase_start + p.max_steps, "steps");
  }
  const TaskMixture mixture(seed_, weights(), phase().mixing.strategy == "round_robin");
  std::vector<int32_t> out(static_cast<size_t>(slots));
  for (int64_t j = 0; j < slots; ++j) out[static_cast<size_t>(j)] = mixture.task_of(step, j);
  return out;
}

void Schedule::on_eval(int64_t steps_done, const MetricTable& table, bool* finished) {
  *finished = false;
  state_.last_eval = table;
  const PhaseSpec& p = phase();
  if (p.until && p.until->holds(table)) {
    if (static_cast<size_t>(state_.phase) + 1 == phases_.size()) {
      *finished = true;
      return;
    }
    enter_phase(state_.phase + 1, steps_done, p.until->text);
    return;
  }
  if (p.adaptive) {
    update_adaptive();
    note_weights(steps_done, "adaptive");
  }
}

void Schedule::enter_phase(int32_t phase, int64_t start, const std::string& reason) {
  state_.phase = phase;
  state_.phase_start = start;
  state_.shares.clear();
  if (phases_[static_cast<size_t>(phase)].adaptive) {
    if (state_.last_eval.empty()) state_.shares = uniform(this->phase().in_phase);
    else update_adaptive();
  }
  ScheduleEvent e;
  e.kind = ScheduleEvent::Kind::kPhase;
  e.step = start;
  e.phase = phase;
  e.reason = reason;
  events_.push_back(std::move(e));
  note_weights(start, reason);
}

void Schedule::update_adaptive() {
  const PhaseSpec& p = phase();
  std::vector<double> scores(tasks_.size(), std::numeric_limits<double>::quiet_NaN());
  for (size_t k = 0; k < tasks_.size(); ++k) {
    const auto it = state_.last_eval.find(tasks_[k] + "." + p.adaptive_metric);
    if (it == state_.last_eval.end()) continue;
    scores[k] = p.adaptive_metric == "loss" ? it->second : 1.0 - it->second;
  }
  state_.shares = adaptive_shares(state_.shares, scores, p.in_phase, p.floor, p.ceiling,
                                  p.smoothing);
}

void Schedule::note_weights(int64_t step, const std::string& reason) {
  std::vector<double> s = shares();
  ScheduleEvent e;
  e.kind = ScheduleEvent::Kind::kWeights;
  e.step = step;
  e.phase = state_.phase;
  e.reason = reason;
  e.shares = std::move(s);
  events_.push_back(std::move(e));
}

std::vector<ScheduleEvent> Schedule::take_events() { return std::exchange(events_, {}); }

EarlyStopping::EarlyStopping(MetricRef ref, bool higher_is_better, int64_t patience,
                             double min_delta)
    : enabled_(true),
      ref_(std::move(ref)),
      higher_(higher_is_better),
      patience_(patience),
      min_delta_(min_delta) {}

bool EarlyStopping::on_eval(int64_t step, const MetricTable& table) {
  if (!enabled_) return false;
  const auto it = table.find(ref_.key());
  if (it == table.end()) return false;
  const double v = it->second;
  const bool improved = !state_.has_best ||
                        (higher_ ? v > state_.best + min_delta_ : v < state_.best - min_delta_);
  if (improved) {
    state_.best = v;
    state_.has_best = true;
    state_.best_step = step;
    state_.bad_evals = 0;
    return false;
  }
  ++state_.bad_evals;
  return state_.bad_evals >= patience_;
}

}  // namespace pft
