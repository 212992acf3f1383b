// The plan log (control/plan_log.h) without a training run: its line and column forms, the
// window rank 0 keeps (bounded by the saves and by its cap), and the file after crashes and
// resumes -- every step exactly once, equal to an uninterrupted run's (Note [plan log]).
#include <gtest/gtest.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/plan_log.h"
#include "core/error.h"

namespace {
namespace fs = std::filesystem;
using pft::PlanLog;
using pft::PlanRecord;
using pft::PlanRecorder;

fs::path scratch(const std::string& tag) {
  static int counter = 0;
  const fs::path d = fs::temp_directory_path() / ("pft-plan-log-" + tag + "-" +
                                                  std::to_string(getpid()) + "-" +
                                                  std::to_string(counter++));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A made-up step with `slots` slots and a step-dependent number of documents per slot.
PlanRecord step_record(int64_t step, int64_t slots = 3, int32_t world = 2) {
  PlanRecord r;
  r.step = step;
  r.phase = static_cast<int32_t>(step / 7);
  r.world_size = world;
  for (int64_t j = 0; j < slots; ++j) {
    r.slot_task.push_back(static_cast<int32_t>((step + j) % 5));
    std::vector<int32_t> ex, tmpl;
    for (int64_t d = 0; d < 1 + (step + j) % 4; ++d) {
      ex.push_back(static_cast<int32_t>(step * 10 + j * 3 + d));
      tmpl.push_back(static_cast<int32_t>(d % 2));
    }
    r.doc_example.push_back(ex);
    r.doc_template.push_back(tmpl);
  }
  return r;
}

std::vector<PlanRecord> steps(int64_t from, int64_t to, int64_t slots = 3) {
  std::vector<PlanRecord> out;
  for (int64_t s = from; s < to; ++s) out.push_back(step_record(s, slots));
  return out;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(PlanLog, LineRoundTripsAndNamesWhatIsWrong) {
  const PlanRecord r = step_record(12);
  const std::string line = pft::plan_line(r);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_TRUE(line.starts_with("{\"step\":12,\"phase\":1,\"world_size\":2,\"slot_task\":[2,3,4]"))
      << line;
  EXPECT_EQ(pft::parse_plan_line(line), r);
  EXPECT_EQ(pft::plan_line(pft::parse_plan_line(line)), line);
  const auto error_of = [](const std::string& text) {
    try {
      (void)pft::parse_plan_line(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("{\"step\":1,").find("not JSON"), std::string::npos);
  EXPECT_NE(error_of("[1,2]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{\"step\":1}").find("not a plan record"), std::string::npos);
  EXPECT_NE(error_of("{\"step\":1,\"phase\":0,\"world_size\":1,\"slot_task\":[0],"
                     "\"doc_example\":[[1,2]],\"doc_template\":[[0]]}")
                .find("slot 0"),
            std::string::npos);
  EXPECT_NE(error_of("{\"step\":1,\"phase\":0,\"world_size\":1,\"slot_task\":[0,1],"
                     "\"doc_example\":[[1]],\"doc_template\":[[0]]}")
                .find("one list per slot_task"),
            std::string::npos);
  EXPECT_NE(error_of("{\"step\":1,\"phase\":\"x\",\"world_size\":1,\"slot_task\":[],"
                     "\"doc_example\":[],\"doc_template\":[]}")
                .find("not a plan record"),
            std::string::npos);
}

TEST(PlanLog, ColumnsRoundTripAndRefuseInconsistentLengths) {
  const std::vector<PlanRecord> rs = steps(40, 46);
  const PlanLog log = pft::to_columns(std::deque<PlanRecord>(rs.begin(), rs.end()), 40, 3);
  EXPECT_EQ(log.first_step, 40);
  EXPECT_EQ(log.step, (std::vector<int64_t>{40, 41, 42, 43, 44, 45}));
  EXPECT_EQ(log.slot_task.size(), 18u);
  EXPECT_EQ(pft::to_records(log), rs);
  const PlanLog empty = pft::to_columns({}, 50, 3);
  EXPECT_EQ(empty.first_step, 50);
  EXPECT_TRUE(pft::to_records(empty).empty());
  PlanLog bad = log;
  bad.doc_example.pop_back();
  bad.doc_template.pop_back();
  EXPECT_THROW((void)pft::to_records(bad), std::invalid_argument);
  bad = log;
  bad.slot_docs[0] += 1;
  EXPECT_THROW((void)pft::to_records(bad), std::invalid_argument);
  bad = log;
  bad.phase.pop_back();
  EXPECT_THROW((void)pft::to_records(bad), std::invalid_argument);
}

// 5000 steps, a save every 10: the window never holds more than the steps since the save, each
// save hands over exactly those, and the file holds every step once, in order.
TEST(PlanLog, WindowIsBoundedBySavesAndFileHoldsEveryStep) {
  const fs::path dir = scratch("bounded");
  PlanRecorder rec(dir / "plan.jsonl", 3);
  rec.start(0, nullptr);
  size_t most = 0;
  for (int64_t s = 0; s < 5000; ++s) {
    rec.record(step_record(s));
    most = std::max(most, rec.window_steps());
    if ((s + 1) % 10 == 0) {
      const PlanLog w = rec.save(s + 1);
      ASSERT_EQ(w.first_step, s - 9);
      ASSERT_EQ(w.step.size(), 10u);
      ASSERT_EQ(w.step.back(), s);
      ASSERT_EQ(rec.window_steps(), 0u);
    }
  }
  EXPECT_EQ(most, 10u);
  EXPECT_EQ(pft::read_plan_file(dir / "plan.jsonl"), steps(0, 5000));
  fs::remove_all(dir);
}

// Without saves the window keeps the last `cap` steps; the file still has them all.
TEST(PlanLog, WindowIsCappedWithoutSaves) {
  const fs::path dir = scratch("capped");
  PlanRecorder rec(dir / "plan.jsonl", 3, /*window_cap=*/16);
  rec.start(0, nullptr);
  for (int64_t s = 0; s < 100; ++s) {
    rec.record(step_record(s));
    ASSERT_LE(rec.window_steps(), 16u);
  }
  const PlanLog w = rec.save(100);
  EXPECT_EQ(w.first_step, 84);
  EXPECT_EQ(pft::to_records(w), steps(84, 100));
  EXPECT_EQ(pft::read_plan_file(dir / "plan.jsonl"), steps(0, 100));
  // A line is written once its step has finished: the next step starts, or a save.
  rec.record(step_record(100));
  EXPECT_EQ(pft::read_plan_file(dir / "plan.jsonl").size(), 100u);
  rec.record(step_record(101));
  EXPECT_EQ(pft::read_plan_file(dir / "plan.jsonl").size(), 101u);
  fs::remove_all(dir);
}

// A run saves at 10 and 20, trains on to step 27 and dies (its last line torn, as a kill during
// a write leaves it); the resumed run starts from the checkpoint of step 20 and runs to 40. The
// file then equals an uninterrupted run's: every step once. Then a second crash right after the
// save of step 30, before the next line, and a resume from that save: the same.
TEST(PlanLog, ResumeAfterACrashLeavesEveryStepOnce) {
  const fs::path dir = scratch("resume");
  const fs::path file = dir / "plan.jsonl";
  PlanLog at20;
  {
    PlanRecorder rec(file, 3);
    rec.start(0, nullptr);
    for (int64_t s = 0; s < 27; ++s) {
      rec.record(step_record(s));
      if (s + 1 == 10) (void)rec.save(10);
      if (s + 1 == 20) at20 = rec.save(20);
    }
  }
  {
    std::ofstream torn(file, std::ios::app);
    torn << "{\"step\":27,\"phase\":3,\"wor";
  }
  ASSERT_EQ(at20.first_step, 10);
  PlanLog at30;
  {
    PlanRecorder rec(file, 3);
    rec.start(20, &at20);
    EXPECT_EQ(pft::read_plan_file(file), steps(0, 20));
    for (int64_t s = 20; s < 30; ++s) rec.record(step_record(s));
    at30 = rec.save(30);
    EXPECT_EQ(at30.first_step, 20);
    rec.record(step_record(30));  // dies in step 30: no line for it
  }
  {
    PlanRecorder rec(file, 3);
    rec.start(30, &at30);
    for (int64_t s = 30; s < 40; ++s) rec.record(step_record(s));
    (void)rec.save(40);
  }
  EXPECT_EQ(pft::read_plan_file(file), steps(0, 40));

  // The same file from an uninterrupted run, byte for byte.
  const fs::path ref = dir / "ref.jsonl";
  {
    PlanRecorder rec(ref, 3);
    rec.start(0, nullptr);
    for (int64_t s = 0; s < 40; ++s) {
      rec.record(step_record(s));
      if ((s + 1) % 10 == 0) (void)rec.save(s + 1);
    }
  }
  EXPECT_EQ(read_text(file), read_text(ref));
  fs::remove_all(dir);
}

// The checkpoint carries its window, so a resume rebuilds what the file lacks from it: a file
// removed (or a checkpoint taken to another run directory) continues from the window's first step;
// a version-1 checkpoint's window (every step since 0) rebuilds the whole file. A fresh run
// (train.resume: none) empties the file; a line that is not a plan record cuts the file there.
TEST(PlanLog, ResumeRebuildsFromTheCheckpointWindow) {
  const fs::path dir = scratch("rebuild");
  const fs::path file = dir / "plan.jsonl";
  const std::vector<PlanRecord> w = steps(10, 20);
  PlanLog window = pft::to_columns(std::deque<PlanRecord>(w.begin(), w.end()), 10, 3);
  {
    PlanRecorder rec(file, 3);
    rec.start(20, &window);  // no file: it starts at the window
    EXPECT_EQ(pft::read_plan_file(file), steps(10, 20));
  }
  const std::vector<PlanRecord> all = steps(0, 20);
  PlanLog v1 = pft::to_columns(std::deque<PlanRecord>(all.begin(), all.end()), 0, 3);
  fs::remove(file);
  {
    PlanRecorder rec(file, 3);
    rec.start(20, &v1);
    EXPECT_EQ(pft::read_plan_file(file), steps(0, 20));
  }
  {  // a window that reaches past the step resumed at keeps only the steps before it
    PlanRecorder rec(file, 3);
    rec.start(15, &v1);
    EXPECT_EQ(pft::read_plan_file(file), steps(0, 15));
  }
  {  // another batch size after the resume: lines of either width, in one file
    PlanRecorder rec(file, 5);
    const std::vector<PlanRecord> w2 = steps(0, 15);
    PlanLog same = pft::to_columns(std::deque<PlanRecord>(w2.begin() + 10, w2.end()), 10, 3);
    rec.start(15, &same);
    rec.record(step_record(15, 5));
    const PlanLog out = rec.save(16);
    EXPECT_EQ(out.slots, 5);
    std::vector<PlanRecord> expect = steps(0, 15);
    expect.push_back(step_record(15, 5));
    EXPECT_EQ(pft::read_plan_file(file), expect);
  }
  {  // a line that is not a plan record (edited by hand) cuts the file there; the window follows
    std::string text = read_text(file);
    const size_t third = text.find('\n', text.find('\n') + 1) + 1;
    text.replace(third, 1, "x");
    std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
    PlanRecorder rec(file, 3);
    rec.start(20, &window);
    std::vector<PlanRecord> expect = steps(0, 2);
    for (const PlanRecord& r : w) expect.push_back(r);
    EXPECT_EQ(pft::read_plan_file(file), expect);
  }
  {
    PlanRecorder rec(file, 3);
    rec.start(0, nullptr);
    EXPECT_TRUE(read_text(file).empty());
    EXPECT_TRUE(pft::read_plan_file(file).empty());
  }
  fs::remove_all(dir);
}

TEST(PlanLog, ErrorsNameTheFile) {
  const fs::path dir = scratch("errors");
  PlanRecorder rec(dir / "missing" / "plan.jsonl", 3);
  try {
    rec.start(0, nullptr);
    FAIL() << "no error for a plan log in a missing directory";
  } catch (const pft::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "missing" / "plan.jsonl").string()),
              std::string::npos)
        << e.what();
  }
  std::ofstream(dir / "bad.jsonl") << pft::plan_line(step_record(0)) << "\n{\"step\":1}\n";
  try {
    (void)pft::read_plan_file(dir / "bad.jsonl");
    FAIL() << "no error for a bad line";
  } catch (const pft::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2: "), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
