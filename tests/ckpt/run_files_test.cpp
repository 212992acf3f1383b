// The files of a run directory (docs/reliability.md, "Secrets and files"; Note [files of the
// checkpoints directory] in ckpt/run_checkpoints.h): retention deletes only pft's own checkpoint
// files, never a symbolic link named like one nor what it points to, and keeps a foreign file with
// a checkpoint's name; resume never reads through a link; a `latest` that is a link, or names one,
// is refused; no file pft writes in the run directory (checkpoint, latest, lock, metrics, resolved
// config) is written through a link planted at its name or at its temporary's; files and
// directories get 0666/0777 less the umask, and never world-writable (restrict_umask).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include "ckpt/reader.h"
#include "ckpt/run_checkpoints.h"
#include "ckpt/saver.h"
#include "ckpt/writer.h"
#include "ckpt_test_util.h"
#include "core/error.h"
#include "core/format.h"
#include "core/run_dir.h"

namespace pft::ckpt {
namespace {

namespace fs = std::filesystem;
using test::sample_contents;
using test::scratch_dir;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A file outside the checkpoints directory that must survive untouched.
struct Precious {
  fs::path path;
  std::string bytes;
  explicit Precious(const fs::path& p, bool checkpoint) : path(p) {
    if (checkpoint)
      write_checkpoint(p, sample_contents(50));
    else
      std::ofstream(p) << "precious, not pft's\n";
    bytes = slurp(p);
  }
  void expect_intact() const {
    ASSERT_TRUE(fs::is_regular_file(fs::symlink_status(path))) << path;
    EXPECT_EQ(slurp(path), bytes) << path << " was changed";
  }
};

int64_t resume_pick(const fs::path& dir) {
  const Pick p = pick_newest(dir, [](const fs::path& f) { return verify_checkpoint(f).reason; });
  return p.path ? p.step : -1;
}

TEST(RunFiles, RetentionNeverFollowsNorDeletesLinksAndKeepsForeignFiles) {
  const fs::path root = scratch_dir("links");
  const fs::path dir = root / "run" / "checkpoints", outside = root / "outside";
  fs::create_directories(dir);
  fs::create_directories(outside);
  const Precious valid(outside / "other_run.h5", /*checkpoint=*/true);  // a real checkpoint
  const Precious text(outside / "notes.txt", /*checkpoint=*/false);
  // Links named like checkpoints: older and newer than the run's own, to a checkpoint (which
  // retention would judge deletable, resume would load) and to a file that is not one.
  fs::create_symlink(valid.path, dir / checkpoint_file_name(0));
  fs::create_symlink(valid.path, dir / checkpoint_file_name(99));
  fs::create_symlink(text.path, dir / checkpoint_file_name(2));
  // A regular file with a checkpoint's name that pft did not write.
  std::ofstream(dir / checkpoint_file_name(1)) << "someone's file\n";

  SaverOptions o;
  o.dir = dir;
  o.async = false;
  o.retention.keep_last = 2;
  CheckpointSaver saver(o);
  for (int64_t s = 3; s <= 7; ++s) saver.save(s, sample_contents(s), 0.0);
  saver.wait();

  std::vector<int64_t> listed;
  for (const ListedCheckpoint& c : list_checkpoints(dir)) listed.push_back(c.step);
  // Links are not checkpoints; the foreign file is kept and takes no keep_last slot.
  EXPECT_EQ(listed, (std::vector<int64_t>{7, 6, 1}));
  for (int64_t s : {0, 99, 2})
    EXPECT_TRUE(fs::is_symlink(dir / checkpoint_file_name(s))) << "link of step " << s << " gone";
  EXPECT_EQ(slurp(dir / checkpoint_file_name(1)), "someone's file\n");
  valid.expect_intact();
  text.expect_intact();
  EXPECT_EQ(resume_pick(dir), 7);  // not the link of step 99
  fs::remove_all(root);
}

TEST(RunFiles, LatestThatIsOrNamesALinkIsRefused) {
  const fs::path root = scratch_dir("latest_link");
  const fs::path dir = root / "checkpoints", outside = root / "outside";
  fs::create_directories(dir);
  fs::create_directories(outside);
  write_checkpoint(dir / checkpoint_file_name(2), sample_contents(2));
  std::ofstream(outside / "latest") << checkpoint_file_name(2) << "\n";
  fs::create_symlink(outside / "latest", dir / "latest");
  try {
    read_latest(dir);
    ADD_FAILURE() << "a `latest` link was followed";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find((dir / "latest").string() + " is a symbolic link"), std::string::npos) << m;
    EXPECT_NE(m.find((outside / "latest").string()), std::string::npos) << m;
    EXPECT_NE(m.find("remove it"), std::string::npos) << m;
  }
  // The next save replaces the link itself; its target is untouched.
  write_latest(dir, checkpoint_file_name(2));
  EXPECT_FALSE(fs::is_symlink(dir / "latest"));
  EXPECT_EQ(read_latest(dir), checkpoint_file_name(2));
  EXPECT_EQ(slurp(outside / "latest"), checkpoint_file_name(2) + "\n");

