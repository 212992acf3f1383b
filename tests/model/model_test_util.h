// Helpers for tests that pin pft's numerics against a Python reference (model parity, later the
// optimizer's): named tensors written to files that tests/reference/tensor_io.py reads, read
// back from files it writes, and a runner for the reference scripts with the project's Python.
//
// File format: a `torch.save`-compatible pickle (torch::pickle_save) of one dict
// {name: tensor}, insertion-ordered, every tensor a detached, contiguous CPU copy. Python reads
// it with tensor_io.load(path) (torch.load, weights_only=True) and writes it with
// tensor_io.save(path, dict); load_tensors() reads both.
#pragma once

#include <torch/nn/module.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "model/transformer.h"

namespace pft::test {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes `tensors` (order kept) to `file`. Throws RuntimeFailure when the file cannot be written.
void save_tensors(const std::filesystem::path& file, const NamedTensors& tensors);

// Reads a file written by save_tensors or tensor_io.save. Throws RuntimeFailure when unreadable.
NamedTensors load_tensors(const std::filesystem::path& file);

// named_parameters() of `module`, detached (same storage).
NamedTensors parameters_of(const torch::nn::Module& module);

// The gradient of every parameter, named "<prefix><parameter name>"; zeros where none exists.
NamedTensors grads_of(const torch::nn::Module& module, const std::string& prefix = "grad.");

// The small model the parity tests run: vocabulary 97, 2 layers, 4 heads (2 key/value heads for
// llama), 32 positions, tied embeddings for gpt2; `d_model` wide.
ModelSpec parity_spec(const std::string& family, int64_t d_model);

// `["a", "b"]`: strings as a JSON list (names without quotes or backslashes).
std::string json_string_list(const std::vector<std::string>& items);

// Writes `text` to `file`. Throws RuntimeFailure when the file cannot be written.
void write_text_file(const std::filesystem::path& file, const std::string& text);

// spec.json for the Python references (model_reference.py, train_reference.py,
// peft_reference.py): the architecture of `spec` and the parameter names of `params`, in order.
// Throws RuntimeFailure when the file cannot be written.
void write_spec_json(const std::filesystem::path& file, const ModelSpec& spec,
                     const NamedTensors& params);

// A fresh, empty directory under the system temp dir, named after `tag` and the process id.
std::filesystem::path fresh_temp_dir(const std::string& tag);

// The Python interpreter of the project venv (CMake cache var PFT_PYTHON).
std::string python_path();

// Runs `python_path() <source root>/tests/reference/<script> <args...>` with the source root as
// working directory, its output (stdout and stderr) copied to this process's stdout once it ends.
// Returns the exit code (-1 when it could not be started, died of a signal or ran past
// run_command.h's time limit, which also fails the test).
int run_reference_script(const std::string& script, const std::vector<std::string>& args);

}  // namespace pft::test
