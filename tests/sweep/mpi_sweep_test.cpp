// The in-allocation executor (sweep/mpi_executor.h) end to end, under pft-mpirun on the bundled
// tasks with a tiny GPT-2 (CPU, one thread per rank), through tests/sweep/mpi_sweep_driver:
//   - W = 4, 2 ranks per trial: two trials train at once, in two groups, and each trains exactly
//     as the same config alone under `pft-mpirun -np 2 pft train` (train losses, held-out losses
//     and the parameter hash equal): a group of 2 ranks inside a world of 4 is a 2-rank run;
//   - ASHA stops a diverging trial (lr = 10) at the first rung while the good ones go on; the
//     stopped trial ends like a finished run (a final checkpoint); a rerun of the same command
//     runs no trial again;
//   - a trial failing with an error its group agrees on is recorded `failed`, the sweep goes on;
//     one whose training loss was not finite is `failed: diverged`, even with a finite objective;
//   - a rerun after a kill between a trial's end of training and its end event records it from
//     its run dir (finished, or stopped by ASHA) without training it again;
//   - bad settings (a rung the evaluations miss, a world not a multiple of ranks_per_trial) end
//     every rank with exit 2 before any trial;
//   - a preemption ends every rank with exit 75 and the rerun resumes the interrupted trial;
//   - a rank killed (-9) while its group trains ends the sweep with exit 3, the finished trial's
//     events kept; the rerun does not run it again and resumes the other from its checkpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;
using pft::test::Result;
using pft::test::run;

const std::string kMpirun =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN;

// A tiny GPT-2 on the quickstart tasks: 8 steps of 8 sequences of 64 tokens, held-out loss
// every 2 steps (one batch per template).
const std::string kCommon =
    "model.d_model=64 model.n_layers=2 model.n_heads=4 data.seq_len=64 train.steps=8 "
    "train.warmup_steps=2 train.global_batch_size=8 train.micro_batch_size=2 run.threads=1 "
    "run.log_every=1 eval.every_steps=2 eval.max_batches=1 checkpoint.every_steps=0";

fs::path scratch(const std::string& tag) {
  const fs::path d = fs::temp_directory_path() /
                     ("pft-sweep-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  return d;
}

std::string sweep_cmd(int np, const fs::path& dir, int ranks_per_trial, int asha_min_steps,
                      double eta, const std::vector<std::string>& trials) {
  std::string cmd = kMpirun + " -np " + std::to_string(np) + " " + PFT_SWEEP_DRIVER + " " +
                    dir.string() + " " + std::to_string(ranks_per_trial) + " " +
                    std::to_string(asha_min_steps) + " " + std::to_string(eta) +
                    " configs/quickstart.yaml '" + kCommon + "'";
  for (const std::string& t : trials) cmd += " '" + t + "'";
  return cmd;
}

std::vector<json::object> lines(const fs::path& file) {
  std::vector<json::object> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line).as_object());
  return out;
}

std::vector<json::object> records(const fs::path& run_dir, const std::string& kind) {
  std::vector<json::object> out;
  for (json::object& o : lines(run_dir / "metrics.jsonl"))
    if (o.at("kind").as_string() == kind) out.push_back(std::move(o));
  return out;
}

// What must match between a trial and the same config run alone.
struct Trace {
  std::vector<double> train_loss;
  std::vector<std::string> eval;  // "step task template loss", exact
  std::string param_hash;
};

Trace trace(const fs::path& run_dir) {
  Trace t;
  for (const json::object& r : records(run_dir, "train"))
    t.train_loss.push_back(r.at("loss").to_number<double>());
  for (const json::object& r : records(run_dir, "eval"))
    t.eval.push_back(json::serialize(r.at("step")) + " " + json::serialize(r.at("task")) + " " +
                     json::serialize(r.at("template")) + " " + json::serialize(r.at("loss")));
  const std::vector<json::object> end = records(run_dir, "end");
  if (!end.empty()) t.param_hash = end.back().at("param_hash").as_string();
  return t;
}

std::vector<json::object> events(const fs::path& sweep, const std::string& event) {
  std::vector<json::object> out;
  for (json::object& o : lines(sweep / "sweep.jsonl"))
    if (o.at("kind").as_string() == event) out.push_back(std::move(o));
  return out;
}

