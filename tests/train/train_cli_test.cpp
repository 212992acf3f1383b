// `pft train` end to end: the quickstart config trains (loss at the end below the start), prints
// the per-task table and writes config.resolved.yaml and one metrics.jsonl line per step; under `pft-mpirun -np 2` a
// tiny config gives the same per-step losses as one process (same global batch) within 1e-5
// relative; configs the trainer cannot run exit 2 naming the key.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <iterator>
#include <string>
#include <vector>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;

const std::string kPft = PFT_BIN;
const std::string kMpirun = PFT_MPIRUN;

using pft::test::Result;
using pft::test::run;

fs::path fresh_dir(const std::string& tag) {
  const fs::path d = fs::temp_directory_path() / ("pft-train-cli-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  return d;
}

// Losses of the "train" lines of a metrics.jsonl, in step order.
std::vector<double> train_losses(const fs::path& metrics) {
  std::vector<double> losses;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const boost::json::object rec = boost::json::parse(line).as_object();
    if (rec.at("kind").as_string() != "train") continue;
    EXPECT_EQ(rec.at("step").as_int64(), static_cast<int64_t>(losses.size()) + 1);
    for (const char* key : {"lr", "grad_norm", "tokens", "tokens_per_s", "step_time_s"})
      EXPECT_TRUE(rec.contains(key)) << key << " missing in " << line;
    losses.push_back(rec.at("loss").to_number<double>());
  }
  return losses;
}

