// `pft train` with checkpoints and `pft ckpt`, end to end:
//   - bitwise resume: 2 ranks on the CPU (fp32, 1 thread each), every rank SIGKILLed at a random
//     step, resumed with train.resume: auto -> per-step losses and the final parameter hash equal
//     an uninterrupted run's, bit for bit (and `pft ckpt diff` of the final checkpoints: same);
//   - SIGUSR1 to one rank -> every rank checkpoints at the next step boundary and exits 75; the
//     rerun resumes bitwise;
//   - a crash inside a save (PFT_TEST_CKPT_KILL_AT) -> the previous checkpoint is resumed;
//   - saved on 2 ranks, resumed on 1 (and on 1, resumed on 2): the same global samples, losses
//     within rounding;
//   - an architecture change is refused naming the key; an lr change is logged;
//   - an explicit corrupt train.resume fails closed (exit 2, naming the dataset); auto skips it
//     with a warning naming it;
//   - pft ckpt ls / inspect / verify (exit 0, then 2 naming the dataset after a bit flip) / diff /
//     export (safetensors + hf; with PFT_PYTHON, transformers loads the hf export).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ckpt_test_util.h"
#include "run_command.h"

namespace {
namespace fs = std::filesystem;

const std::string kPft = PFT_BIN;
const std::string kMpirun =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN;

using pft::test::Result;
using pft::test::pids_mentioning;
using pft::test::run;

fs::path fresh_dir(const std::string& tag) { return pft::ckpt::test::scratch_dir("cli-" + tag); }

// 12 steps of a tiny GPT-2 on synthetic data, a checkpoint every 2 steps.
std::string train_cmd(const fs::path& dir, const std::string& extra = "") {
  return kPft +
         " train configs/quickstart.yaml --set model.d_model=64 --set model.n_layers=2"
         " --set model.n_heads=4 --set data.seq_len=64 --set train.steps=12"
         " --set train.warmup_steps=2 --set train.global_batch_size=8"
         " --set train.micro_batch_size=2 --set run.threads=1 --set run.log_every=1"
         " --set checkpoint.every_steps=2 --set run.dir=" +
         dir.string() + extra;
}

struct Metrics {
  std::map<int64_t, double> loss;  // last written loss per step (a resumed run rewrites steps)
  std::string param_hash;          // of the "end" record
  std::vector<boost::json::object> checkpoints;
};

Metrics read_metrics(const fs::path& dir) {
  Metrics m;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const boost::json::object rec = boost::json::parse(line).as_object();
    const std::string kind(rec.at("kind").as_string());
    if (kind == "train") m.loss[rec.at("step").as_int64()] = rec.at("loss").to_number<double>();
    if (kind == "end") m.param_hash = std::string(rec.at("param_hash").as_string());
    if (kind == "checkpoint") m.checkpoints.push_back(rec);
  }
  return m;
}

// What the newest run in `dir` wrote to metrics.jsonl (after its "start" record): the steps of its
// "resume" records and, in order, of its "train" records.
struct Resumed {
  std::vector<int64_t> resume_steps;
  std::vector<int64_t> train_steps;
};

Resumed read_resumed_run(const fs::path& dir) {
  Resumed r;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const boost::json::object rec = boost::json::parse(line).as_object();
    const std::string kind(rec.at("kind").as_string());
    if (kind == "start") r = Resumed{};
    if (kind == "resume") r.resume_steps.push_back(rec.at("step").as_int64());
    if (kind == "train") r.train_steps.push_back(rec.at("step").as_int64());
  }
  return r;
}

int64_t last_step(const fs::path& dir) {
  const Metrics m = read_metrics(dir);
  return m.loss.empty() ? 0 : m.loss.rbegin()->first;
}

void expect_same_losses(const Metrics& a, const Metrics& b, int64_t steps) {
  ASSERT_EQ(a.loss.size(), static_cast<size_t>(steps));
  ASSERT_EQ(b.loss.size(), static_cast<size_t>(steps));
  for (int64_t s = 1; s <= steps; ++s)
    EXPECT_EQ(a.loss.at(s), b.loss.at(s)) << "step " << s;  // bitwise
}