// Writes DIR/sweep.yaml (tests/sweep/tiny.yaml as its base, then `body`) and runs `pft sweep
// run` on it with `np` ranks into DIR/out.
Result run_sweep_file(const fs::path& dir, const std::string& body, int np) {
  fs::create_directories(dir);
  const fs::path file = dir / "sweep.yaml";
  std::ofstream(file) << "base: " << (fs::path(PFT_SOURCE_ROOT) / "tests/sweep/tiny.yaml").string()
                      << "\n" << body;
  return run(kMpirun + " -np " + std::to_string(np) + " " + PFT_BIN + " sweep run " +
             file.string() + " --dir " + (dir / "out").string());
}

TEST(MpiSweep, TwoGroupsOfTwoTrainAtOnceAndEachAsItsOwnTwoRankRun) {
  const fs::path sweep = scratch("groups");
  const std::vector<std::string> lrs = {"3e-3", "1e-3"};
  const Result r = run(sweep_cmd(4, sweep, 2, 0, 3, {"train.lr=" + lrs[0], "train.lr=" + lrs[1]}));
  ASSERT_EQ(r.code, 0) << r.out;
  // Both trials ran at once, one per group: each started before either ended.
  const std::vector<json::object> started = events(sweep, "started");
  const std::vector<json::object> finished = events(sweep, "finished");
  ASSERT_EQ(started.size(), 2u) << r.out;
  ASSERT_EQ(finished.size(), 2u) << r.out;
  EXPECT_NE(started[0].at("group"), started[1].at("group"));
  const std::vector<json::object> all = lines(sweep / "sweep.jsonl");
  EXPECT_EQ(all[0].at("kind").as_string(), "started");
  EXPECT_EQ(all[1].at("kind").as_string(), "started") << "a trial ended before the other began";

  for (size_t i = 0; i < lrs.size(); ++i) {
    const fs::path alone = scratch("alone" + std::to_string(i));
    std::string cmd = kMpirun + " -np 2 " + PFT_BIN + " train configs/quickstart.yaml";
    std::istringstream words(kCommon);
    for (std::string w; words >> w;) cmd += " --set " + w;
    cmd += " --set train.lr=" + lrs[i] + " --set train.resume=auto --set run.dir=" + alone.string();
    const Result a = run(cmd);
    ASSERT_EQ(a.code, 0) << a.out;
    const Trace mine = trace(sweep / "trials" / ("t" + std::to_string(i))), theirs = trace(alone);
    ASSERT_EQ(mine.train_loss.size(), 8u);
    EXPECT_EQ(mine.train_loss, theirs.train_loss) << "trial " << i;
    EXPECT_EQ(mine.eval, theirs.eval) << "trial " << i;
    EXPECT_FALSE(mine.param_hash.empty());
    EXPECT_EQ(mine.param_hash, theirs.param_hash) << "trial " << i;
    fs::remove_all(alone);
  }
  fs::remove_all(sweep);
}

