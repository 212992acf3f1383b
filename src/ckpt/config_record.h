// The config as a checkpoint records it, and the rule for resuming under a changed config.
//
// /meta/config_flat holds every key of the resolved config as "section.key" -> value text (lists
// joined by ", "), /meta/architecture the subset that fixes the shape of the saved state:
// model.* (with n_kv_heads and d_ff resolved; not from_pretrained or init_std), data.tokenizer
// and train.method. On resume, a change in an architecture key is refused (InputError naming
// each differing key with both values); any other change (lr, steps, batch size, ...) is allowed
// and listed so the trainer can log it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/config.h"

namespace pft::ckpt {

using FlatConfig = std::map<std::string, std::string>;

FlatConfig flatten_config(const Config& config);
FlatConfig architecture_keys(const Config& config);

std::string flat_to_json(const FlatConfig& flat);
// Throws InputError naming `where` when `json` is not an object of strings.
FlatConfig flat_from_json(const std::string& json, const std::string& where);

struct ConfigChange {
  std::string key;
  std::string saved;    // "(absent)" when the key is new
  std::string current;  // "(absent)" when the key is gone
};

// Keys whose values differ between `saved` and `current` (either side may lack a key).
std::vector<ConfigChange> diff_flat(const FlatConfig& saved, const FlatConfig& current);

// Throws InputError "<file>: resuming would change the architecture: model.d_model 64 -> 128, ..."
// when `saved_arch` and the architecture of `current` differ. Returns the other changes (for the
// log).
std::vector<ConfigChange> check_resume_config(const std::string& file, const FlatConfig& saved_arch,
                                              const FlatConfig& saved_flat, const Config& current);

}  // namespace pft::ckpt
