// Choosing the checkpoint to resume from (contract: train/resume.h).
#include "train/resume.h"

#include <string>
#include <system_error>

#include "ckpt/reader.h"
#include "ckpt/run_checkpoints.h"
#include "comm/communicator.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"

namespace pft {

namespace fs = std::filesystem;
using ckpt::Contents;

std::optional<Contents> load_resume_checkpoint(const Config& config, const RankEnv& env,
                                               Communicator& comm, fs::path* file) {
  if (config.train.resume.mode == ResumeFrom::Mode::kNone) return std::nullopt;
  const std::string& resume = config.train.resume.file;  // kFile
  ckpt::ReadOptions ro;
  ro.file_locking = config.checkpoint.file_locking;
  std::optional<Contents> contents;
  std::string chosen;
  agree(env, "resume: rank 0 picks and reads the checkpoint", [&] {
    if (!env.is_root()) return;
    if (config.train.resume.mode == ResumeFrom::Mode::kAuto) {
      const fs::path dir = fs::path(config.run.dir) / "checkpoints";
      std::error_code ec;
      if (fs::is_directory(dir, ec))
        for (const auto& e : fs::directory_iterator(dir, ec)) {
          const std::string name = e.path().filename().string();
          if (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos)
            log::warn("resume: ignoring '{}', left by an interrupted save", e.path().string());
          if (ckpt::parse_checkpoint_step(name) && e.is_symlink(ec))
            log::warn(
                "resume: ignoring '{}', a symbolic link: pft resumes only from checkpoint "
                "files it wrote, never through a link (Note [files of the checkpoints "
                "directory], ckpt/run_checkpoints.h)",
                e.path().string());
        }
      const ckpt::Pick pick = ckpt::pick_newest(dir, [&](const fs::path& p) -> std::string {
        try {
          contents = ckpt::read_checkpoint(p, ro);
          return "";
        } catch (const InputError& e) {
          std::string reason = e.what();
          const std::string prefix = fmt::format("checkpoint {}: ", p.string());
          return reason.rfind(prefix, 0) == 0 ? reason.substr(prefix.size()) : reason;
        }
      });
      for (const std::string& s : pick.skipped)
        log::warn("resume: skipping invalid checkpoint {}", s);
      if (pick.path) {
        chosen = pick.path->string();
      } else {
        contents.reset();
        log::info("resume: auto: no valid checkpoint in {}; starting from step 0", dir.string());
      }
      return;
    }
    std::error_code ec;
    if (!fs::is_regular_file(resume, ec))
      config::fail(config.source_of("train.resume"), "train.resume",
                   fmt::format("no checkpoint file '{}'; use `auto` to pick the newest valid "
                               "checkpoint of run.dir, or `none`",
                               resume));
    try {
      contents = ckpt::read_checkpoint(resume, ro);
    } catch (const InputError& e) {
      config::fail(
          config.source_of("train.resume"), "train.resume",
          fmt::format("{}; refusing to resume from it (pick another file, or `auto`)", e.what()));
    }
    chosen = resume;
  });
  comm.broadcast_bytes(chosen, 0);
  if (chosen.empty()) return std::nullopt;
  agree(env, "resume: every other rank reads the checkpoint", [&] {
    if (!env.is_root()) contents = ckpt::read_checkpoint(chosen, ro);
  });
  if (file != nullptr) *file = chosen;
  return contents;
}

}  // namespace pft