// One group of 2 ranks, so the trials report in a fixed order: t0 (lr 1e-3) reaches rung 2 first
// and goes on; t1 (lr 3e-3) is better there and goes on; t2 (lr 10) diverges and is the worst of
// three: ASHA (eta 2: the top max(1, 3/2) = 1 goes on) stops it at the first rung.
TEST(MpiSweep, AshaStopsTheDivergingTrialAtTheFirstRung) {
  const fs::path sweep = scratch("asha");
  const std::string cmd =
      sweep_cmd(2, sweep, 2, 2, 2, {"train.lr=1e-3", "train.lr=3e-3", "train.lr=10"});
  const Result r = run(cmd);
  ASSERT_EQ(r.code, 0) << r.out;
  std::map<std::string, std::vector<json::object>> rungs;
  for (json::object& e : events(sweep, "rung")) rungs[std::string(e.at("trial").as_string())].push_back(e);
  // The setup: at rung 2, t1 is better than t0 (otherwise ASHA rightly stops t1 too).
  ASSERT_EQ(rungs["t0"].size(), 2u) << r.out;  // rungs 2 and 4 (8 is the end)
  ASSERT_EQ(rungs["t1"].size(), 2u) << r.out;
  ASSERT_LT(rungs["t1"][0].at("objective").to_number<double>(),
            rungs["t0"][0].at("objective").to_number<double>());
  for (const char* good : {"t0", "t1"})
    for (const json::object& e : rungs[good]) EXPECT_EQ(e.at("decision").as_string(), "continue") << good;
  ASSERT_EQ(rungs["t2"].size(), 1u) << r.out;
  EXPECT_EQ(rungs["t2"][0].at("step").as_int64(), 2);
  EXPECT_EQ(rungs["t2"][0].at("decision").as_string(), "stop");

  const std::vector<json::object> finished = events(sweep, "finished"), stopped = events(sweep, "stopped");
  ASSERT_EQ(finished.size(), 2u);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0].at("trial").as_string(), "t2");
  EXPECT_EQ(stopped[0].at("step").as_int64(), 2);
  // The stopped trial ended like a run: stopped record, a final checkpoint at the rung.
  const fs::path t2 = sweep / "trials" / "t2";
  const std::vector<json::object> stop_records = records(t2, "stopped");
  ASSERT_EQ(stop_records.size(), 1u);
  EXPECT_EQ(stop_records[0].at("reason").as_string(), "external");
  EXPECT_TRUE(fs::exists(t2 / "checkpoints" / "step_00000002.h5"));
  EXPECT_EQ(records(sweep / "trials" / "t0", "train").size(), 8u);

  // Killed after t0's and t2's training ended but before their end events (review finding 1):
  // the rerun records them from their run dirs (t0 finished at 8, t2 stopped at its rung), trains
  // neither again.
  {
    std::vector<json::object> kept;
    for (json::object& e : lines(sweep / "sweep.jsonl")) {
      const std::string kind(e.at("kind").as_string()), trial(e.at("trial").as_string());
      if (!(kind == "finished" && trial == "t0") && !(kind == "stopped" && trial == "t2"))
        kept.push_back(std::move(e));
    }
    std::ofstream out(sweep / "sweep.jsonl", std::ios::trunc);
    for (const json::object& e : kept) out << json::serialize(e) << "\n";
  }
  const Result recovered = run(cmd);
  ASSERT_EQ(recovered.code, 0) << recovered.out;
  EXPECT_EQ(events(sweep, "started").size(), 3u) << recovered.out;
  EXPECT_EQ(events(sweep, "rung").size(), 5u) << recovered.out;
  for (const char* t : {"t0", "t2"})
    EXPECT_EQ(records(sweep / "trials" / t, "start").size(), 1u) << t << " trained again";
  const std::vector<json::object> all = lines(sweep / "sweep.jsonl");
  ASSERT_GE(all.size(), 2u);
  std::map<std::string, json::object> last;
  for (const json::object& e : all) last[std::string(e.at("trial").as_string())] = e;
  EXPECT_EQ(last["t0"].at("kind").as_string(), "finished") << last["t0"];
  EXPECT_EQ(last["t0"].at("step").as_int64(), 8);
  EXPECT_EQ(last["t2"].at("kind").as_string(), "stopped") << last["t2"];
  EXPECT_EQ(last["t2"].at("step").as_int64(), 2);
  EXPECT_NE(recovered.out.find("trial t0 finished 8"), std::string::npos) << recovered.out;

  // A rerun resumes: every trial has ended, so none runs again.
  const size_t before = lines(sweep / "sweep.jsonl").size();
  const Result again = run(cmd);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_EQ(lines(sweep / "sweep.jsonl").size(), before) << again.out;
  EXPECT_NE(again.out.find("trial t2 stopped 2"), std::string::npos) << again.out;
  fs::remove_all(sweep);
}

// `pft sweep run` with executor mpi (sweep/executor.h run_mpi_sweep): the sweep file's grid and
// ASHA rule, one group of 2 ranks (a fixed order of reports), the ranked table at the end; lr 10
// stopped at the first rung (step 6 of 12); `pft sweep status` reads the same directory.
TEST(MpiSweep, PftSweepRunWithTheMpiExecutor) {
  const fs::path d = scratch("cli");
  const fs::path out = d / "out";
  const Result r = run_sweep_file(d,
                                  "parameters:\n"
                                  "  train.lr: [1.0e-3, 3.0e-3, 10]\n"
                                  "  train.micro_batch_size: [2]\n"
                                  "objective: {metric: eval.loss}\n"
                                  "early_stop: {rule: asha, eta: 2, min_steps: 6}\n"
                                  "executor: {kind: mpi, ranks_per_trial: 2}\n",
                                  2);
  ASSERT_EQ(r.code, 0) << r.out;
  std::map<std::string, std::string> decision, end;
  std::map<std::string, double> at_rung;
  for (const json::object& e : lines(out / "sweep.jsonl")) {
    const std::string kind(e.at("kind").as_string()), trial(e.at("trial").as_string());
    if (kind == "rung") {
      decision[trial] = e.at("decision").as_string();
      at_rung[trial] = e.at("objective").to_number<double>();
      EXPECT_EQ(e.at("step").as_int64(), 6);
    }
    if (kind == "finished" || kind == "stopped") end[trial] = kind;
  }
  ASSERT_EQ(decision.size(), 3u) << r.out;
  ASSERT_LT(at_rung["t001"], at_rung["t000"]) << "the setup: lr 3e-3 leads 1e-3 at step 6";
  EXPECT_EQ(decision["t000"], "continue");
  EXPECT_EQ(decision["t001"], "continue");
  EXPECT_EQ(decision["t002"], "stop");
  EXPECT_EQ(end["t000"], "finished");
  EXPECT_EQ(end["t001"], "finished");
  EXPECT_EQ(end["t002"], "stopped");
  EXPECT_TRUE(fs::exists(out / "best.yaml"));
  EXPECT_NE(r.out.find("stopped"), std::string::npos) << r.out;  // the table's state column
  const Result s = run(std::string(PFT_BIN) + " sweep status " + out.string());
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_NE(s.out.find("t002"), std::string::npos) << s.out;
  fs::remove_all(d);
}

