// TensorBoard event files (run.tensorboard, train/tensorboard.h):
//   - the TFRecord checksum is CRC32C, masked as TensorFlow masks it;
//   - each metrics record kind maps to the documented tags (Note [TensorBoard tags]);
//   - a write that fails (the disk full: here a file-size limit) throws RuntimeFailure naming
//     the event file, as a failed metrics.jsonl append does; an unusable directory is an
//     InputError naming run.tensorboard;
//   - end to end, with PFT_PYTHON (the `tensorboard` package pinned in tests/reference/
//     requirements.txt): a real 2-rank `pft train` on the bundled tasks with an adaptive schedule,
//     evaluations and checkpoints, then resumed from a mid-run checkpoint into the same run.dir;
//     tests/train/tensorboard_check.py reads the event files with TensorBoard's own
//     EventAccumulator and checks every tag, step, value (float32) and wall time against
//     metrics.jsonl (the last record of a step counting after the resume).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "run_command.h"
#include "train/tensorboard.h"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

fs::path scratch(const std::string& tag) {
  static int counter = 0;
  const fs::path d =
      fs::temp_directory_path() /
      ("pft-tensorboard-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(d);
  return d;
}

std::map<std::string, double> scalars_of(const std::string& line,
                                         const std::vector<std::string>& tasks, int64_t* step) {
  const auto p = pft::tensorboard_scalars(json::parse(line).as_object(), tasks);
  std::map<std::string, double> out;
  if (!p) return out;
  if (step != nullptr) *step = p->step;
  for (const auto& s : p->scalars) out[s.tag] = s.value;
  return out;
}

TEST(TensorBoard, RecordChecksumIsMaskedCrc32c) {
  // CRC-32C of "123456789" is 0xE3069283 (the standard check value of the Castagnoli CRC).
  const uint32_t crc = 0xE3069283u;
  EXPECT_EQ(pft::tfrecord_masked_crc32c("123456789"), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
  // The empty string: CRC-32C 0.
  EXPECT_EQ(pft::tfrecord_masked_crc32c(""), 0xa282ead8u);
}

TEST(TensorBoard, RecordsMapToTheDocumentedTags) {
  const std::vector<std::string> tasks = {"add", "sentiment"};
  int64_t step = -1;
  auto train = scalars_of(
      R"({"kind":"train","step":7,"loss":2.5,"lr":0.001,"grad_norm":1.25,"tokens":768,)"
      R"("target_tokens":40,"tokens_per_s":1000.5,"step_time_s":0.75,"step_time_max_s":0.8,)"
      R"("comm_time_s":0.0,"comm_bytes":123,"control_s":0.01,"world_size":2,)"
      R"("task_loss":[3.0,null],"task_tokens":[40,0],"phase":0,"skipped":true,"time":1.5})",
      tasks, &step);
  EXPECT_EQ(step, 7);
  const std::map<std::string, double> want_train = {{"train/loss", 2.5},
                                                    {"train/lr", 0.001},
                                                    {"train/grad_norm", 1.25},
                                                    {"train/tokens", 768},
                                                    {"train/target_tokens", 40},
                                                    {"train/tokens_per_s", 1000.5},
                                                    {"train/step_time_s", 0.75},
                                                    {"train/step_time_max_s", 0.8},
                                                    {"train/comm_time_s", 0.0},
                                                    {"train/comm_bytes", 123},
                                                    {"train/control_s", 0.01},
                                                    {"train/world_size", 2},
                                                    {"train/phase", 0},
                                                    {"train/loss/add", 3.0},
                                                    {"train/target_tokens/add", 40},
                                                    {"train/target_tokens/sentiment", 0}};
  EXPECT_EQ(train, want_train);  // no train/loss/sentiment (null), no skipped (a boolean)

  EXPECT_EQ(scalars_of(R"({"kind":"eval","step":4,"task":"add","template":1,"template_name":"q",)"
                       R"("held_out":true,"loss":1.5,"perplexity":4.5,"exact_match":0.25,)"
                       R"("tokens":10,"documents":3})",
                       tasks, nullptr),
            (std::map<std::string, double>{{"eval/add/q/loss", 1.5},
                                           {"eval/add/q/perplexity", 4.5},
                                           {"eval/add/q/exact_match", 0.25},
                                           {"eval/add/q/tokens", 10},
                                           {"eval/add/q/documents", 3}}));
  EXPECT_EQ(scalars_of(R"({"kind":"eval","step":4,"task":"add","template":"all","loss":1.5,)"
                       R"("worst_template_loss":2.0,"documents":6})",
                       tasks, nullptr),
            (std::map<std::string, double>{{"eval/add/loss", 1.5},
                                           {"eval/add/worst_template_loss", 2.0},
                                           {"eval/add/documents", 6}}));
  EXPECT_EQ(scalars_of(R"({"kind":"mixture","step":4,"phase":"p","reason":"adaptive",)"
                       R"("weights":{"add":0.75,"sentiment":0.25}})",
                       tasks, &step),
            (std::map<std::string, double>{{"mixture/add", 0.75}, {"mixture/sentiment", 0.25}}));
  EXPECT_EQ(step, 4);
  EXPECT_EQ(scalars_of(R"({"kind":"phase","step":4,"phase":"p","index":1,"reason":"steps"})", tasks,
                       nullptr),
            (std::map<std::string, double>{{"schedule/phase", 1}}));
  EXPECT_EQ(scalars_of(R"({"kind":"checkpoint","step":4,"file":"f","bytes":10,"file_bytes":20,)"
                       R"("write_s":0.5,"mb_per_s":2.0,"stall_s":0.1,"async":false,"deleted":[]})",
                       tasks, nullptr),
            (std::map<std::string, double>{{"checkpoint/bytes", 10},
                                           {"checkpoint/file_bytes", 20},
                                           {"checkpoint/write_s", 0.5},
                                           {"checkpoint/mb_per_s", 2.0},
                                           {"checkpoint/stall_s", 0.1}}));
  EXPECT_EQ(scalars_of(R"({"kind":"end","step":8,"tokens_seen":100,"param_hash":"x",)"
                       R"("peak_rss_mb":12.5})",
                       tasks, nullptr),
            (std::map<std::string, double>{{"end/tokens_seen", 100}, {"end/peak_rss_mb", 12.5}}));
  // No series: start has no step, the others no number worth plotting.
  for (const char* line :
       {R"({"kind":"start","world_size":2,"steps":8,"parameters":5,"method":"full"})",
        R"({"kind":"resume","step":4,"world_size":2})",
        R"({"kind":"stopped","step":4,"reason":"schedule"})",
        R"({"kind":"preempted","step":4,"signal":"SIGTERM"})"})
    EXPECT_FALSE(pft::tensorboard_scalars(json::parse(line).as_object(), tasks)) << line;
}

TEST(TensorBoard, WriteFailureThrowsNamingTheFile) {
  const fs::path dir = scratch("full");
  pft::EventFileWriter w(dir);
  const std::string name = w.path().filename().string();
  EXPECT_TRUE(name.starts_with("events.out.tfevents.")) << name;
  // The disk "fills up": a file-size limit at the current size (SIGXFSZ ignored, so write(2)
  // fails with EFBIG as it would with ENOSPC).
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &previous), 0);
  rlimit small = old;
  small.rlim_cur = static_cast<rlim_t>(fs::file_size(w.path()));
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    for (int step = 1; step <= 1000; ++step) w.add_scalars(step, 1.0, {{"train/loss", 1.0}});
    w.flush();
  } catch (const pft::RuntimeFailure& e) {
    message = e.what();
  }
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  ASSERT_EQ(sigaction(SIGXFSZ, &previous, nullptr), 0);
  EXPECT_NE(message.find(w.path().string()), std::string::npos) << message;
  EXPECT_NE(message.find("TensorBoard"), std::string::npos) << message;
  fs::remove_all(dir);
}

