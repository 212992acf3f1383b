// `pft sweep` end to end with the local executor, on tests/sweep/tiny.yaml (a tiny GPT-2 on two
// bundled tasks, about 2 s per trial): a 2x2 grid where one learning rate cannot learn ranks as
// expected; failing trials (diverged, bad input) are recorded and the sweep goes on; a bad trial
// config stops the sweep before anything runs; status, best.yaml and objective.html.
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

using pft::test::count;
using pft::test::Result;
using pft::test::run;

const std::string kPft = PFT_BIN;
const fs::path kRoot = PFT_SOURCE_ROOT;
const fs::path kTiny = kRoot / "tests/sweep/tiny.yaml";

fs::path scratch(const std::string& tag) {
  static int counter = 0;
  const fs::path d = fs::temp_directory_path() /
                     ("pft-sweep-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

fs::path write(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<json::object> jsonl(const fs::path& path, const std::string& kind = "") {
  std::vector<json::object> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json::object o = json::parse(line).as_object();
    if (kind.empty() || o.at("kind").as_string() == kind) out.push_back(std::move(o));
  }
  return out;
}

// Rows of the status table: trial id -> the row's words (rank first).
std::vector<std::vector<std::string>> table_rows(const std::string& out) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    if (w.size() >= 3 && w[0].find_first_not_of("0123456789") == std::string::npos &&
        w[1].size() == 4 && w[1][0] == 't')
      rows.push_back(w);
  }
  return rows;
}

// The mean over tasks of `metric` in the last `"template": "all"` eval records of a run.
double last_mean(const fs::path& run_dir, const std::string& metric) {
  std::map<int64_t, std::map<std::string, double>> by_step;
  for (const json::object& o : jsonl(run_dir / "metrics.jsonl", "eval"))
    if (o.at("template").is_string())
      by_step[o.at("step").as_int64()][o.at("task").as_string().c_str()] =
          o.at(metric).to_number<double>();
  double sum = 0;
  for (const auto& [task, v] : by_step.rbegin()->second) sum += v;
  return sum / static_cast<double>(by_step.rbegin()->second.size());
}

TEST(SweepCli, GridRanksTheLearningRateThatLearnsFirst) {
  const fs::path d = scratch("grid");
  // lr 1e-9 cannot learn in 12 steps; d_model only changes how fast the others learn.
  const fs::path file = write(d / "grid.yaml", "base: " + kTiny.string() + "\n"
                              "parameters:\n"
                              "  train.lr: [1.0e-9, 3.0e-3]\n"
                              "  model.d_model: [32, 48]\n"
                              "objective: {metric: eval.loss}\n");
  const Result r = run(kPft + " sweep run " + file.string() + " --dir " + (d / "out").string());
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<std::vector<std::string>> rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 4u) << r.out;
  // t002/t003 (lr 3e-3) rank above t000/t001 (lr 1e-9), every trial finished all 12 steps.
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(rows[i][0], std::to_string(i + 1)) << r.out;
    EXPECT_EQ(rows[i][2], i < 2 ? "3.0e-3" : "1.0e-9") << r.out;
    EXPECT_EQ(rows[i][5], "12") << r.out;
    EXPECT_EQ(rows[i][6], "finished") << r.out;
  }
  EXPECT_NE(r.out.find("eval.loss (min)"), std::string::npos) << r.out;

  // sweep.jsonl: one started and one finished per trial, the objective as the trial recorded it.
  const fs::path out = d / "out";
  EXPECT_EQ(jsonl(out / "sweep.jsonl", "started").size(), 4u);
  const std::vector<json::object> finished = jsonl(out / "sweep.jsonl", "finished");
  ASSERT_EQ(finished.size(), 4u);
  std::map<std::string, double> objective;
  for (const json::object& e : finished) {
    const std::string id = e.at("trial").as_string().c_str();
    objective[id] = e.at("objective").to_number<double>();
    EXPECT_NEAR(objective[id], last_mean(out / "trials" / id, "loss"), 1e-9) << id;
    EXPECT_EQ(e.at("step").as_int64(), 12);
    EXPECT_TRUE(e.at("params").as_object().contains("train.lr"));
  }
  // What "cannot learn" means here: the held-out loss barely moves at lr 1e-9.
  EXPECT_LT(objective["t002"] + 0.5, objective["t000"]);
  EXPECT_LT(objective["t003"] + 0.5, objective["t001"]);

  // best.yaml is the winner's resolved config.
  const std::string best = read(out / "best.yaml");
  const std::string winner = rows[0][1];
  ASSERT_FALSE(best.empty());
  EXPECT_EQ(best.substr(best.find('\n') + 1), read(out / "trials" / winner / "config.resolved.yaml"));
  EXPECT_NE(best.find("best trial " + winner), std::string::npos) << best;
  // objective.html: one line per trial, inline SVG, nothing fetched.
  const std::string html = read(out / "objective.html");
  EXPECT_EQ(count(html, "<polyline"), 4u) << html;
  EXPECT_EQ(count(html, "<svg"), 1u);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));

  // status prints the same ranking; a rerun of the finished sweep runs nothing.
  const Result s = run(kPft + " sweep status " + out.string());
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_EQ(table_rows(s.out), rows) << s.out;
  const Result again = run(kPft + " sweep run " + file.string() + " --dir " + out.string());
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("0 to run, 4 ended before"), std::string::npos) << again.out;
  EXPECT_EQ(jsonl(out / "sweep.jsonl", "started").size(), 4u);
}