TEST(ResumeCli, SigkillAllRanksAtRandomStepResumesBitwise) {
  const fs::path ref = fresh_dir("ref"), killed = fresh_dir("killed");
  const Result a = run(kMpirun + " -np 2 " + train_cmd(ref));
  ASSERT_EQ(a.code, 0) << a.out;

  std::mt19937 rng(
      static_cast<unsigned>(std::chrono::system_clock::now().time_since_epoch().count()));
  const int64_t kill_at = 3 + static_cast<int64_t>(rng() % 8);  // 3..10
  std::cout << "killing every rank at step >= " << kill_at << "\n";
  // SIGKILL to every process of this run: the ranks (found by their unique run dir), mpirun, sh.
  // Saves are asynchronous (checkpoint.async), so step 2's file can land after step 3 is logged;
  // the kill also waits for one checkpoint file, or there would be nothing to resume from.
  const auto has_checkpoint = [&] {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(killed / "checkpoints", ec)) {
      const std::string name = e.path().filename().string();
      if (name.starts_with("step_") && name.ends_with(".h5")) return true;
    }
    return false;
  };
  ASSERT_TRUE(pft::test::sigkill_job_when(
      kMpirun + " -np 2 " + train_cmd(killed), killed.string() + ".log", killed.string(),
      [&] { return last_step(killed) >= kill_at && has_checkpoint(); }))
      << "the run never reached step " << kill_at << " with a checkpoint written";
  const int64_t killed_at = last_step(killed);
  EXPECT_LT(killed_at, 12) << "the run finished before it was killed";
  // The checkpoints the killed run left (every 2 steps; the newest may be incomplete).
  std::vector<int64_t> left;
  for (const auto& e : fs::directory_iterator(killed / "checkpoints")) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("step_") && name.ends_with(".h5"))
      left.push_back(std::stoll(name.substr(5, name.size() - 8)));
  }
  ASSERT_FALSE(left.empty()) << "no checkpoint before the kill at step " << killed_at;
  const Metrics before = read_metrics(killed);
  const int64_t newest_reported =
      before.checkpoints.empty() ? 0 : before.checkpoints.back().at("step").as_int64();

  const Result b = run(kMpirun + " -np 2 " + train_cmd(killed, " --set train.resume=auto"));
  ASSERT_EQ(b.code, 0) << b.out;
  // The second run really resumed: its "resume" record names a checkpoint the killed run left
  // (the newest complete one: at least the newest it reported), the log names the same file and
  // step, and it trained exactly the steps after that one.
  const Resumed r = read_resumed_run(killed);
  ASSERT_EQ(r.resume_steps.size(), 1u) << "expected one resume record in the second run\n" << b.out;
  const int64_t from = r.resume_steps[0];
  EXPECT_NE(std::find(left.begin(), left.end(), from), left.end())
      << "resumed from step " << from << ", not a checkpoint the killed run left";
  EXPECT_GE(from, newest_reported);
  EXPECT_LE(from, killed_at);
  std::array<char, 64> line{};
  std::snprintf(line.data(), line.size(), "step_%08lld.h5 at step %lld",
                static_cast<long long>(from), static_cast<long long>(from));
  EXPECT_NE(b.out.find("resume: from "), std::string::npos) << b.out;
  EXPECT_NE(b.out.find(line.data()), std::string::npos) << b.out;
  std::vector<int64_t> expected_steps;
  for (int64_t s = from + 1; s <= 12; ++s) expected_steps.push_back(s);
  EXPECT_EQ(r.train_steps, expected_steps) << "steps the second run trained";
  const Metrics ma = read_metrics(ref), mb = read_metrics(killed);
  expect_same_losses(ma, mb, 12);
  ASSERT_FALSE(ma.param_hash.empty());
  EXPECT_EQ(ma.param_hash, mb.param_hash);
  const Result d = run(kPft + " ckpt diff " + (ref / "checkpoints/step_00000012.h5").string() +
                       " " + (killed / "checkpoints/step_00000012.h5").string());
  EXPECT_EQ(d.code, 0) << d.out;
  EXPECT_NE(d.out.find("IDENTICAL"), std::string::npos) << d.out;
  fs::remove_all(ref);
  fs::remove_all(killed);
  fs::remove(killed.string() + ".log");
}