TEST(TensorBoard, UnusableDirectoryIsAnInputErrorNamingTheKey) {
  const fs::path dir = scratch("notadir");
  fs::create_directories(dir);
  std::ofstream(dir / "tensorboard") << "a file where the directory should be";
  try {
    pft::EventFileWriter w(dir / "tensorboard");
    FAIL() << "created an event file under a regular file";
  } catch (const pft::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("run.tensorboard"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find((dir / "tensorboard").string()), std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

#ifdef PFT_PYTHON
const std::string kMpirun =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN;

// A tiny GPT-2 on the bundled tasks, 2 ranks: a uniform phase, then an adaptive one re-weighing
// at every evaluation; evaluations and checkpoints every 4 steps.
std::string train_cmd(const fs::path& dir, int steps, const std::string& extra) {
  return kMpirun + " -np 2 " + PFT_BIN +
         " train configs/quickstart.yaml --set model.d_model=64 --set model.n_layers=2"
         " --set model.n_heads=4 --set data.seq_len=64 --set train.steps=" +
         std::to_string(steps) +
         " --set train.warmup_steps=2 --set train.lr=3e-3 --set train.global_batch_size=12"
         " --set train.micro_batch_size=2 --set run.threads=1 --set run.log_every=3"
         " --set eval.max_batches=1 --set eval.every_steps=4 --set checkpoint.every_steps=4"
         " --set checkpoint.keep_last=10 --set run.tensorboard=true"
         " --set 'schedule.phases=[{name: warm, mixing: uniform, steps: 4}, {name: ada, mixing:"
         " adaptive, adaptive_metric: loss, adaptive_smoothing: 0.3}]' --set run.dir=" +
         dir.string() + " " + extra;
}

pft::test::Result check(const fs::path& dir, int files) {
  return pft::test::run(std::string(PFT_PYTHON) + " " + PFT_SOURCE_ROOT +
                        "/tests/train/tensorboard_check.py " + dir.string() + " --files " +
                        std::to_string(files));
}

TEST(TensorBoardCli, EventFilesHoldWhatMetricsJsonlHoldsAcrossAResume) {
  const fs::path dir = scratch("run");
  const pft::test::Result a = pft::test::run(train_cmd(dir, 10, ""));
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_CONTAINS(a.out, "tensorboard: writing " + (dir / "tensorboard").string());
  const pft::test::Result first = check(dir, 1);
  EXPECT_EQ(first.code, 0) << first.out;
  // Every family of tags is there: per task, per template, mixture, schedule, checkpoint, end.
  for (const char* tag :
       {"train/loss:", "train/lr:", "train/grad_norm:", "train/tokens_per_s:", "train/comm_time_s:",
        "train/loss/add:", "eval/add/loss:", "eval/sentiment/accuracy:", "mixture/add:",
        "schedule/phase:", "checkpoint/write_s:", "end/tokens_seen:"})
    EXPECT_CONTAINS(first.out, tag);
  // Per template: eval/<task>/<template>/<metric>, one point per evaluation (steps 0, 4, 8, 10).
  std::ifstream in(dir / "metrics.jsonl");
  std::string tmpl;
  for (std::string line; std::getline(in, line) && tmpl.empty();) {
    const json::object r = json::parse(line).as_object();
    if (r.at("kind").as_string() == "eval" && r.at("template").is_int64())
      tmpl = "eval/" + std::string(r.at("task").as_string()) + "/" +
             std::string(r.at("template_name").as_string()) + "/loss: 4";
  }
  EXPECT_CONTAINS(first.out, tmpl);
  EXPECT_CONTAINS(first.out, "  train/loss: 10\n");

  // Resumed from step 4 into the same run.dir, to 12 steps: steps 5..10 written again (the
  // second run's ones count), a second event file, and TensorBoard shows each step once.
  const pft::test::Result b = pft::test::run(train_cmd(
      dir, 12, "--set train.resume=" + (dir / "checkpoints" / "step_00000004.h5").string()));
  ASSERT_EQ(b.code, 0) << b.out;
  const pft::test::Result second = check(dir, 2);
  EXPECT_EQ(second.code, 0) << second.out;
  EXPECT_CONTAINS(second.out, "  train/loss: 12\n");
  fs::remove_all(dir);
}
#endif

}  // namespace
