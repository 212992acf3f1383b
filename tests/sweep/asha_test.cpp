// ASHA (sweep/asha.h): rungs, the top-1/eta cut as results arrive, the objective's mode,
// non-finite objectives, and a state rebuilt by replaying the reports gives the same verdicts.
#include "sweep/asha.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace {

using pft::sweep::Asha;
using pft::sweep::AshaConfig;
using pft::sweep::AshaVerdict;

constexpr AshaVerdict C = AshaVerdict::kContinue;
constexpr AshaVerdict S = AshaVerdict::kStop;

AshaConfig config(int64_t min_steps, int64_t max_steps, double eta, bool higher = false) {
  AshaConfig c;
  c.min_steps = min_steps;
  c.max_steps = max_steps;
  c.eta = eta;
  c.higher_is_better = higher;
  return c;
}

TEST(Asha, RungsAreMinStepsTimesPowersOfEtaBelowMaxSteps) {
  EXPECT_EQ(Asha(config(2, 20, 3)).rungs(), (std::vector<int64_t>{2, 6, 18}));
  EXPECT_EQ(Asha(config(1, 9, 3)).rungs(), (std::vector<int64_t>{1, 3}));  // 9 is the end
  EXPECT_EQ(Asha(config(4, 100, 2.5)).rungs(), (std::vector<int64_t>{4, 10, 25, 62}));
  const Asha a(config(2, 20, 3));
  EXPECT_TRUE(a.is_rung(6));
  EXPECT_FALSE(a.is_rung(4));
  EXPECT_FALSE(a.is_rung(20));
}

TEST(Asha, BadSettingsNameTheKey) {
  const auto message = [](const AshaConfig& c) {
    try {
      Asha a(c);
    } catch (const pft::InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message(config(0, 10, 3)).find("asha.min_steps"), std::string::npos);
  EXPECT_NE(message(config(2, 10, 1)).find("asha.eta"), std::string::npos);
  EXPECT_NE(message(config(10, 10, 3)).find("asha.min_steps"), std::string::npos);
  Asha a(config(2, 20, 3));
  EXPECT_THROW(a.report("t0", 3, 1.0), pft::InputError);  // not a rung
}

// eta = 2, mode min: with n results at the rung, the best max(1, n/2) go on.
TEST(Asha, KeepsTheTopFractionOfTheResultsSoFar) {
  Asha a(config(2, 16, 2));
  const std::vector<double> objective = {5, 4, 6, 3, 7, 2, 4.5, 3.5};
  const std::vector<AshaVerdict> expected = {C, C, S, C, S, C, S, C};
  for (size_t i = 0; i < objective.size(); ++i)
    EXPECT_EQ(a.report("t" + std::to_string(i), 2, objective[i]), expected[i]) << "report " << i;
  EXPECT_EQ(a.results(2).size(), objective.size());
  EXPECT_TRUE(a.results(4).empty());
}

TEST(Asha, ModeMaxKeepsTheHighest) {
  Asha a(config(1, 10, 3, /*higher=*/true));
  EXPECT_EQ(a.report("a", 1, 0.5), C);  // the first arrival goes on
  EXPECT_EQ(a.report("b", 1, 0.4), S);  // n = 2: only the best goes on
  EXPECT_EQ(a.report("c", 1, 0.9), C);
  // The same numbers under min: b beats a.
  Asha m(config(1, 10, 3));
  EXPECT_EQ(m.report("a", 1, 0.5), C);
  EXPECT_EQ(m.report("b", 1, 0.4), C);
  EXPECT_EQ(m.report("c", 1, 0.9), S);
}

TEST(Asha, RungsAreIndependent) {
  Asha a(config(1, 10, 3));
  EXPECT_EQ(a.report("a", 1, 1.0), C);
  EXPECT_EQ(a.report("b", 1, 0.5), C);
  EXPECT_EQ(a.report("b", 3, 0.4), C);  // first at rung 3
  EXPECT_EQ(a.report("a", 3, 0.3), C);  // better than b there
  EXPECT_EQ(a.report("c", 1, 2.0), S);
}

TEST(Asha, NonFiniteObjectivesAlwaysStopAndRankLast) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  Asha a(config(2, 20, 3));
  EXPECT_EQ(a.report("diverged", 2, nan), S);  // even as the first arrival
  EXPECT_EQ(a.report("good", 2, 9.0), C);      // n = 2: rank 1, ahead of the NaN
  EXPECT_EQ(a.report("inf", 2, inf), S);
  EXPECT_EQ(a.report("-inf", 2, -inf), S);  // -inf "loss" is no better: it diverged too
  Asha m(config(2, 20, 3, /*higher=*/true));
  EXPECT_EQ(m.report("inf", 2, inf), S);
  EXPECT_EQ(m.report("x", 2, 0.1), C);
}