// early_stop.max_steps 0 with trials of 6 and 18 steps: the rungs reach the longest trial's
// train.steps (6 and 12), not the first trial's (6 steps: no rung at all, refused). A cosine
// schedule over more steps keeps lr higher early, so t001 leads t000 at step 6 and goes on.
TEST(MpiSweep, AshaRungsReachTheLongestTrial) {
  const fs::path d = scratch("rungs");
  const fs::path out = d / "out";
  const Result r = run_sweep_file(d,
                                  "set: [train.schedule=cosine]\n"
                                  "parameters:\n"
                                  "  train.steps: [6, 18]\n"
                                  "objective: {metric: eval.loss}\n"
                                  "early_stop: {rule: asha, eta: 2, min_steps: 6}\n"
                                  "executor: {kind: mpi, ranks_per_trial: 1}\n",
                                  1);
  ASSERT_EQ(r.code, 0) << r.out;
  std::map<std::string, std::vector<json::object>> rungs;
  for (json::object& e : events(out, "rung")) rungs[std::string(e.at("trial").as_string())].push_back(e);
  ASSERT_EQ(rungs["t000"].size(), 1u) << r.out;
  ASSERT_GE(rungs["t001"].size(), 1u) << r.out;
  ASSERT_LT(rungs["t001"][0].at("objective").to_number<double>(),
            rungs["t000"][0].at("objective").to_number<double>())
      << "the setup: t001 leads at step 6";
  ASSERT_EQ(rungs["t001"].size(), 2u) << r.out;
  EXPECT_EQ(rungs["t001"][1].at("step").as_int64(), 12);
  EXPECT_EQ(events(out, "finished").size(), 2u) << r.out;
  fs::remove_all(d);
}

// Bad input stops every rank before anything runs (exit 2), naming the key and the trial.
TEST(MpiSweep, BadSettingsEndTheSweepBeforeAnyTrial) {
  const fs::path sweep = scratch("bad");
  const Result rungs = run(sweep_cmd(2, sweep, 2, 2, 2, {"train.lr=1e-3", "eval.every_steps=3"}));
  EXPECT_EQ(rungs.code, 2) << rungs.out;
  EXPECT_NE(rungs.out.find("sweep trial t1 (eval.every_steps=3): eval.every_steps: 3 does not "
                           "evaluate at ASHA's rung 2"),
            std::string::npos)
      << rungs.out;
  EXPECT_FALSE(fs::exists(sweep / "sweep.jsonl"));
  const Result ranks = run(sweep_cmd(4, sweep, 3, 0, 3, {"train.lr=1e-3"}));
  EXPECT_EQ(ranks.code, 2) << ranks.out;
  EXPECT_NE(ranks.out.find("executor.ranks_per_trial: 3 does not divide the job's 4 ranks"),
            std::string::npos)
      << ranks.out;
  fs::remove_all(sweep);
}

