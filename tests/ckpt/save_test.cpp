// Saving a run's checkpoints: a process SIGKILLed at every point of a save leaves the previous
// checkpoint loadable and `latest` naming a complete file; a full disk (a 1 MiB tmpfs) fails the
// save cleanly; retention keeps the last N, the best K and the protected file; the async saver
// runs one save at a time and reports every save; resume picks the newest valid file and names
// the ones it skipped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "ckpt/reader.h"
#include "ckpt/run_checkpoints.h"
#include "ckpt/saver.h"
#include "ckpt/writer.h"
#include "ckpt_test_util.h"
#include "core/error.h"

namespace pft::ckpt {
namespace {

namespace fs = std::filesystem;
using test::sample_contents;
using test::scratch_dir;

SaverOptions sync_options(const fs::path& dir, int64_t keep_last = 10) {
  SaverOptions o;
  o.dir = dir;
  o.async = false;
  o.retention.keep_last = keep_last;
  return o;
}

// The step the resume rule picks (newest file that verifies), -1 when none.
int64_t resume_pick(const fs::path& dir, std::vector<std::string>* skipped = nullptr) {
  const Pick p = pick_newest(dir, [](const fs::path& f) { return verify_checkpoint(f).reason; });
  if (skipped) *skipped = p.skipped;
  return p.path ? p.step : -1;
}

TEST(CkptSave, NamesAndLatest) {
  EXPECT_EQ(checkpoint_file_name(100), "step_00000100.h5");
  EXPECT_EQ(parse_checkpoint_step("step_00000100.h5"), 100);
  EXPECT_EQ(parse_checkpoint_step("step_123456789.h5"), 123456789);
  EXPECT_FALSE(parse_checkpoint_step(".step_00000100.h5.tmp-12"));
  EXPECT_FALSE(parse_checkpoint_step("step_.h5"));
  EXPECT_FALSE(parse_checkpoint_step("step_12a.h5"));
  const auto dir = scratch_dir("latest");
  EXPECT_FALSE(read_latest(dir));
  write_latest(dir, "step_00000002.h5");
  EXPECT_EQ(read_latest(dir), "step_00000002.h5");
  std::ofstream(dir / "latest") << "../../etc/passwd\n";
  EXPECT_FALSE(read_latest(dir));  // never leaves the directory
  fs::remove_all(dir);
}

// Every kill point of Note [atomic save], in a forked child that saves step 2 after step 1.
TEST(CkptSave, SigkillAtEveryPointLeavesALoadableCheckpoint) {
  struct Case {
    const char* point;
    int64_t latest_step;  // what `latest` names afterwards
    int64_t resume_step;  // what resume picks
  };
  const Case cases[] = {
      {"created", 1, 1}, {"data", 1, 1}, {"closed", 1, 1}, {"renamed", 1, 2}, {"latest", 2, 2}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.point);
    const auto dir = scratch_dir(std::string("kill-") + k.point);
    {
      CheckpointSaver saver(sync_options(dir));
      saver.save(1, sample_contents(1, 200000), 0.0);
    }
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      setenv("PFT_TEST_CKPT_KILL_AT", k.point, 1);
      CheckpointSaver saver(sync_options(dir));
      saver.save(2, sample_contents(2, 200000), 0.0);
      _exit(0);  // not reached
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    ASSERT_TRUE(read_latest(dir));
    EXPECT_EQ(*read_latest(dir), checkpoint_file_name(k.latest_step));
    EXPECT_TRUE(verify_checkpoint(dir / *read_latest(dir)).ok);
    EXPECT_EQ(resume_pick(dir), k.resume_step);
    // The next save clears what the crash left and works.
    {
      CheckpointSaver saver(sync_options(dir));
      saver.save(3, sample_contents(3), 0.0);
    }
    for (const auto& e : fs::directory_iterator(dir))
      EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    EXPECT_EQ(resume_pick(dir), 3);
    fs::remove_all(dir);
  }
}

// A tmpfs of 1 MiB: the first (small) save fits, the second does not.
class TmpfsMount {
 public:
  explicit TmpfsMount(const fs::path& dir) : dir_(dir) {
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m") == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path dir_;
  bool mounted_ = false;
};

TEST(CkptSave, FullDiskKeepsThePreviousCheckpoint) {
  const auto dir = scratch_dir("fulldisk");
  {
    TmpfsMount mount(dir);
    if (!mount.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
    CheckpointSaver saver(sync_options(dir));
    saver.save(1, sample_contents(1, 20000), 0.0);  // ~160 KB with optimizer state
    try {
      saver.save(2, sample_contents(2, 400000), 0.0);  // ~3.2 MB: does not fit
      ADD_FAILURE() << "a save onto a full disk succeeded";
    } catch (const RuntimeFailure& e) {
      EXPECT_NE(std::string(e.what()).find("step_00000002.h5"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("previous checkpoints are untouched"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(read_latest(dir), checkpoint_file_name(1));
    EXPECT_FALSE(fs::exists(dir / checkpoint_file_name(2)));
    for (const auto& e : fs::directory_iterator(dir))
      EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    EXPECT_EQ(resume_pick(dir), 1);
    // Async mode: the failure surfaces at the next wait.
    SaverOptions ao = sync_options(dir);
    ao.async = true;
    CheckpointSaver async_saver(ao);
    async_saver.save(3, sample_contents(3, 400000), 0.0);
    EXPECT_THROW(async_saver.wait(), RuntimeFailure);
    EXPECT_EQ(resume_pick(dir), 1);
  }
  fs::remove_all(dir);
}

TEST(CkptSave, ResumePickSkipsCorruptNewestAndNamesIt) {
  const auto dir = scratch_dir("pick");
  CheckpointSaver saver(sync_options(dir));
  for (int64_t s = 1; s <= 3; ++s) saver.save(s, sample_contents(s), 0.0);
  test::flip_bit(dir / checkpoint_file_name(3),
                 test::data_offset(dir / checkpoint_file_name(3), "/model/transformer.wte.weight"));
  fs::resize_file(dir / checkpoint_file_name(2), 100);
  std::vector<std::string> skipped;
  EXPECT_EQ(resume_pick(dir, &skipped), 1);
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_NE(skipped[0].find("step_00000003.h5"), std::string::npos);
  EXPECT_NE(skipped[0].find("/model/transformer.wte.weight"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[1].find("step_00000002.h5"), std::string::npos);
  fs::remove_all(dir);
}

TEST(CkptSave, RetentionKeepsLastBestAndProtected) {
  const auto dir = scratch_dir("retention");
  SaverOptions o = sync_options(dir, 2);
  o.retention.keep_best = 1;
  o.retention.best_metric = "loss";
  CheckpointSaver saver(o);
  saver.protect(dir / checkpoint_file_name(2));
  // loss of step s: 10/(s+1), except step 3 is the best by far.
  for (int64_t s = 1; s <= 7; ++s) {
    Contents c = sample_contents(s);
    if (s == 3) c.group(kMeta)["metric.loss"] = 0.01;
    saver.save(s, std::move(c), 0.0);
  }
  std::vector<int64_t> left;
  for (const ListedCheckpoint& c : list_checkpoints(dir)) left.push_back(c.step);
  EXPECT_EQ(left, (std::vector<int64_t>{7, 6, 3, 2}));
  fs::remove_all(dir);
}

TEST(CkptSave, AsyncSaverReportsEverySaveAndWaitsForTheOneInFlight) {
  const auto dir = scratch_dir("async");
  SaverOptions o = sync_options(dir, 2);
  o.async = true;
  CheckpointSaver saver(o);
  std::vector<SaveReport> reports;
  for (int64_t s = 1; s <= 4; ++s) {
    saver.save(s, sample_contents(s, 300000), 0.001);
    for (SaveReport& r : saver.poll()) reports.push_back(std::move(r));
  }
  for (SaveReport& r : saver.wait()) reports.push_back(std::move(r));
  ASSERT_EQ(reports.size(), 4u);
  for (size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].step, static_cast<int64_t>(i) + 1);
    EXPECT_TRUE(reports[i].async);
    EXPECT_GE(reports[i].stall_s, 0.001);
    EXPECT_GT(reports[i].stats.data_bytes, 2400000u);
  }
  EXPECT_EQ(read_latest(dir), checkpoint_file_name(4));
  EXPECT_EQ(list_checkpoints(dir).size(), 2u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pft::ckpt
