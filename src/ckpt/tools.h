// The logic of `pft ckpt ls|inspect|verify|diff` (cli/cmd_ckpt.cpp only parses flags and prints
// what these return). Each reads checkpoints with ckpt/reader.h; none writes anything.
#pragma once

#include <filesystem>
#include <string>

#include "ckpt/reader.h"

namespace pft::ckpt {

// A table of RUN_DIR/checkpoints (or DIR itself when it holds step_*.h5 files): file, step,
// tokens seen, size, time, metrics, and whether the file opens and is complete (structure only;
// `verify` hashes the data). `latest` is marked with '*'; interrupted saves are listed at the end.
// `problem` is set when `latest` exists but names no valid checkpoint (a missing file, one that
// does not open or is incomplete, a name that is no file of the directory): `pft ckpt ls` then
// exits 2 after the table, with that message (train.resume: auto would skip such a file).
struct CheckpointListing {
  std::string text;
  std::string problem;  // empty when `latest` is absent or names a valid checkpoint
};
CheckpointListing list_run_checkpoints(const std::filesystem::path& run_dir,
                                       const ReadOptions& options = {});

// Step, format, config summary, group attributes and the table of every dataset (group, name,
// dtype, shape, bytes, checksum). Throws InputError when the file is invalid.
std::string inspect_checkpoint(const std::filesystem::path& file, const ReadOptions& options = {});

struct DiffResult {
  bool same = false;  // every dataset outside /meta and /metrics is bitwise identical
  std::string text;
};
// Compares two checkpoints: meta (step, tokens), config keys that differ, and per dataset: only
// in A / only in B / dtype or shape differs / values differ (with the max |a - b| for floats).
// Throws InputError when either file is invalid.
DiffResult diff_checkpoints(const std::filesystem::path& a, const std::filesystem::path& b,
                            const ReadOptions& options = {});

}  // namespace pft::ckpt