TEST(TrainCli, QuickstartLossGoesDown) {
  const fs::path dir = fresh_dir("quickstart");
  const Result r = run(kPft + " train configs/quickstart.yaml --set train.steps=30 --set run.threads=1"
                       " --set run.log_every=10 --set run.dir=" + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("step 30/30 | loss "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tok/s | ETA"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("resolved config"), std::string::npos) << r.out;
  // The final per-task table: a header and one row per bundled task (windows of 3 steps).
  EXPECT_NE(r.out.find("loss first 3 steps"), std::string::npos) << r.out;
  for (const char* task : {"add", "reverse", "sort_digits", "max_digit", "uppercase", "sentiment",
                           "tech_qa"})
    EXPECT_NE(r.out.find(std::string("  ") + task + " "), std::string::npos) << task << "\n" << r.out;
  EXPECT_TRUE(fs::exists(dir / "config.resolved.yaml"));
  const std::vector<double> losses = train_losses(dir / "metrics.jsonl");
  ASSERT_EQ(losses.size(), 30u);
  // The start line records the mixture (data.mixing: temperature 2 in the quickstart): tech_qa's
  // 32 examples against add's 2,000 -> sqrt(32) / sqrt(2000) of add's share.
  {
    std::ifstream in(dir / "metrics.jsonl");
    std::string first;
    std::getline(in, first);
    const boost::json::object start = boost::json::parse(first).as_object();
    ASSERT_EQ(start.at("kind").as_string(), "start") << first;
    const boost::json::object& mix = start.at("mixture").as_object();
    ASSERT_EQ(mix.size(), 7u) << first;
    double sum = 0;
    for (const auto& kv : mix) sum += kv.value().to_number<double>();
    EXPECT_NEAR(sum, 1.0, 1e-9);
    EXPECT_NEAR(mix.at("tech_qa").to_number<double>() / mix.at("add").to_number<double>(),
                std::sqrt(32.0 / 2000.0), 1e-6);
  }
  EXPECT_LT(losses.back(), losses.front() - 1.0) << r.out;
  fs::remove_all(dir);
}

const std::string kTiny =
    " --set model.d_model=64 --set model.n_layers=2 --set model.n_heads=4 --set data.seq_len=64"
    " --set train.steps=8 --set train.warmup_steps=2 --set train.global_batch_size=8"
    " --set train.micro_batch_size=2 --set run.threads=1";

// The records of a metrics.jsonl with kind `kind`.
std::vector<boost::json::object> records_of(const fs::path& metrics, const std::string& kind) {
  std::vector<boost::json::object> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    boost::json::object rec = boost::json::parse(line).as_object();
    if (rec.at("kind").as_string() == kind) out.push_back(std::move(rec));
  }
  return out;
}

const std::string kMpirun2 =
    "PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 " + kMpirun + " -np 2 ";

// Two runs in one run.dir (core/run_dir.h, Note [run directory lock]): the second exits 2 on every
// rank naming the holder, writes nothing there, and the first finishes untouched; a reader
// (`pft ckpt ls`) is not blocked meanwhile. The first run is frozen (SIGSTOP) as soon as its lock
// file names it and resumed (SIGCONT) after the second has been refused, so the second always
// meets it mid-run, however fast or slow the machine.
TEST(TrainCli, SecondRunInTheSameDirExitsTwoNamingTheHolder) {
  const fs::path dir = fresh_dir("locked");
  const fs::path log = dir.string() + ".first.log";
  const std::string first = kPft + " train configs/quickstart.yaml" + kTiny +
                            " --set run.seed=1 --set run.dir=" + dir.string();
  const std::string second = kPft + " train configs/quickstart.yaml" + kTiny +
                             " --set run.seed=2 --set run.dir=" + dir.string();
  const std::string script =
      "(exec " + first + " > " + log.string() + " 2>&1) & a=$!; echo first-pid=$a; n=0; "
      "until [ -s " + (dir / "run.lock").string() + " ]; do n=$((n+1)); "
      "if [ $n -gt 2400 ]; then echo no-lock; break; fi; sleep 0.05; done; "
      "kill -STOP $a; " + kMpirun2 + "sh -c '" + second + "; echo rank-exit=$?'; " + kPft +
      " ckpt ls " + dir.string() + "; echo ls-exit=$?; kill -CONT $a; wait $a; "
      "echo first-exit=$?";
  const Result r = run(script);
  const size_t at = r.out.find("first-pid=");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string pid = r.out.substr(at + 10, r.out.find('\n', at) - at - 10);
  EXPECT_EQ(r.out.find("no-lock"), std::string::npos) << r.out;
  EXPECT_EQ(pft::test::count(r.out, "rank-exit=2"), 2u) << r.out;
  EXPECT_EQ(pft::test::count(r.out, "is in use by another run"), 1u) << r.out;
  EXPECT_NE(r.out.find("run.dir " + dir.string() + " is in use by another run: pid " + pid +
                       " on host "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("--set run.dir=DIR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ls-exit=0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("first-exit=0"), std::string::npos) << r.out;
  std::ifstream in(log);
  const std::string first_out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(first_out.find("warning"), std::string::npos) << first_out;
  // Only the first run's records: one start (seed 1), its 8 steps once each, one end.
  const auto starts = records_of(dir / "metrics.jsonl", "start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(train_losses(dir / "metrics.jsonl").size(), 8u);
  EXPECT_EQ(records_of(dir / "metrics.jsonl", "end").size(), 1u);
  // A clean end leaves the lock file empty: the next run starts without a warning.
  EXPECT_EQ(fs::file_size(dir / "run.lock"), 0u);
  fs::remove_all(dir);
  fs::remove(log);
}

// A run killed with SIGKILL leaves its line in run.lock but no flock: the next run in the
// directory takes the lock over with a warning naming the dead run, and trains. Also a lock file
// naming a process of this host that does not exist.
TEST(TrainCli, StaleLockOfADeadRunIsTakenOver) {
  const fs::path dir = fresh_dir("stale");
  const std::string cmd = kPft + " train configs/quickstart.yaml" + kTiny +
                          " --set train.resume=auto --set run.dir=" + dir.string();
  const std::string script =
      "(exec " + cmd + " > /dev/null 2>&1) & a=$!; echo dead-pid=$a; n=0; "
      "until [ -s " + (dir / "run.lock").string() + " ]; do n=$((n+1)); "
      "if [ $n -gt 2400 ]; then echo no-lock; break; fi; sleep 0.05; done; "
      "kill -KILL $a; wait $a; " + cmd + "; echo second-exit=$?";
  Result r = run(script);
  const size_t at = r.out.find("dead-pid=");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string pid = r.out.substr(at + 9, r.out.find('\n', at) - at - 9);
  EXPECT_EQ(r.out.find("no-lock"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("second-exit=0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("run.dir " + dir.string() + ": taking over the lock of a run that ended "
                       "without releasing it (pid " + pid + " on host "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("its process is gone"), std::string::npos) << r.out;

  // A hand-made stale line: a pid that cannot exist (above pid_max), on this host, with a job id.
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::ofstream(dir / "run.lock") << "host=" << host << " pid=99999999 since=2026-01-01T00:00:00Z job=77\n";
  r = run(cmd);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(pid 99999999 on host " + std::string(host) +
                       " since 2026-01-01T00:00:00Z, job 77; its lock was no longer held, its "
                       "process is gone)"),
            std::string::npos)
      << r.out;
  fs::remove_all(dir);
}

TEST(TrainCli, TwoRanksGiveTheSameLossesAsOne) {
  const fs::path one = fresh_dir("np1"), two = fresh_dir("np2");
  const Result r1 = run(kPft + " train configs/quickstart.yaml" + kTiny + " --set run.dir=" + one.string());
  ASSERT_EQ(r1.code, 0) << r1.out;
  const Result r2 = run("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 " + kMpirun +
                        " -np 2 " + kPft + " train configs/quickstart.yaml" + kTiny +
                        " --set run.dir=" + two.string());
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_NE(r2.out.find("2 rank(s)"), std::string::npos) << r2.out;
  const std::vector<double> a = train_losses(one / "metrics.jsonl"), b = train_losses(two / "metrics.jsonl");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(b[i], a[i], 1e-5 * a[i]) << "step " << i + 1;
  fs::remove_all(one);
  fs::remove_all(two);
}

// run.trace: a 2-rank run writes one Chrome trace with a process per rank, a track per lane,
// only the steps [trace_from, trace_to) (0-based: metrics.jsonl's 2 and 3), every span of a step inside that step's span, the spans
// of each track nested (Note [trace tracks]: each bucket on a track of its own), the background
// write of the last traced step's checkpoint although it ends after tracing stopped (delayed),
// rank 0's counters equal to metrics.jsonl's per-rank throughput, and the ranks' clocks aligned
// although rank 1's is 5 s off (a test hook): the step boundary is a collective, so the ranks'
// spans of it overlap.
TEST(TrainCli, TraceOfTwoRanksHasEveryLaneAndAlignedClocks) {
  namespace json = boost::json;
  const fs::path dir = fresh_dir("trace");
  const Result r = run("PFT_TEST_TRACE_CLOCK_SKEW_US=1:5000000 PFT_TEST_DELAY=ckpt_write:0.4 " +
                       kMpirun2 + kPft + " train configs/quickstart.yaml --set train.steps=6" +
                       " --set train.warmup_steps=1" +
                       " --set run.threads=1 --set train.global_batch_size=4" +
                       " --set train.micro_batch_size=1 --set eval.every_steps=3" +
                       " --set eval.max_batches=1 --set checkpoint.every_steps=3" +
                       " --set checkpoint.async=true --set dist.bucket_cap_mb=0.05" +
                       " --set dist.first_bucket_mb=0.05 --set run.trace=true" +
                       " --set run.trace_from=1 --set run.trace_to=3 --set run.dir=" + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("trace: "), std::string::npos) << r.out;
  std::ifstream in(dir / "trace.json");
  ASSERT_TRUE(in) << "no trace.json";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const json::array events = json::parse(text).as_object().at("traceEvents").as_array();

  struct Span { int64_t lane, begin, end, step; std::string name; };
  std::map<int64_t, std::vector<Span>> by_rank;
  std::map<int64_t, std::string> process_names;
  std::map<std::pair<int64_t, int64_t>, std::string> lane_names;
  std::map<std::pair<int64_t, std::string>, std::vector<double>> counters;  // (pid, name)
  for (const json::value& v : events) {
    const json::object& e = v.as_object();
    const int64_t pid = e.at("pid").as_int64(), tid = e.at("tid").as_int64();
    const std::string name(e.at("name").as_string());
    if (e.at("ph").as_string() == "M") {
      if (name == "process_name") process_names[pid] = e.at("args").at("name").as_string().c_str();
      if (name == "thread_name") lane_names[{pid, tid}] = e.at("args").at("name").as_string().c_str();
      continue;
    }
    if (e.at("ph").as_string() == "C") {
      counters[std::make_pair(pid, name)].push_back(e.at("args").at("value").to_number<double>());
      continue;
    }
    ASSERT_EQ(e.at("ph").as_string(), "X");
    const int64_t ts = e.at("ts").as_int64(), dur = e.at("dur").as_int64();
    ASSERT_GE(ts, 0);
    ASSERT_GE(dur, 0);
    const int64_t step = e.contains("args") ? e.at("args").at("step").as_int64() : -1;
    by_rank[pid].push_back({tid, ts, ts + dur, step, name});
  }
  ASSERT_EQ(process_names.size(), 2u);
  EXPECT_EQ(process_names[0].rfind("rank 0 (", 0), 0u) << process_names[0];
  EXPECT_EQ(process_names[1].rfind("rank 1 (", 0), 0u) << process_names[1];
  EXPECT_EQ(lane_names[std::make_pair(int64_t{1}, int64_t{4})], "gradient all-reduce");
  ASSERT_EQ(by_rank.size(), 2u);
  for (auto& [rank, spans] : by_rank) {
    std::set<std::string> lanes;
    std::map<int64_t, Span> steps;
    for (const Span& s : spans) {
      lanes.insert(lane_names[std::make_pair(rank, s.lane)]);
      if (s.lane == 0) steps[s.step] = s;
    }
    // Steps 2 and 3 (metrics.jsonl's numbers), each once.
    ASSERT_EQ(steps.size(), 2u) << "rank " << rank;
    EXPECT_EQ(steps.begin()->first, 2);
    EXPECT_EQ(steps.rbegin()->first, 3);
    for (const char* lane : {"step", "data wait", "forward", "backward", "gradient all-reduce",
                             "optimizer", "controller", "evaluation", "checkpoint snapshot"})
      EXPECT_TRUE(lanes.contains(lane)) << "rank " << rank << " has no " << lane << " span";
    if (rank == 0) {
      // Rank 0 writes; step 3's write ends 0.4 s into the untraced steps and is still there.
      bool write3 = false;
      for (const Span& s : spans) write3 = write3 || (s.name == "write checkpoint" && s.step == 3);
      EXPECT_TRUE(write3) << "no background write of step 3's checkpoint";
    }
    // Buckets: several per step with 0.05 MB buckets, named "bucket N", each on its own track
    // named after it under the all-reduce lane.
    int buckets = 0;
    for (const Span& s : spans) {
      if (s.name.rfind("bucket ", 0) != 0) continue;
      ++buckets;
      EXPECT_EQ(lane_names[std::make_pair(rank, s.lane)], "gradient all-reduce: " + s.name);
    }
    EXPECT_GE(buckets, 2 * 2) << "rank " << rank;
    // Every track's spans nest (Perfetto drops the ones that overlap without nesting).
    std::map<int64_t, std::vector<Span>> by_track;
    for (const Span& s : spans) by_track[s.lane].push_back(s);
    for (auto& [track, list] : by_track) {
      std::sort(list.begin(), list.end(), [](const Span& a, const Span& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end > b.end;
      });
      std::vector<int64_t> open_ends;
      for (const Span& s : list) {
        while (!open_ends.empty() && open_ends.back() <= s.begin) open_ends.pop_back();
        EXPECT_TRUE(open_ends.empty() || s.end <= open_ends.back())
            << "rank " << rank << " track " << track << ": " << s.name << " [" << s.begin << ", "
            << s.end << "] overlaps an enclosing span ending at " << open_ends.back();
        open_ends.push_back(s.end);
      }
    }
    // Forward, backward and the optimizer of a step lie inside it (the spans without a step
    // number belong to the step whose span holds them).
    for (const Span& s : spans) {
      if (s.lane != 2 && s.lane != 3 && s.lane != 5) continue;
      bool inside = false;
      for (const auto& [n, st] : steps) inside = inside || (s.begin >= st.begin && s.end <= st.end);
      EXPECT_TRUE(inside) << "rank " << rank << ": " << s.name << " at " << s.begin
                          << " is in no traced step";
    }
  }
  // Rank 0's counters: metrics.jsonl's tokens_per_s_per_rank of steps 2 and 3, in order.
  std::vector<double> per_rank;
  {
    std::ifstream m(dir / "metrics.jsonl");
    for (std::string line; std::getline(m, line);) {
      const json::object o = json::parse(line).as_object();
      if (o.at("kind").as_string() != "train") continue;
      const int64_t step = o.at("step").as_int64();
      if (step >= 2 && step <= 3) per_rank.push_back(o.at("tokens_per_s_per_rank").to_number<double>());
    }
  }
  using Key = std::pair<int64_t, std::string>;
  const std::vector<double>& tps = counters[Key{0, "tokens/s per rank"}];
  ASSERT_EQ(tps.size(), 2u);
  ASSERT_EQ(per_rank.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(tps[i], per_rank[i], 1e-9 * per_rank[i]) << i;
  EXPECT_EQ((counters[Key{0, "model TFLOP/s per rank"}].size()), 2u);
  EXPECT_FALSE((counters.contains(Key{1, "tokens/s per rank"})));  // rank 0's, as metrics.jsonl
  // Aligned clocks: each step boundary of rank 0 overlaps rank 1's (both wait in its collective).
  for (int64_t step = 2; step <= 3; ++step) {
    const auto boundary = [&](int64_t rank) {
      for (const Span& s : by_rank[rank])
        if (s.lane == 6 && s.step == step) return s;
      ADD_FAILURE() << "rank " << rank << " has no step boundary of step " << step;
      return Span{};
    };
    const Span a = boundary(0), b = boundary(1);
    EXPECT_LE(std::max(a.begin, b.begin), std::min(a.end, b.end) + 1000)
        << "step " << step << ": rank 0's boundary [" << a.begin << ", " << a.end << "] and rank 1's ["
        << b.begin << ", " << b.end << "] do not overlap (us)";
  }
  fs::remove_all(dir);
}

TEST(TrainCli, ConfigsTheTrainerCannotRunExitTwo) {
  const fs::path dir = fresh_dir("bad");
  Result r = run(kPft + " train configs/quickstart.yaml --set model.vocab_size=100 --set run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.vocab_size: 100 is smaller than the vocabulary"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--set model.vocab_size:1:1: error: model.vocab_size"), std::string::npos) << r.out;
  r = run(kPft + " train configs/quickstart.yaml --set model.n_heads=5 --set run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.n_heads"), std::string::npos) << r.out;
  r = run(kPft + " train configs/quickstart.yaml --set train.method=prefix_tuning "
          "--set peft.prefix_tokens=10 --set run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("peft.prefix_tokens: a prefix of 10"), std::string::npos) << r.out;
  // Under mpirun: every rank exits 2, one message.
  r = run("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 " + kMpirun +
          " -np 2 sh -c '" + kPft + " train configs/quickstart.yaml --set model.vocab_size=100 "
          "--set run.dir=" + dir.string() + "; echo rank-exit=$?'");
  size_t exits = 0, messages = 0;
  for (size_t p = r.out.find("rank-exit=2"); p != std::string::npos; p = r.out.find("rank-exit=2", p + 1)) ++exits;
  for (size_t p = r.out.find("is smaller than"); p != std::string::npos; p = r.out.find("is smaller than", p + 1)) ++messages;
  EXPECT_EQ(exits, 2u) << r.out;
  EXPECT_EQ(messages, 1u) << r.out;
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
}

}  // namespace
