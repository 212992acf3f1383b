// Choosing, reading and verifying the checkpoint a run resumes from (train.resume).
#pragma once

#include <filesystem>
#include <optional>

#include "ckpt/contents.h"
#include "config/config.h"
#include "core/rank_env.h"

namespace pft {

class Communicator;

// Collective over env's world and `comm` (agree()d, every wait with dist.timeout_s): the
// checkpoint to resume from, read and verified, on every rank; nullopt to start fresh.
// train.resume: none -> nullopt; auto -> the newest checkpoint of run.dir/checkpoints that
// verifies (rank 0 tries them newest first and warns naming each one it skips; none at all ->
// nullopt with an info line); a path -> that file, or InputError when it is missing or invalid
// (fail closed). `file` receives the path.
std::optional<ckpt::Contents> load_resume_checkpoint(const Config& config, const RankEnv& env,
                                                     Communicator& comm,
                                                     std::filesystem::path* file);

}  // namespace pft