TEST(Asha, TiesRankTheEarlierReportFirst) {
  Asha a(config(1, 10, 2));
  EXPECT_EQ(a.report("a", 1, 1.0), C);
  EXPECT_EQ(a.report("b", 1, 1.0), S);  // n = 2, kept 1: a was first
  EXPECT_EQ(a.report("c", 1, 1.0), S);
  EXPECT_EQ(a.report("d", 1, 1.0), S);  // n = 4, kept 2: rank 4
}

TEST(Asha, ASecondReportOfATrialAtARungReturnsTheFirstVerdict) {
  Asha a(config(1, 10, 3));
  EXPECT_EQ(a.report("a", 1, 1.0), C);
  EXPECT_EQ(a.report("b", 1, 2.0), S);
  EXPECT_EQ(a.report("b", 1, 0.1), S);  // resumed before the rung: same verdict, nothing recorded
  EXPECT_EQ(a.results(1).size(), 2u);
  EXPECT_EQ(a.results(1)[1].objective, 2.0);
}

// The state is the reports in order: replaying them (sweep.jsonl on resume) into a fresh Asha
// gives the same verdicts, and the decisions after the replay match the uninterrupted run's.
TEST(Asha, ReplayingTheReportsRebuildsTheState) {
  struct Report {
    std::string trial;
    int64_t step;
    double objective;
  };
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const AshaConfig c = config(1, 30, 3);
  Asha live(c);
  std::vector<Report> reports;
  std::vector<AshaVerdict> verdicts;
  // 20 trials; each reports at its rungs while it goes on (interleaved: trial i at rung k after
  // trial i+1 at rung 0, a plausible asynchronous order).
  std::vector<int> rung_of(20, 0);
  std::vector<bool> alive(20, true);
  for (int round = 0; round < 60; ++round) {
    const int t = static_cast<int>(u(rng) * 20);
    if (!alive[static_cast<size_t>(t)] || rung_of[static_cast<size_t>(t)] >= 3) continue;
    const int64_t step = c.min_steps * static_cast<int64_t>(std::pow(3, rung_of[static_cast<size_t>(t)]));
    const Report r{"t" + std::to_string(t), step, u(rng) + 0.1 * t};
    reports.push_back(r);
    verdicts.push_back(live.report(r.trial, r.step, r.objective));
    if (verdicts.back() == S) alive[static_cast<size_t>(t)] = false;
    ++rung_of[static_cast<size_t>(t)];
  }
  ASSERT_GT(reports.size(), 20u);
  int stops = 0;
  for (AshaVerdict v : verdicts) stops += v == S ? 1 : 0;
  EXPECT_GT(stops, 0);
  EXPECT_LT(stops, static_cast<int>(verdicts.size()));
  // A sweep killed after `half` reports: the rebuilt state replays them with the same verdicts,
  // then decides the rest exactly as the uninterrupted run did.
  Asha rebuilt(c);
  const size_t half = reports.size() / 2;
  for (size_t i = 0; i < reports.size(); ++i)
    EXPECT_EQ(rebuilt.report(reports[i].trial, reports[i].step, reports[i].objective), verdicts[i])
        << (i < half ? "replayed " : "new ") << "report " << i;
  // The same from the recorded verdicts (restore: what a resumed sweep does).
  Asha restored(c);
  for (size_t i = 0; i < half; ++i)
    restored.restore(reports[i].trial, reports[i].step, reports[i].objective, verdicts[i]);
  for (size_t i = half; i < reports.size(); ++i)
    EXPECT_EQ(restored.report(reports[i].trial, reports[i].step, reports[i].objective), verdicts[i])
        << "report " << i << " after a restore of " << half;
  for (int64_t step : live.rungs())
    EXPECT_EQ(restored.results(step).size(), live.results(step).size()) << "rung " << step;
}

}  // namespace
