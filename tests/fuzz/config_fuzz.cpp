// Fuzz target: the config loader (config/config.h load_config) with `--set` overrides.
//
// Input: a config file's YAML, then optionally kPartSeparator and one `--set` assignment per
// line. The file is written as config.yaml beside a fixed base.yaml, so `defaults:` composition
// (including cycles and missing files) is reached. A config that loads must also pass or refuse
// validate_for_world cleanly, and its resolved YAML (to_yaml) must load again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "fuzz_util.h"

namespace {

constexpr char kBase[] = R"(run: {dir: runs/base, seed: 7}
model: {d_model: 32, n_layers: 2, n_heads: 4, max_seq_len: 64}
data: {seq_len: 32}
train: {steps: 10, global_batch_size: 4, lr: 0.001}
)";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  static const bool once = (dir.write("base.yaml", kBase), true);
  (void)once;
  const std::vector<std::string> parts = fuzz::split_input(
      std::string_view(reinterpret_cast<const char*>(data), size), fuzz::kPartSeparator, 2);
  const auto path = dir.write("config.yaml", parts[0]);
  std::vector<std::string> overrides;
  if (parts.size() > 1) {
    size_t start = 0;
    const std::string& sets = parts[1];
    while (start <= sets.size() && overrides.size() < 64) {
      size_t end = sets.find('\n', start);
      if (end == std::string::npos) end = sets.size();
      overrides.push_back(sets.substr(start, end - start));
      start = end + 1;
    }
  }
  for (const bool training : {true, false}) {
    Config config;
    if (!fuzz::expect_pft_error([&] { config = load_config(path, overrides, training); }))
      continue;
    for (const int world : {1, 2, 3}) fuzz::expect_pft_error([&] { validate_for_world(config, world); });
    // The resolved config is what a run directory and a checkpoint record: it must load again.
    const std::string resolved = to_yaml(config);
    try {
      (void)parse_config(resolved, "resolved.yaml");
    } catch (const pft::Error& e) {
      if (training) {
        std::fprintf(stderr, "resolved config does not load again: %s\n--- resolved:\n%s\n",
                     e.what(), resolved.c_str());
        std::abort();
      }
    }
  }
  return 0;
}