// Preemption (core/signals.h): SIGUSR1 to one rank of two -> both stop at the next step boundary
// after a checkpoint (the only one: periodic saves are off), exit 75, one "preempted" line; the
// rerun with train.resume: auto finishes with the uninterrupted run's losses and parameters, bit
// for bit.
TEST(ResumeCli, SignalToOneRankCheckpointsExits75AndResumesBitwise) {
  const fs::path ref = fresh_dir("sig-ref"), dir = fresh_dir("sig");
  const std::string no_periodic = " --set checkpoint.every_steps=0";
  const Result a = run(kMpirun + " -np 2 " + train_cmd(ref, no_periodic));
  ASSERT_EQ(a.code, 0) << a.out;

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    setpgid(0, 0);
    const std::string cmd = kMpirun + " -np 2 " + train_cmd(dir, no_periodic) + " > " +
                            (dir.string() + ".log") + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (last_step(dir) < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_GE(last_step(dir), 3) << "the run never reached step 3";
  // One rank: a process of this run whose command line starts with the pft binary.
  pid_t rank = -1;
  for (pid_t p : pids_mentioning(dir.string())) {
    std::ifstream f("/proc/" + std::to_string(p) + "/cmdline", std::ios::binary);
    std::string argv0;
    std::getline(f, argv0, '\0');
    if (argv0 == PFT_BIN) rank = p;
  }
  ASSERT_GT(rank, 0) << "no rank process found";
  ASSERT_EQ(kill(rank, SIGUSR1), 0);
  const int status = pft::test::wait_child(child, std::chrono::seconds(240), "the SIGUSR1ed run");
  std::ifstream log_file(dir.string() + ".log");
  const std::string log((std::istreambuf_iterator<char>(log_file)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(status >= 0 && WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 75) << log;
  EXPECT_NE(log.find("SIGUSR1: checkpoint of step "), std::string::npos) << log;

  // Exactly one checkpoint, of the step the "preempted" line names, before the end.
  int64_t preempted_at = -1;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const boost::json::object rec = boost::json::parse(line).as_object();
    if (rec.at("kind").as_string() == "preempted") {
      preempted_at = rec.at("step").as_int64();
      EXPECT_EQ(rec.at("signal").as_string(), "SIGUSR1");
    }
  }
  ASSERT_GT(preempted_at, 0) << log;
  EXPECT_LT(preempted_at, 12);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    if (e.path().extension() == ".h5") files.push_back(e.path().filename().string());
  ASSERT_EQ(files.size(), 1u);
  std::array<char, 32> name{};
  std::snprintf(name.data(), name.size(), "step_%08lld.h5", static_cast<long long>(preempted_at));
  EXPECT_EQ(files[0], std::string(name.data()));

  const Result b = run(kMpirun + " -np 2 " + train_cmd(dir, no_periodic + " --set train.resume=auto"));
  ASSERT_EQ(b.code, 0) << b.out;
  const Metrics ma = read_metrics(ref), mb = read_metrics(dir);
  expect_same_losses(ma, mb, 12);
  ASSERT_FALSE(ma.param_hash.empty());
  EXPECT_EQ(ma.param_hash, mb.param_hash);
  fs::remove_all(ref);
  fs::remove_all(dir);
  fs::remove(dir.string() + ".log");
}

TEST(ResumeCli, CrashInsideASaveResumesThePreviousCheckpoint) {
  const fs::path ref = fresh_dir("save-ref"), dir = fresh_dir("save-crash");
  ASSERT_EQ(run(train_cmd(ref, " --set checkpoint.async=false")).code, 0);
  // A run that dies inside the save of step 6 (half its datasets written).
  const Result crash = run("PFT_TEST_CKPT_KILL_AT=data:step_00000006.h5 " + train_cmd(dir));
  EXPECT_EQ(crash.code, 128 + SIGKILL) << crash.out;
  bool stray = false;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    stray = stray || e.path().filename().string().find(".tmp-") != std::string::npos;
  EXPECT_TRUE(stray) << "the crash should have left a temporary file";
  const Result resumed = run(train_cmd(dir, " --set train.resume=auto"));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("step_00000004.h5 at step 4"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("interrupted save"), std::string::npos) << resumed.out;
  expect_same_losses(read_metrics(ref), read_metrics(dir), 12);
  EXPECT_EQ(read_metrics(ref).param_hash, read_metrics(dir).param_hash);
  fs::remove_all(ref);
  fs::remove_all(dir);
}

TEST(ResumeCli, OtherWorldSizeContinuesTheSameSamples) {
  const fs::path two = fresh_dir("ws2"), one = fresh_dir("ws1"), back = fresh_dir("ws2b");
  const std::string keep = " --set checkpoint.keep_last=10";
  ASSERT_EQ(run(kMpirun + " -np 2 " + train_cmd(two, keep)).code, 0);
  // Resume the step-6 checkpoint of the 2-rank run on 1 rank; and a 1-rank run's on 2 ranks.
  fs::create_directories(one / "checkpoints");
  fs::copy_file(two / "checkpoints/step_00000006.h5", one / "checkpoints/step_00000006.h5");
  const Result r1 = run(train_cmd(one, keep + " --set train.resume=auto"));
  ASSERT_EQ(r1.code, 0) << r1.out;
  EXPECT_NE(r1.out.find("saved on 2 rank(s)"), std::string::npos) << r1.out;
  const Metrics m2 = read_metrics(two), m1 = read_metrics(one);
  ASSERT_EQ(m1.loss.size(), 6u);
  for (int64_t s = 7; s <= 12; ++s) EXPECT_NEAR(m1.loss.at(s), m2.loss.at(s), 1e-5) << s;

  fs::create_directories(back / "checkpoints");
  fs::copy_file(one / "checkpoints/step_00000010.h5", back / "checkpoints/step_00000010.h5");
  const Result r2 = run(kMpirun + " -np 2 " + train_cmd(back, " --set train.resume=auto"));
  ASSERT_EQ(r2.code, 0) << r2.out;
  const Metrics mb = read_metrics(back);
  for (int64_t s = 11; s <= 12; ++s) EXPECT_NEAR(mb.loss.at(s), m2.loss.at(s), 1e-5) << s;
  fs::remove_all(two);
  fs::remove_all(one);
  fs::remove_all(back);
}

TEST(ResumeCli, ConfigChangesAndCorruptFiles) {
  const fs::path dir = fresh_dir("changes");
  ASSERT_EQ(run(train_cmd(dir, " --set train.steps=4")).code, 0);
  Result r = run(train_cmd(dir, " --set train.resume=auto --set model.d_model=128"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.d_model 64 -> 128"), std::string::npos) << r.out;
  r = run(train_cmd(dir, " --set train.resume=auto --set train.steps=6 --set train.lr=0.0005"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resume: config changed: train.lr:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("resume: config changed: train.steps: 4 -> 6"), std::string::npos) << r.out;

  // Corrupt the newest (step 6): an explicit path fails closed; auto skips it, naming it.
  const fs::path newest = dir / "checkpoints/step_00000006.h5";
  // First a crafted change (the whole-file seal recomputed): the dataset checksum names it.
  pft::ckpt::test::flip_bit(
      newest,
      pft::ckpt::test::data_offset(newest, "/model/transformer.h.0.attn.c_attn.weight") + 77);
  pft::ckpt::test::reseal(newest);
  r = run(train_cmd(dir, " --set train.steps=8 --set train.resume=" + newest.string()));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("train.resume"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/model/transformer.h.0.attn.c_attn.weight: checksum mismatch"),
            std::string::npos)
      << r.out;
  r = run(train_cmd(dir, " --set train.steps=8 --set train.resume=" + (dir / "nope.h5").string()));
  EXPECT_EQ(r.code, 2) << r.out;
  // Then damage as the fault matrix's flip_ckpt does it (issue 18: HDF5 1.10 crashed auto-resume
  // inside H5Lvisit): bytes flipped in HDF5's metadata near the start and the end and in the
  // data. The seal refuses the file before HDF5 reads it: verify and ls say so, auto skips it.
  const auto size = fs::file_size(newest);
  for (const uint64_t off : {uint64_t{4200}, uint64_t{4500}, uint64_t{5000}, uint64_t{40000},
                             size / 2, size - 2000, size - 300, size - 8})
    pft::ckpt::test::flip_bit(newest, off, 5);
  r = run(kPft + " ckpt verify " + newest.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("damaged: whole-file checksum mismatch"), std::string::npos) << r.out;
  r = run(kPft + " ckpt ls " + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("INVALID"), std::string::npos) << r.out;
  r = run(train_cmd(dir, " --set train.steps=8 --set train.resume=auto"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("skipping invalid checkpoint " + newest.string()), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("at step 4"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

// `pft ckpt ls` exits 2 when `latest` names an invalid or missing file, and still lists every
// file it can (docs/checkpoint-format.md, "Tools"); 0 when `latest` is fine.
TEST(CkptCli, LsExitsTwoWhenLatestNamesNoValidCheckpoint) {
  const fs::path dir = fresh_dir("ls-latest");
  ASSERT_EQ(run(train_cmd(dir, " --set train.steps=4 --set checkpoint.keep_last=5")).code, 0);
  const fs::path ckpts = dir / "checkpoints";
  Result r = run(kPft + " ckpt ls " + dir.string());
  EXPECT_EQ(r.code, 0) << r.out;

  fs::resize_file(ckpts / "step_00000004.h5", 100);  // the file `latest` names, truncated
  r = run(kPft + " ckpt ls " + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("INVALID"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step_00000002.h5"), std::string::npos) << r.out;  // still listed
  EXPECT_NE(r.out.find("pft ckpt ls: error: " + (ckpts / "latest").string() +
                       " names step_00000004.h5, which is invalid: "),
            std::string::npos)
      << r.out;

  std::ofstream(ckpts / "latest") << "step_00000006.h5\n";  // a file that does not exist
  r = run(kPft + " ckpt ls " + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("names step_00000006.h5, which does not exist"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("step_00000002.h5"), std::string::npos) << r.out;

  std::ofstream(ckpts / "latest") << "step_00000002.h5\n";
  r = run(kPft + " ckpt ls " + dir.string());
  EXPECT_EQ(r.code, 0) << r.out;
  fs::remove_all(dir);
}

TEST(CkptCli, LsInspectVerifyDiffExport) {
  const fs::path dir = fresh_dir("tools");
  ASSERT_EQ(run(train_cmd(dir, " --set train.steps=4 --set checkpoint.keep_last=5")).code, 0);
  const std::string f2 = (dir / "checkpoints/step_00000002.h5").string();
  const std::string f4 = (dir / "checkpoints/step_00000004.h5").string();
  Result r = run(kPft + " ckpt ls " + dir.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("*  step_00000004.h5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step_00000002.h5"), std::string::npos) << r.out;

  r = run(kPft + " ckpt inspect " + f4);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("step:        4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model:  gpt2 d_model=64 n_layers=2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/model/transformer.wte.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/optimizer/exp_avg_sq/transformer.ln_f.bias"), std::string::npos) << r.out;

  r = run(kPft + " ckpt verify " + f4);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("OK "), std::string::npos) << r.out;
  // --file-locking before or after the subcommand (docs/checkpoint-format.md).
  for (const std::string& cmd : {" ckpt --file-locking verify " + f4,
                                 " ckpt verify " + f4 + " --file-locking",
                                 " ckpt ls --file-locking " + dir.string()}) {
    r = run(kPft + cmd);
    EXPECT_EQ(r.code, 0) << cmd << "\n" << r.out;
  }

  r = run(kPft + " ckpt diff " + f2 + " " + f4);
  EXPECT_EQ(r.code, 1) << r.out;  // differ: 1, like cmp (docs/launching.md)
  EXPECT_NE(r.out.find("step:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("values differ"), std::string::npos) << r.out;

  const fs::path st = dir / "st", hf = dir / "hf";
  r = run(kPft + " ckpt export " + f4 + " --format safetensors --out " + st.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(st / "model.safetensors"));
  r = run(kPft + " ckpt export " + f4 + " --format hf --out " + hf.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(hf / "config.json"));
#ifdef PFT_PYTHON
  // transformers loads the export with no missing or unexpected weights, equal to the checkpoint.
  const std::string py =
      "import h5py, numpy as np, transformers, sys\n"
      "m, info = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], "
      "output_loading_info=True)\n"
      "assert not info['missing_keys'] and not info['unexpected_keys'], info\n"
      "f = h5py.File(sys.argv[2], 'r')\n"
      "for n, p in m.named_parameters():\n"
      "    assert np.array_equal(p.detach().numpy(), f['model/' + n][()]), n\n"
      "print('hf export OK', type(m).__name__)\n";
  std::ofstream(dir / "load.py") << py;
  r = run(std::string(PFT_PYTHON) + " " + (dir / "load.py").string() + " " + hf.string() + " " +
          f4);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("hf export OK GPT2LMHeadModel"), std::string::npos) << r.out;
#endif

  pft::ckpt::test::flip_bit(f4,
                            pft::ckpt::test::data_offset(f4, "/model/transformer.wpe.weight") + 5);
  pft::ckpt::test::reseal(f4);  // a crafted change: the dataset checksum is what refuses it
  r = run(kPft + " ckpt verify " + f4);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("/model/transformer.wpe.weight: checksum mismatch"), std::string::npos)
      << r.out;
  fs::resize_file(f2, 1000);
  r = run(kPft + " ckpt verify " + f2);
  EXPECT_EQ(r.code, 2) << r.out;
  fs::remove_all(dir);
}

}  // namespace
