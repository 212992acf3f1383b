// peft.init_from (and `pft generate --adapter`): loading the adapter tensors of a checkpoint into
// a run's adapters, task block by task block when the task lists differ.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/contents.h"

namespace pft {

// Loads the adapter tensors of checkpoint `file` into `named` (same names) on every rank that
// calls it (not collective). Tables listed in `block_rows` (name -> rows per task block) are
// copied block by block by task name (unless both task lists are equal): tasks the file knows
// keep their rows bitwise, new tasks keep their fresh init. `what` starts the error messages
// (the key or flag that named the file). Returns the indices (in `task_names`) of the tasks
// whose blocks were loaded. Throws InputError naming the file when it holds no adapters, was
// trained on a base other than `base_model_hash`, or a tensor does not fit.
std::vector<size_t> init_adapters_from(const std::filesystem::path& file,
                                       const std::string& base_model_hash,
                                       const std::vector<std::pair<std::string, at::Tensor>>& named,
                                       const std::map<std::string, int64_t>& block_rows,
                                       const std::vector<std::string>& task_names,
                                       const std::string& what = "peft.init_from");
// The same from `contents` already read from `file`.
std::vector<size_t> init_adapters_from(const ckpt::Contents& contents,
                                       const std::filesystem::path& file,
                                       const std::string& base_model_hash,
                                       const std::vector<std::pair<std::string, at::Tensor>>& named,
                                       const std::map<std::string, int64_t>& block_rows,
                                       const std::vector<std::string>& task_names,
                                       const std::string& what);

}  // namespace pft
