// The multi-task schedule (control/schedule.h), without communication: metric conditions, the
// adaptive mixture against hand-computed shares, phases ending by steps and by a metric
// condition, plans as a function of the state (determinism across reruns and resumes), early
// stopping, and the errors a bad schedule gets.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "config/config.h"
#include "control/schedule.h"
#include "core/error.h"

namespace pft {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

void expect_near(const std::vector<double>& got, const std::vector<double>& want,
                 double tol = 1e-9) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], want[k], tol) << "task " << k;
}

const std::vector<std::string> kTasks = {"a", "b", "c"};

Config schedule_config(const std::string& phases) {
  return parse_config(
      "train: {steps: 100, global_batch_size: 4, lr: 0.001}\n"
      "data: {source: tasks, seq_len: 8, tasks: [a.yaml, b.yaml, c.yaml]}\n"
      "model: {max_seq_len: 8}\n"
      "schedule:\n  phases:\n" + phases,
      "schedule.yaml");
}

TEST(Schedule, ParsesMetricConditions) {
  std::string error;
  const auto c = parse_metric_condition("b.exact_match >= 0.9", kTasks, &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(c->ref.task, "b");
  EXPECT_EQ(c->ref.metric, "exact_match");
  EXPECT_EQ(c->op, ">=");
  EXPECT_DOUBLE_EQ(c->value, 0.9);
  EXPECT_TRUE(c->holds({{"b.exact_match", 0.9}}));
  EXPECT_FALSE(c->holds({{"b.exact_match", 0.89}}));
  EXPECT_FALSE(c->holds({{"exact_match", 1.0}}));  // another key: not evaluated

  const auto mean = parse_metric_condition("loss<2", kTasks, &error);
  ASSERT_TRUE(mean) << error;
  EXPECT_TRUE(mean->ref.task.empty());
  EXPECT_TRUE(mean->holds({{"loss", 1.5}}));
  EXPECT_FALSE(mean->holds({{"loss", 2.0}}));

  EXPECT_FALSE(parse_metric_condition("b.exact_mach >= 1", kTasks, &error));
  EXPECT_NE(error.find("did you mean `exact_match`"), std::string::npos) << error;
  EXPECT_FALSE(parse_metric_condition("d.loss < 1", kTasks, &error));
  EXPECT_NE(error.find("no task `d`"), std::string::npos) << error;
  EXPECT_FALSE(parse_metric_condition("exact_match 0.9", kTasks, &error));
  EXPECT_NE(error.find("not a condition"), std::string::npos) << error;
  EXPECT_FALSE(parse_metric_condition("loss <= x", kTasks, &error));
  EXPECT_NE(error.find("not a number"), std::string::npos) << error;

  EXPECT_TRUE(higher_is_better("exact_match", "auto"));
  EXPECT_FALSE(higher_is_better("loss", "auto"));
  EXPECT_TRUE(higher_is_better("loss", "max"));
}

TEST(Schedule, AdaptiveSharesMatchHandComputedValues) {
  const std::vector<uint8_t> all = {1, 1, 1};
  // Losses 2, 1, 1 -> target 0.5, 0.25, 0.25; the floor 0.3 lifts b and c, a gets the remaining
  // 0.4; smoothing 0.5 from uniform: 0.5/3 + 0.5 x (0.4, 0.3, 0.3).
  expect_near(adaptive_shares({}, {2, 1, 1}, all, 0.3, 0.6, 0.5),
              {0.5 / 3 + 0.2, 0.5 / 3 + 0.15, 0.5 / 3 + 0.15});
  // The ceiling: 0.8, 0.1, 0.1 -> a capped at 0.5, b and c share the other half.
  expect_near(clamp_shares({0.8, 0.1, 0.1}, all, 0.0, 0.5), {0.5, 0.25, 0.25});
  // Gaps 1 - exact match; a task without a score gets the mean of the others' (0.3); no
  // smoothing.
  expect_near(adaptive_shares({}, {0.1, 0.5, kNaN}, all, 0.0, 1.0, 0.0),
              {0.1 / 0.9, 0.5 / 0.9, 0.3 / 0.9});
  // A task outside the phase gets nothing, whatever its score.
  expect_near(adaptive_shares({}, {1, 5, 3}, {1, 0, 1}, 0.0, 1.0, 0.0), {0.25, 0.0, 0.75});
  // Smoothing from the old shares: 0.75 x old + 0.25 x target.
  expect_near(adaptive_shares({0.6, 0.2, 0.2}, {1, 1, 2}, all, 0.0, 1.0, 0.75),
              {0.75 * 0.6 + 0.0625, 0.75 * 0.2 + 0.0625, 0.75 * 0.2 + 0.125});
  // Bounds that cannot hold (3 x 0.4 > 1): uniform.
  expect_near(clamp_shares({0.8, 0.1, 0.1}, all, 0.4, 1.0), {1.0 / 3, 1.0 / 3, 1.0 / 3});
}

const char* kThreePhases =
    "    - {name: warm, tasks: [a, b], mixing: uniform, steps: 10}\n"
    "    - {name: cond, mixing: temperature, mixing_temperature: 2, until: 'b.exact_match >= 0.5'}\n"
    "    - {name: ada, mixing: adaptive, adaptive_floor: 0.1, adaptive_ceiling: 0.8, "
    "adaptive_smoothing: 0.5}\n";

TEST(Schedule, PhasesEndByStepsAndByAMetricCondition) {
  const Config config = schedule_config(kThreePhases);
  const std::vector<int64_t> examples = {100, 400, 900};
  Schedule s(resolve_phases(config, kTasks, examples, 32), examples, kTasks, 7);
  // Phase warm: uniform over a and b only.
  expect_near(s.shares(), {0.5, 0.5, 0.0});
  for (int64_t step = 0; step < 10; ++step) {
    const auto plan = s.plan(step, 8);
    ASSERT_TRUE(plan);
    for (int32_t t : *plan) EXPECT_NE(t, 2) << "task c planned in phase warm, step " << step;
  }
  // Step 10 starts phase cond: temperature 2 over 100, 400, 900 examples -> 10 : 20 : 30.
  ASSERT_TRUE(s.plan(10, 8));
  EXPECT_EQ(s.state().phase, 1);
  EXPECT_EQ(s.state().phase_start, 10);
  expect_near(s.shares(), {1.0 / 6, 2.0 / 6, 3.0 / 6}, 1e-8);
  std::vector<ScheduleEvent> events = s.take_events();
  ASSERT_GE(events.size(), 4u);  // start (phase + weights), steps (phase + weights)
  EXPECT_EQ(events[2].kind, ScheduleEvent::Kind::kPhase);
  EXPECT_EQ(events[2].step, 10);
  EXPECT_EQ(events[2].reason, "steps");

  bool finished = true;
  s.on_eval(20, {{"b.exact_match", 0.4}}, &finished);
  EXPECT_FALSE(finished);
  EXPECT_EQ(s.state().phase, 1);  // 0.4 < 0.5: stays
  s.on_eval(30, {{"b.exact_match", 0.6}, {"a.loss", 2.0}, {"b.loss", 1.0}}, &finished);
  EXPECT_FALSE(finished);
  EXPECT_EQ(s.state().phase, 2);
  EXPECT_EQ(s.state().phase_start, 30);
  // Adaptive from the evaluation that ended the phase: losses 2, 1 and c's missing -> the mean
  // 1.5; target (2, 1, 1.5) / 4.5, smoothed from uniform.
  expect_near(s.shares(), {0.5 / 3 + 0.5 * 2 / 4.5, 0.5 / 3 + 0.5 * 1 / 4.5, 0.5 / 3 + 0.5 * 1.5 / 4.5},
              1e-8);
  events = s.take_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].reason, "b.exact_match >= 0.5");
  // The next evaluation moves the shares again: smoothing 0.5 towards (1, 1, 1) / 3.
  const std::vector<double> before = s.state().shares;
  s.on_eval(40, {{"a.loss", 1.0}, {"b.loss", 1.0}, {"c.loss", 1.0}}, &finished);
  std::vector<double> want;
  for (double x : before) want.push_back(0.5 * x + 0.5 / 3);
  expect_near(s.state().shares, want);
  ASSERT_EQ(s.take_events().size(), 1u);  // the new mixture
}