TEST(SweepCli, FailedTrialsAreRecordedAndTheSweepGoesOn) {
  const fs::path d = scratch("fail");
  // lr 1e30 diverges (NaN loss, yet `pft train` exits 0); a model that does not exist is bad
  // input (exit 2) that only the trial's own start-up finds. Two at a time.
  const fs::path file = write(d / "fail.yaml", "base: " + kTiny.string() + "\n"
                              "parameters:\n"
                              "  model.from_pretrained: [\"\", " + (d / "no-such-model").string() + "]\n"
                              "  train.lr: [3.0e-3, 1.0e30]\n"
                              "objective: {metric: eval.add.loss}\n"
                              "executor: {parallel: 2}\n");
  const Result r = run(kPft + " sweep run " + file.string() + " --dir " + (d / "out").string());
  ASSERT_EQ(r.code, 0) << r.out;  // one trial finished
  const fs::path out = d / "out";
  std::map<std::string, json::object> last;
  for (json::object& e : jsonl(out / "sweep.jsonl")) last[e.at("trial").as_string().c_str()] = e;
  ASSERT_EQ(last.size(), 4u);
  EXPECT_EQ(last["t000"].at("kind").as_string(), "finished");
  EXPECT_EQ(last["t001"].at("kind").as_string(), "failed");
  EXPECT_NE(std::string(last["t001"].at("message").as_string()).find("diverged: training loss nan"),
            std::string::npos) << last["t001"];
  for (const char* id : {"t002", "t003"}) {
    EXPECT_EQ(last[id].at("kind").as_string(), "failed") << id;
    EXPECT_EQ(last[id].at("exit_code").as_int64(), 2) << id;
    const std::string m = last[id].at("message").as_string().c_str();
    EXPECT_NE(m.find("error: model.from_pretrained: " + (d / "no-such-model").string()),
              std::string::npos) << m;
    // The message is the last error line of the trial's own log.
    EXPECT_NE(read(out / "trials" / id / "sweep.log").find(m), std::string::npos) << id;
  }
  const std::vector<std::vector<std::string>> rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 4u) << r.out;
  EXPECT_EQ(rows[0][1], "t000");
  EXPECT_EQ(rows[0].back(), "finished");
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(rows[i].back(), "failed") << r.out;
  EXPECT_NE(r.out.find("t001 failed: diverged"), std::string::npos) << r.out;
  EXPECT_NE(read(out / "best.yaml").find("best trial t000"), std::string::npos);
  EXPECT_NE(r.out.find("1 finished, 3 failed"), std::string::npos) << r.out;
}

TEST(SweepCli, ABadTrialStopsTheSweepBeforeAnythingRuns) {
  const fs::path d = scratch("bad");
  const fs::path file = write(d / "bad.yaml", "base: " + kTiny.string() + "\n"
                              "parameters:\n"
                              "  train.micro_batch_size: [4, 3]\n"
                              "objective: {metric: eval.loss}\n");
  Result r = run(kPft + " sweep run " + file.string() + " --dir " + (d / "out").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trial t001 (train.micro_batch_size=3)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("error: train.global_batch_size: 4 is not a multiple of "
                       "train.micro_batch_size = 3"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d / "out" / "trials")) << "a trial ran";
  EXPECT_FALSE(fs::exists(d / "out" / "sweep.jsonl"));
  // A sweep file error names file:line:col.
  write(d / "typo.yaml", "base: " + kTiny.string() + "\nparameters:\n  train.lr: {grdi: [1]}\n"
        "objective: {metric: eval.loss}\n");
  r = run(kPft + " sweep run " + (d / "typo.yaml").string() + " --dir " + (d / "out").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find((d / "typo.yaml").string() + ":3:14: error: parameters.train.lr.grdi"),
            std::string::npos) << r.out;
  // status of a directory that holds no sweep.
  r = run(kPft + " sweep status " + d.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("is not a sweep directory"), std::string::npos) << r.out;
}

}  // namespace