// A trial that fails with an error its whole group agrees on (here a key train() refuses) is
// recorded `failed` with the message; the group takes the next trial.
TEST(MpiSweep, AFailingTrialIsRecordedAndTheSweepGoesOn) {
  const fs::path sweep = scratch("failed");
  const Result r = run(sweep_cmd(2, sweep, 2, 0, 3,
                                 {"peft.init_from=" + sweep.string() + "/none.h5", "train.steps=2"}));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<json::object> failed = events(sweep, "failed");
  ASSERT_EQ(failed.size(), 1u) << r.out;
  EXPECT_EQ(failed[0].at("trial").as_string(), "t0");
  EXPECT_NE(std::string(failed[0].at("message").as_string()).find("peft.init_from"), std::string::npos)
      << failed[0];
  const std::vector<json::object> finished = events(sweep, "finished");
  ASSERT_EQ(finished.size(), 1u) << r.out;
  EXPECT_EQ(finished[0].at("trial").as_string(), "t1");
  EXPECT_EQ(finished[0].at("step").as_int64(), 2);
  fs::remove_all(sweep);
}

// lr 1e30: the training loss is NaN from step 2 (`pft train` skips such steps and exits 0) while
// the objective, exact match, stays finite (0): `failed: diverged`, as the local executor records
// it, not `finished`. One rank, one trial per group.
TEST(MpiSweep, ANonFiniteTrainingLossIsDivergedEvenWithAFiniteObjective) {
  const fs::path d = scratch("nan");
  const fs::path out = d / "out";
  const Result r = run_sweep_file(d,
                                  "parameters:\n"
                                  "  train.lr: [3.0e-3, 1.0e30]\n"
                                  "objective: {metric: eval.exact_match}\n"
                                  "executor: {kind: mpi, ranks_per_trial: 1}\n",
                                  1);
  ASSERT_EQ(r.code, 0) << r.out;
  std::map<std::string, json::object> end;
  for (json::object& e : lines(out / "sweep.jsonl"))
    if (e.at("kind").as_string() != "started") end[std::string(e.at("trial").as_string())] = e;
  ASSERT_EQ(end.size(), 2u) << r.out;
  EXPECT_EQ(end["t000"].at("kind").as_string(), "finished") << end["t000"];
  EXPECT_EQ(end["t001"].at("kind").as_string(), "failed") << end["t001"];
  EXPECT_TRUE(end["t001"].at("objective").is_number()) << "the setup: a finite objective";
  EXPECT_NE(std::string(end["t001"].at("message").as_string()).find("diverged: training loss nan"),
            std::string::npos)
      << end["t001"];
  fs::remove_all(d);
}

// W = 4, 2 ranks per trial, no ASHA: t0 (4 steps) and t1 (30 steps, each slowed by 0.3 s with
// PFT_TEST_DELAY) start together; once t0 has finished and t1 has a checkpoint, rank 2g+1 of t1's
// group g is killed.
TEST(MpiSweep, ALostRankEndsTheSweepWithExit3AndARerunResumesIt) {
  const fs::path sweep = scratch("lost");
  std::string launch = sweep_cmd(4, sweep, 2, 0, 3, {"train.steps=4", "train.steps=30"});
  // Checkpoints every 2 steps, written before the step goes on; a short deadline. kCommon is
  // quoted in the command: the extra overrides go inside its quotes.
  const std::string common_extra = " checkpoint.every_steps=2 checkpoint.async=false dist.timeout_s=5";
  const size_t at = launch.find(kCommon);
  ASSERT_NE(at, std::string::npos);
  launch.insert(at + kCommon.size(), common_extra);
  const fs::path script = sweep.string() + ".sh";
  fs::create_directories(sweep.parent_path());
  {
    std::ofstream out(script);
    out << "set -u\n"
        << "(PFT_TEST_DELAY=step:0.3 " << launch << " > " << sweep.string() << ".log 2>&1; echo $? > "
        << sweep.string() << ".rc) &\n"
        << "ev=" << (sweep / "sweep.jsonl").string() << "\n"
        << "for i in $(seq 1 300); do sleep 0.2\n"
        << "  if [ -f $ev ] && grep -q '\"finished\"' $ev && ls " << (sweep / "trials/t1/checkpoints").string()
        << "/*.h5 > /dev/null 2>&1; then break; fi\n"
        << "done\n"
        << "g=$(grep '\"trial\":\"t1\"' $ev | head -1 | sed 's/.*\"group\":\\([0-9]*\\).*/\\1/')\n"
        << "victim=$((2 * g + 1))\n"
        << "for p in $(pgrep -f '" << PFT_SWEEP_DRIVER << " " << sweep.string() << " '); do\n"
        << "  r=$(tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')\n"
        << "  if [ \"$r\" = \"$victim\" ]; then kill -9 $p; echo \"killed rank $r (pid $p)\"; fi\n"
        << "done\n"
        << "wait\n"
        << "cat " << sweep.string() << ".log\n"
        << "exit $(cat " << sweep.string() << ".rc)\n";
  }
  const Result killed = run("bash " + script.string());
  EXPECT_NE(killed.out.find("killed rank"), std::string::npos) << killed.out;
  ASSERT_EQ(killed.code, 3) << killed.out;
  ASSERT_EQ(events(sweep, "finished").size(), 1u) << killed.out;
  EXPECT_EQ(events(sweep, "finished")[0].at("trial").as_string(), "t0");

  const Result again = run(launch);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("1 of them from their checkpoints"), std::string::npos) << again.out;
  const std::vector<json::object> started = events(sweep, "started");
  ASSERT_EQ(started.size(), 3u);  // t0, t1, and t1 again: t0 was not rerun
  EXPECT_EQ(started[2].at("trial").as_string(), "t1");
  const std::vector<json::object> resumed = records(sweep / "trials" / "t1", "resume");
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_GT(resumed[0].at("step").as_int64(), 0);
  EXPECT_EQ(records(sweep / "trials" / "t0", "start").size(), 1u);
  const std::vector<json::object> finished = events(sweep, "finished");
  ASSERT_EQ(finished.size(), 2u);
  EXPECT_EQ(finished[1].at("trial").as_string(), "t1");
  EXPECT_EQ(finished[1].at("step").as_int64(), 30);
  fs::remove_all(sweep);
  fs::remove(script);
  fs::remove(sweep.string() + ".log");
  fs::remove(sweep.string() + ".rc");
}