TEST(Schedule, PlansAreAFunctionOfTheState) {
  const Config config = schedule_config(kThreePhases);
  const std::vector<int64_t> examples = {100, 400, 900};
  Schedule a(resolve_phases(config, kTasks, examples, 32), examples, kTasks, 7);
  Schedule b(resolve_phases(config, kTasks, examples, 32), examples, kTasks, 7);
  bool finished = false;
  std::vector<std::vector<int32_t>> plans_a;
  ScheduleState at_25;
  for (int64_t step = 0; step < 50; ++step) {
    if (step == 25) at_25 = a.state();
    if (step == 30) a.on_eval(30, {{"b.exact_match", 0.7}, {"a.loss", 3.0}}, &finished);
    plans_a.push_back(*a.plan(step, 16));
  }
  // The same schedule run again plans the same tasks.
  for (int64_t step = 0; step < 50; ++step) {
    if (step == 30) b.on_eval(30, {{"b.exact_match", 0.7}, {"a.loss", 3.0}}, &finished);
    EXPECT_EQ(*b.plan(step, 16), plans_a[static_cast<size_t>(step)]) << "step " << step;
  }
  // A schedule resumed from the state of step 25 plans what the uninterrupted one did.
  Schedule resumed(resolve_phases(config, kTasks, examples, 32), examples, kTasks, 7);
  resumed.set_state(at_25);
  for (int64_t step = 25; step < 50; ++step) {
    if (step == 30) resumed.on_eval(30, {{"b.exact_match", 0.7}, {"a.loss", 3.0}}, &finished);
    EXPECT_EQ(*resumed.plan(step, 16), plans_a[static_cast<size_t>(step)]) << "step " << step;
  }
  // Another seed plans otherwise.
  Schedule other(resolve_phases(config, kTasks, examples, 32), examples, kTasks, 8);
  int differ = 0;
  for (int64_t step = 0; step < 10; ++step) differ += *other.plan(step, 16) != plans_a[static_cast<size_t>(step)];
  EXPECT_GT(differ, 0);
}