  // A plain `latest` naming a link.
  const Precious valid(outside / "elsewhere.h5", /*checkpoint=*/true);
  fs::create_symlink(valid.path, dir / checkpoint_file_name(9));
  write_latest(dir, checkpoint_file_name(9));
  try {
    read_latest(dir);
    ADD_FAILURE() << "`latest` naming a link was followed";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("names " + checkpoint_file_name(9) + ", which is a symbolic link"),
              std::string::npos)
        << m;
  }
  valid.expect_intact();
  fs::remove_all(root);
}

TEST(RunFiles, PlantedLinksAtTemporaryAndFixedNamesAreNeverWrittenThrough) {
  const fs::path root = scratch_dir("planted");
  const fs::path run = root / "run", outside = root / "outside";
  RunDir rd(run, /*create=*/true);
  fs::create_directories(outside);
  const fs::path dir = rd.checkpoints();
  const std::string pid = std::to_string(::getpid());
  std::vector<Precious> targets;
  for (const char* name : {"a", "b", "c", "d", "e"})
    targets.emplace_back(outside / name, /*checkpoint=*/false);
  // Temporaries: pft's own names for the files it is writing.
  fs::create_symlink(targets[0].path, dir / (".latest.tmp-" + pid));
  fs::create_symlink(targets[1].path, dir / (".step_00000005.h5.tmp-" + pid));
  fs::create_symlink(targets[2].path, run / "config.resolved.yaml.tmp");
  write_latest(dir, checkpoint_file_name(5));
  write_checkpoint(dir / checkpoint_file_name(5), sample_contents(5));
  RunDir::write_file_atomic(rd.resolved_config(), "run: {}\n");
  EXPECT_TRUE(verify_checkpoint(dir / checkpoint_file_name(5)).reason.empty());
  EXPECT_EQ(read_latest(dir), checkpoint_file_name(5));
  EXPECT_EQ(slurp(rd.resolved_config()), "run: {}\n");

  // Fixed names: the lock and metrics.jsonl, links are refused with the file named.
  fs::create_symlink(targets[3].path, rd.lock_file());
  fs::create_symlink(targets[4].path, rd.metrics());
  try {
    rd.lock("");
    ADD_FAILURE() << "run.lock link was followed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(rd.lock_file().string() + "' is a symbolic link"),
              std::string::npos)
        << e.what();
  }
  try {
    MetricsWriter w(rd.metrics());
    ADD_FAILURE() << "metrics.jsonl link was followed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("it is a symbolic link"), std::string::npos) << e.what();
  }
  for (const Precious& t : targets) t.expect_intact();
  fs::remove_all(root);
}

// Everything a run writes under `umask`; returns the modes seen (path -> mode & 0777).
std::map<std::string, mode_t> modes_under(mode_t umask_value, const fs::path& run) {
  const mode_t saved = ::umask(umask_value);
  restrict_umask();
  {
    RunDir rd(run, /*create=*/true);
    rd.lock("job");
    RunDir::write_file_atomic(rd.resolved_config(), "run: {}\n");
    MetricsWriter(rd.metrics()).write(boost::json::object{{"kind", "test"}});
    write_checkpoint(rd.checkpoints() / checkpoint_file_name(1), sample_contents(1));
    write_latest(rd.checkpoints(), checkpoint_file_name(1));
  }
  ::umask(saved);
  std::map<std::string, mode_t> modes;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(run)) {
    struct stat st {};
    ::lstat(e.path().c_str(), &st);
    modes[fs::relative(e.path(), run).string()] = st.st_mode & 0777;
  }
  struct stat st {};
  ::lstat(run.c_str(), &st);
  modes["."] = st.st_mode & 0777;
  return modes;
}

TEST(RunFiles, ModesFollowTheUmaskAndAreNeverWorldWritable) {
  const fs::path root = scratch_dir("modes");
  const std::vector<std::string> files = {"run.lock", "config.resolved.yaml", "metrics.jsonl",
                                          "checkpoints/latest", "checkpoints/step_00000001.h5"};
  const std::vector<std::string> dirs = {".", "checkpoints"};
  struct Case {
    mode_t umask_value, file_mode, dir_mode;
  };
  // 077: private; 022: the usual default; 000: pft still leaves out "others may write" (002
  // keeps group-writable files for a group that shares run directories).
  for (const Case& c : {Case{077, 0600, 0700}, Case{022, 0644, 0755}, Case{000, 0664, 0775},
                        Case{002, 0664, 0775}}) {
    const fs::path run = root / fmt::format("umask{:03o}", c.umask_value);
    const auto modes = modes_under(c.umask_value, run);
    EXPECT_EQ(modes.size(), files.size() + dirs.size()) << "unexpected files under " << run;
    for (const std::string& f : files)
      EXPECT_EQ(modes.at(f), c.file_mode)
          << f << " under umask " << fmt::format("{:03o}", c.umask_value);
    for (const std::string& d : dirs)
      EXPECT_EQ(modes.at(d), c.dir_mode)
          << d << " under umask " << fmt::format("{:03o}", c.umask_value);
    for (const auto& [path, mode] : modes) EXPECT_EQ(mode & S_IWOTH, 0u) << path;
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace pft::ckpt
