// Saving a run's checkpoints: a process SIGKILLed at every point of a save leaves the previous
// checkpoint loadable and `latest` naming a complete file; a full disk (a 1 MiB file size limit,
// RLIMIT_FSIZE) fails the save cleanly; retention keeps the last N, the best K and the protected
// file; the async saver runs one save at a time and reports every save; resume picks the newest
// valid file and names the ones it skipped; datasets streamed from a scratch file (the ZeRO-1
// moments' path) write the same file contents and checksums as from memory, through one bounded
// buffer, and a background save of them reads the scratch file after the caller let go of it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "ckpt/reader.h"
#include "ckpt/run_checkpoints.h"
#include "ckpt/saver.h"
#include "ckpt/spill_file.h"
#include "ckpt/writer.h"
#include "ckpt_test_util.h"
#include "core/error.h"
#include "run_command.h"

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
    const int status = pft::test::wait_child(pid, std::chrono::seconds(120),
                                             std::string("save killed at ") + k.point);
    ASSERT_TRUE(status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
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

// A full disk without mount rights: `body` runs in a forked child whose files may not grow past
// kFileLimitBytes (RLIMIT_FSIZE, with SIGXFSZ ignored, so a write past it fails with EFBIG the way
// one fails with ENOSPC on a full disk). The child returns what happened as text, read back over
// a pipe (pipes are not limited); the parent then checks what the child left on disk.
constexpr rlim_t kFileLimitBytes = 1 << 20;

std::string in_child_with_file_limit(const std::string& what,
                                     const std::function<std::string()>& body) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return "";
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return "";
  }
  if (pid == 0) {
    close(fds[0]);
    std::string report;
    const rlimit lim{kFileLimitBytes, kFileLimitBytes};
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0 || signal(SIGXFSZ, SIG_IGN) == SIG_ERR) {
      report = std::string("setup failed: ") + std::strerror(errno);
    } else {
      try {
        report = body();
      } catch (const std::exception& e) {
        report = std::string("unexpected exception: ") + e.what();
      }
    }
    const char* p = report.data();
    for (size_t left = report.size(); left > 0;) {
      const ssize_t n = write(fds[1], p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  std::array<char, 4096> buf{};
  // The child writes once and exits; a hung child is killed by wait_child below, which ends
  // this read (EOF) too.
  const int status = pft::test::wait_child(pid, std::chrono::seconds(120), what);
  for (ssize_t n; (n = read(fds[0], buf.data(), buf.size())) > 0;)
    report.append(buf.data(), static_cast<size_t>(n));
  close(fds[0]);
  EXPECT_TRUE(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << what << ": child status " << status << "\n" << report;
  return report;
}

// What a save did, as one line of the child's report.
std::string save_outcome(const std::function<void()>& save) {
  try {
    save();
    return "no error";
  } catch (const RuntimeFailure& e) {
    return std::string("RuntimeFailure: ") + e.what();
  }
}

void expect_only_step_1_left(const fs::path& dir) {
  EXPECT_EQ(read_latest(dir), checkpoint_file_name(1));
  EXPECT_FALSE(fs::exists(dir / checkpoint_file_name(2)));
  EXPECT_FALSE(fs::exists(dir / checkpoint_file_name(3)));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  EXPECT_EQ(resume_pick(dir), 1);
}

TEST(CkptSave, FullDiskKeepsThePreviousCheckpoint) {
  const auto dir = scratch_dir("fulldisk");
  // The first (small) save fits under the limit, the second does not.
  const std::string sync_report = in_child_with_file_limit("sync saves under a 1 MiB limit", [&] {
    CheckpointSaver saver(sync_options(dir));
    const std::string first =
        save_outcome([&] { saver.save(1, sample_contents(1, 20000), 0.0); });  // ~160 KB
    const std::string second =
        save_outcome([&] { saver.save(2, sample_contents(2, 400000), 0.0); });  // ~3.2 MB
    return "first: " + first + "\nsecond: " + second + "\n";
  });
  EXPECT_NE(sync_report.find("first: no error\n"), std::string::npos) << sync_report;
  EXPECT_NE(sync_report.find("second: RuntimeFailure: "), std::string::npos)
      << "a save past the file size limit did not fail:\n" << sync_report;
  EXPECT_NE(sync_report.find("step_00000002.h5"), std::string::npos) << sync_report;
  EXPECT_NE(sync_report.find("previous checkpoints are untouched"), std::string::npos)
      << sync_report;
  expect_only_step_1_left(dir);

  // Async mode: the failure surfaces at the next wait.
  const std::string async_report = in_child_with_file_limit("an async save, 1 MiB limit", [&] {
    SaverOptions ao = sync_options(dir);
    ao.async = true;
    CheckpointSaver async_saver(ao);
    async_saver.save(3, sample_contents(3, 400000), 0.0);
    return "wait: " + save_outcome([&] { async_saver.wait(); }) + "\n";
  });
  EXPECT_NE(async_report.find("wait: RuntimeFailure: "), std::string::npos) << async_report;
  expect_only_step_1_left(dir);
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
  // A bit flipped on disk: the whole-file seal refuses it before HDF5 reads it.
  EXPECT_NE(skipped[0].find("damaged: whole-file checksum mismatch"), std::string::npos)
      << skipped[0];
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

// Note [streamed ZeRO-1 save] (train/checkpoint_state.h): the same tensors written from memory
// and streamed from a SpillFile (filled out of order, as the gather fills it) give the same
// datasets, with checksums that verify, uncompressed and gzip; the writer holds one buffer of at most
// stream_piece_bytes (rounded to whole rows) for them; the async saver writes them after the
// caller dropped its reference to the scratch file.
TEST(CkptSave, StreamedDatasetsWriteWhatMemoryDatasetsWrite) {
  const auto dir = scratch_dir("streamed");
  constexpr int64_t kRows = 3000, kCols = 100;  // 1.2 MB per tensor
  std::vector<float> a(kRows * kCols), b(kRows * kCols + 7);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.001f * static_cast<float>(i));
  for (size_t i = 0; i < b.size(); ++i) b[i] = 1.0f / (1.0f + static_cast<float>(i));
  const auto bytes_of = [](const std::vector<float>& v) {
    return std::as_bytes(std::span<const float>(v));
  };
  // A scratch file: `a` at 0, `b` after it, written back to front in 64 KiB pieces. A fresh one
  // per save: the writer reads each byte once and the file gives the pages back.
  const uint64_t b_at = a.size() * sizeof(float);
  std::vector<std::byte> all(b_at + b.size() * sizeof(float));
  std::memcpy(all.data(), a.data(), b_at);
  std::memcpy(all.data() + b_at, b.data(), b.size() * sizeof(float));
  const auto fill = [&] {
    auto spill = SpillFile::create(dir, "streamed.moments");
    EXPECT_FALSE(fs::exists(spill->path())) << "the scratch file is unlinked at once";
    for (uint64_t end = all.size(); end > 0;) {
      const uint64_t start = end > 65536 ? end - 65536 : 0;
      spill->write(start, std::span<const std::byte>(all).subspan(start, end - start));
      end = start;
    }
    return spill;
  };
  const auto make = [&](bool streamed) {
    Contents c = sample_contents(5);
    if (streamed) {
      const std::shared_ptr<SpillFile> spill = fill();
      c.add_streamed("/optimizer/exp_avg_sq/a", DType::kFloat32, {kRows, kCols}, spill, 0)
          .attrs["step"] = int64_t{5};
      c.add_streamed("/optimizer/exp_avg_sq/b", DType::kFloat32, {kRows * kCols + 7}, spill, b_at);
      c.add_streamed("/optimizer/exp_avg_sq/empty", DType::kFloat32, {0, kCols}, spill, 0);
    } else {
      c.add_copy("/optimizer/exp_avg_sq/a", DType::kFloat32, {kRows, kCols}, bytes_of(a))
          .attrs["step"] = int64_t{5};
      c.add_copy("/optimizer/exp_avg_sq/b", DType::kFloat32, {kRows * kCols + 7}, bytes_of(b));
      c.add_copy("/optimizer/exp_avg_sq/empty", DType::kFloat32, {0, kCols}, {});
    }
    return c;
  };
  for (const Compression comp : {Compression::kNone, Compression::kGzip}) {
    WriteOptions wo;
    wo.compression = comp;
    wo.stream_piece_bytes = 256 * 1024;  // many pieces per tensor
    const fs::path from_memory = dir / "memory.h5", streamed = dir / "streamed.h5";
    const WriteStats ms = write_checkpoint(from_memory, make(false), wo);
    const WriteStats ss = write_checkpoint(streamed, make(true), wo);
    EXPECT_EQ(ms.stream_buffer_bytes, 0u);
    EXPECT_GT(ss.stream_buffer_bytes, 0u);
    // One bounded buffer (gzip: whole 1 MiB chunks, so no chunk is written twice).
    const size_t bound = comp == Compression::kGzip ? std::max(wo.stream_piece_bytes, size_t{1} << 20)
                                                    : wo.stream_piece_bytes;
    EXPECT_LE(ss.stream_buffer_bytes, bound);
    EXPECT_EQ(ss.data_bytes, ms.data_bytes);
    ASSERT_TRUE(verify_checkpoint(streamed).ok) << verify_checkpoint(streamed).reason;
    const Contents m = read_checkpoint(from_memory), s = read_checkpoint(streamed);
    ASSERT_EQ(s.datasets().size(), m.datasets().size());
    for (const Dataset& d : m.datasets()) {
      const Dataset& e = s.at(d.path);
      EXPECT_EQ(e.shape, d.shape) << d.path;
      EXPECT_TRUE(std::equal(d.bytes.begin(), d.bytes.end(), e.bytes.begin(), e.bytes.end()))
          << d.path;
      // (read_checkpoint checked each checksum attribute against the manifest and the data)
      EXPECT_EQ(e.attrs, d.attrs) << d.path;
    }
    EXPECT_TRUE(std::equal(s.at("/optimizer/exp_avg_sq/b").bytes.begin(),
                           s.at("/optimizer/exp_avg_sq/b").bytes.end(), bytes_of(b).begin(),
                           bytes_of(b).end()));
  }

  // A background save holds the scratch file through its Contents: the caller lets go first.
  std::shared_ptr<SpillFile> spill2 = fill();
  SaverOptions ao = sync_options(dir / "run");
  ao.async = true;
  CheckpointSaver saver(ao);
  Contents c = sample_contents(7);
  c.add_streamed("/optimizer/exp_avg_sq/a", DType::kFloat32, {kRows, kCols}, spill2, 0);
  std::weak_ptr<SpillFile> watch = spill2;
  spill2.reset();
  saver.save(7, std::move(c), 0.0);
  ASSERT_EQ(saver.wait().size(), 1u);
  EXPECT_TRUE(watch.expired()) << "the scratch file outlived its save";
  const Contents back = read_checkpoint(dir / "run" / checkpoint_file_name(7));
  const Dataset& d = back.at("/optimizer/exp_avg_sq/a");
  EXPECT_TRUE(std::equal(d.bytes.begin(), d.bytes.end(), bytes_of(a).begin(), bytes_of(a).end()));
  fs::remove_all(dir);
}

// A scratch file's bytes can be read once (ckpt/spill_file.h): reads of fresh ranges, in any
// order, return what was written; a read overlapping any range already read throws instead of
// returning the zeros of a punched hole, and so does a second write of a Contents streaming from
// it, which leaves no checkpoint file behind.
TEST(CkptSave, SpillFileRefusesASecondReadOfARange) {
  const auto dir = scratch_dir("spill_once");
  std::vector<std::byte> all(1 << 20);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::byte>(i * 7 + 1);
  auto spill = SpillFile::create(dir, "once.moments");
  spill->write(0, all);
  std::vector<std::byte> out(65536);
  const auto read_ok = [&](uint64_t at, size_t size) {
    out.resize(size);
    spill->read(at, out);
    EXPECT_TRUE(std::equal(out.begin(), out.end(), all.begin() + static_cast<ptrdiff_t>(at)))
        << at;
  };
  read_ok(65536, 65536);   // [64K, 128K)
  read_ok(0, 65536);       // [0, 64K): merges with the first
  read_ok(262144, 4096);   // [256K, 260K)
  out.resize(10);
  EXPECT_THROW(spill->read(0, out), RuntimeFailure);
  EXPECT_THROW(spill->read(131072 - 5, out), RuntimeFailure);  // straddles the end of a read
  EXPECT_THROW(spill->read(262144 - 5, out), RuntimeFailure);  // straddles the start of one
  EXPECT_THROW(spill->read(262144 + 100, out), RuntimeFailure);  // inside one
  read_ok(131072, 262144 - 131072);  // exactly the gap between two reads
  read_ok(266240, all.size() - 266240);  // the rest
  out.resize(1);
  EXPECT_THROW(spill->read(all.size() - 1, out), RuntimeFailure);

  // The same Contents written twice: the second write finds its scratch file read.
  auto spill2 = SpillFile::create(dir, "twice.moments");
  spill2->write(0, all);
  Contents c = sample_contents(3);
  c.add_streamed("/optimizer/exp_avg_sq/x", DType::kFloat32,
                 {static_cast<int64_t>(all.size() / 4)}, spill2, 0);
  spill2.reset();
  write_checkpoint(dir / "first.h5", c);
  ASSERT_TRUE(verify_checkpoint(dir / "first.h5").ok);
  EXPECT_THROW(write_checkpoint(dir / "second.h5", c), RuntimeFailure);
  EXPECT_FALSE(fs::exists(dir / "second.h5")) << "a checkpoint of zeroed moments";
  fs::remove_all(dir);
}

// Holes are punched in batches (ckpt/spill_file.h): reads short of the batch give nothing back,
// the read that completes it gives back every whole page read so far. On a file system with at
// least 512 MiB free (else every read punches, which the reliability test fits_sync covers).
TEST(CkptSave, SpillFilePunchesInBatches) {
  const auto dir = scratch_dir("spill_batch");
  struct statvfs st {};
  ASSERT_EQ(::statvfs(dir.c_str(), &st), 0);
  if (static_cast<uint64_t>(st.f_bavail) * st.f_frsize < 2 * SpillFile::kPunchBatchBytes)
    GTEST_SKIP() << "under 512 MiB free: every read punches";
  constexpr uint64_t kBatch = 1 << 20;
  auto spill = SpillFile::create(dir, "batch.moments", kBatch);
  std::vector<std::byte> all(4 << 20, std::byte{0x5a});
  spill->write(0, all);
  const uint64_t full = spill->allocated_bytes();
  ASSERT_GE(full, all.size()) << "the file system allocates lazily: nothing to measure";
  std::vector<std::byte> out(kBatch / 2);
  spill->read(0, out);  // half a batch: kept
  EXPECT_EQ(spill->allocated_bytes(), full) << "punched before the batch was full";
  spill->read(kBatch, out);  // a batch in all (two ranges): both punched
  const uint64_t after_batch = spill->allocated_bytes();
  EXPECT_LE(after_batch, full - kBatch);
  spill->read(2 * kBatch, out);  // half a batch more: kept
  EXPECT_EQ(spill->allocated_bytes(), after_batch) << "punched before the batch was full";
  spill->read(3 * kBatch, out);  // the second batch full
  EXPECT_LE(spill->allocated_bytes(), full - 2 * kBatch);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pft::ckpt