TEST(Schedule, TheLastPhaseEndsTheRun) {
  const Config config = schedule_config(
      "    - {name: one, steps: 3}\n"
      "    - {name: two, tokens: 40}\n");  // 40 tokens at 32 per step: 2 steps
  const std::vector<int64_t> examples = {1, 1, 1};
  Schedule s(resolve_phases(config, kTasks, examples, 32), examples, kTasks, 1);
  for (int64_t step = 0; step < 5; ++step) EXPECT_TRUE(s.plan(step, 2)) << step;
  EXPECT_FALSE(s.plan(5, 2));

  const Config until = schedule_config("    - {until: 'loss <= 1'}\n");
  Schedule u(resolve_phases(until, kTasks, examples, 32), examples, kTasks, 1);
  bool finished = false;
  u.on_eval(4, {{"loss", 1.5}}, &finished);
  EXPECT_FALSE(finished);
  u.on_eval(8, {{"loss", 1.0}}, &finished);
  EXPECT_TRUE(finished);
}

TEST(Schedule, EarlyStoppingWaitsPatienceEvaluations) {
  EarlyStopping es(MetricRef{"", "loss"}, /*higher_is_better=*/false, /*patience=*/2, 0.01);
  EXPECT_FALSE(es.on_eval(0, {{"loss", 3.0}}));
  EXPECT_FALSE(es.on_eval(2, {{"loss", 2.5}}));
  EXPECT_FALSE(es.on_eval(4, {{"loss", 2.495}}));  // within min_delta: no improvement (1)
  EXPECT_FALSE(es.on_eval(5, {{"exact_match", 1.0}}));  // no loss in the table: not counted
  EXPECT_TRUE(es.on_eval(6, {{"loss", 2.6}}));        // (2): stop
  EXPECT_EQ(es.state().best_step, 2);
  EXPECT_DOUBLE_EQ(es.state().best, 2.5);

  EarlyStopping up(MetricRef{"b", "exact_match"}, true, 1, 0.0);
  EXPECT_FALSE(up.on_eval(0, {{"b.exact_match", 0.1}}));
  EXPECT_FALSE(up.on_eval(1, {{"b.exact_match", 0.2}}));
  EXPECT_TRUE(up.on_eval(2, {{"b.exact_match", 0.2}}));
}

TEST(Schedule, BadSchedulesNameTheKey) {
  const std::vector<int64_t> examples = {1, 1, 1};
  const auto message = [&](const std::string& phases) {
    try {
      (void)resolve_phases(schedule_config(phases), kTasks, examples, 32);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = message("    - {tasks: [a, bb], steps: 1}\n    - {}\n");
  EXPECT_NE(m.find("schedule.phases[0].tasks"), std::string::npos) << m;
  EXPECT_NE(m.find("did you mean `b`"), std::string::npos) << m;
  m = message("    - {until: 'a.acuracy > 0.5'}\n");
  EXPECT_NE(m.find("schedule.phases[0].until"), std::string::npos) << m;
  m = message("    - {tasks: [a, b], mixing: fixed, mixing_weights: [1, 2, 3]}\n");
  EXPECT_NE(m.find("schedule.phases[0].mixing_weights"), std::string::npos) << m;
  m = message("    - {name: forever}\n    - {name: never}\n");
  EXPECT_NE(m.find("never ends"), std::string::npos) << m;
  m = message("    - {mixing: adaptive, adaptive_floor: 0.5}\n");
  EXPECT_NE(m.find("adaptive_floor"), std::string::npos) << m;
  // Checked when the config is read: weights without `fixed`.
  try {
    (void)schedule_config("    - {mixing: uniform, mixing_weights: [1]}\n");
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("schedule.phases[0].mixing_weights"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace pft