// A preemption (SIGTERM to pft-mpirun, forwarded to every rank as SIGUSR1) while one group trains
// and the other is idle: the training group checkpoints, its trial gets an `interrupted` event,
// the idle group leaves, every rank exits 75 (not 3 on a missed deadline); the rerun resumes the
// trial from its checkpoint. W = 2, one rank per trial, steps slowed by 0.3 s.
TEST(MpiSweep, APreemptedSweepExits75AndTheRerunResumes) {
  const fs::path sweep = scratch("preempt");
  std::string launch = sweep_cmd(2, sweep, 1, 0, 3, {"train.steps=2", "train.steps=20"});
  const std::string common_extra = " checkpoint.every_steps=2 checkpoint.async=false dist.timeout_s=5";
  const size_t at = launch.find(kCommon);
  ASSERT_NE(at, std::string::npos);
  launch.insert(at + kCommon.size(), common_extra);
  const fs::path script = sweep.string() + ".sh";
  fs::create_directories(sweep.parent_path());
  {
    std::ofstream out(script);
    out << "set -u\n"
        << "(exec env PFT_TEST_DELAY=step:0.3 PFT_PREEMPT_GRACE_S=30 " << launch << " > "
        << sweep.string() << ".log 2>&1) &\n"
        << "pid=$!\n"
        << "ev=" << (sweep / "sweep.jsonl").string() << "\n"
        << "for i in $(seq 1 300); do sleep 0.2\n"
        << "  if [ -f $ev ] && grep -q '\"finished\"' $ev && ls " << (sweep / "trials/t1/checkpoints").string()
        << "/*.h5 > /dev/null 2>&1; then break; fi\n"
        << "done\n"
        << "kill -TERM $pid\n"
        << "wait $pid; rc=$?\n"
        << "cat " << sweep.string() << ".log\n"
        << "exit $rc\n";
  }
  const Result preempted = run("bash " + script.string());
  ASSERT_EQ(preempted.code, 75) << preempted.out;
  const std::vector<json::object> interrupted = events(sweep, "interrupted");
  ASSERT_EQ(interrupted.size(), 1u) << preempted.out;
  EXPECT_EQ(interrupted[0].at("trial").as_string(), "t1");
  EXPECT_EQ(events(sweep, "finished").size(), 1u) << preempted.out;

  const Result again = run(launch);
  ASSERT_EQ(again.code, 0) << again.out;
  const std::vector<json::object> resumed = records(sweep / "trials" / "t1", "resume");
  ASSERT_EQ(resumed.size(), 1u) << again.out;
  EXPECT_GT(resumed[0].at("step").as_int64(), 0);
  const std::vector<json::object> finished = events(sweep, "finished");
  ASSERT_EQ(finished.size(), 2u) << again.out;
  EXPECT_EQ(finished[1].at("trial").as_string(), "t1");
  EXPECT_EQ(finished[1].at("step").as_int64(), 20);
  fs::remove_all(sweep);
  fs::remove(script);
  fs::remove(sweep.string() + ".log");
}

}  // namespace
