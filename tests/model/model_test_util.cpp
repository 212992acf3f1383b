// Named-tensor files for Python reference checks, and the reference-script runner.
#include "model_test_util.h"

#include <ATen/core/Dict.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/format.h"
#include "run_command.h"

namespace pft::test {

namespace fs = std::filesystem;

void save_tensors(const fs::path& file, const NamedTensors& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, t] : tensors) {
    if (dict.contains(name))
      throw RuntimeFailure(fmt::format("save_tensors: duplicate `{}`", name));
    dict.insert(name, t.detach().to(torch::kCPU).contiguous().clone());
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  std::ofstream out(file, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw RuntimeFailure(fmt::format("cannot write {}", file.string()));
}

NamedTensors load_tensors(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw RuntimeFailure(fmt::format("cannot read {}", file.string()));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  const c10::IValue value = torch::pickle_load(bytes);
  if (!value.isGenericDict())
    throw RuntimeFailure(fmt::format("{}: expected a dict of tensors", file.string()));
  NamedTensors out;
  for (const auto& item : value.toGenericDict())
    out.emplace_back(item.key().toStringRef(), item.value().toTensor());
  return out;
}

ModelSpec parity_spec(const std::string& family, int64_t d_model) {
  ModelConfig m;
  m.family = family;
  m.vocab_size = 97;
  m.d_model = d_model;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = family == "llama" ? 2 : 0;
  m.max_seq_len = 32;
  m.tie_embeddings = family == "gpt2";
  return model_spec_from_config(m);
}

std::string json_string_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += fmt::format("{}\"{}\"", out.empty() ? "" : ", ", s);
  return "[" + out + "]";
}

void write_text_file(const std::filesystem::path& file, const std::string& text) {
  std::ofstream out(file);
  out << text;
  if (!out.good()) throw RuntimeFailure(fmt::format("cannot write {}", file.string()));
}

void write_spec_json(const std::filesystem::path& file, const ModelSpec& s,
                     const NamedTensors& params) {
  std::vector<std::string> names;
  for (const auto& [name, t] : params) names.push_back(name);
  write_text_file(
      file,
      fmt::format(
          "{{\"family\": \"{}\", \"vocab_size\": {}, \"d_model\": {}, \"n_layers\": {}, "
          "\"n_heads\": {}, \"n_kv_heads\": {}, \"head_dim\": {}, \"d_ff\": {}, "
          "\"max_seq_len\": {}, \"norm_eps\": {:.17g}, \"rope_theta\": {:.17g}, "
          "\"tie_embeddings\": {}, \"parameter_names\": {}}}\n",
          family_name(s.family), s.vocab_size, s.d_model, s.n_layers, s.n_heads, s.n_kv_heads,
          s.head_dim, s.d_ff, s.max_seq_len, s.norm_eps, s.rope_theta,
          s.tie_embeddings ? "true" : "false", json_string_list(names)));
}

NamedTensors parameters_of(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_parameters())
    out.emplace_back(item.key(), item.value().detach());
  return out;
}

NamedTensors grads_of(const torch::nn::Module& module, const std::string& prefix) {
  NamedTensors out;
  for (const auto& item : module.named_parameters()) {
    const auto& g = item.value().grad();
    out.emplace_back(prefix + item.key(),
                     g.defined() ? g.detach() : torch::zeros_like(item.value()));
  }
  return out;
}

fs::path fresh_temp_dir(const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("pft-{}-{}", tag, ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string python_path() { return PFT_PYTHON; }

namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace

int run_reference_script(const std::string& script, const std::vector<std::string>& args) {
  const fs::path root = PFT_SOURCE_ROOT;
  std::string cmd =
      fmt::format("cd {} && {} {}", shell_quote(root.string()), shell_quote(python_path()),
                  shell_quote((root / "tests" / "reference" / script).string()));
  for (const auto& a : args) cmd += " " + shell_quote(a);
  // run_command.h: a time limit (the test fails naming the command past it).
  const Result r = run(cmd);
  std::fwrite(r.out.data(), 1, r.out.size(), stdout);
  std::fflush(stdout);
  if (r.timed_out || r.code < 0 || r.code > 128) return -1;
  return r.code;
}

}  // namespace pft::test
