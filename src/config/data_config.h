// Loading a config for the commands that read its data.* keys alone.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"

namespace pft {

// As load_config, but of the cross-key checks only those of data.* run: for commands that read
// the data alone (`pft data show`, `pft data validate`), so training keys they never use (the
// required train.steps, global_batch_size and lr; warmup; the model's shape) cannot stop them.
// Unknown keys and bad values still do.
Config load_data_config(const std::filesystem::path& path,
                        const std::vector<std::string>& overrides);

}  // namespace pft
