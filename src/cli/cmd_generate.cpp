// pft generate --model DIR (--prompt TEXT ... | --input prompts.jsonl) [--task FILE --template K]
//     [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R]
//     [--stop STR ...] [--seed S] [--batch-size B] [--output FILE] [--jsonl] [--device D]
//     [--dtype fp32|bf16|fp16] [--tokenizer SPEC] [--ignore-eos] [--threads N]
//
// Generates with a Hugging Face model directory (model/hf_import.h) and the KV-cache generator
// (train/generate.h). Completions go to stdout (plain text, one per prompt, for --prompt; JSON
// lines with --input, --jsonl or --output FILE); the load and tokens/s lines go to stderr.
// --checkpoint FILE generates from a pft checkpoint: it is verified and exported (the same code
// as `pft ckpt export --format hf`) into a private temporary directory that is then loaded like
// --model and removed; a checkpoint stores no tokenizer, so --tokenizer is required with it.
// --adapter FILE adds a PEFT adapter checkpoint (train/adapter_checkpoint.h) to the base given by
// --model (its hash must be the one the adapter was trained on): LoRA is merged into the weights,
// prompt tuning's virtual tokens go before every prompt, prefix tuning's keys and values fill the
// first cache slots. --adapter-task NAME picks the task's block of a per-task table.
#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <unistd.h>

#include "ckpt/export.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_env.h"
#include "core/rank_env.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "train/adapter_checkpoint.h"
#include "model/adapters.h"
#include "train/generate.h"
#include "train/generate_prompts.h"

namespace pft::cli {

namespace {

namespace fs = std::filesystem;

struct GenerateArgs {
  std::string model, checkpoint, adapter, adapter_task, tokenizer;
  std::vector<std::string> prompts;
  std::string input, task, template_name, output;
  SamplingOptions sampling;
  int64_t batch_size = 8;
  bool jsonl = false, ignore_eos = false;
  std::string device = "auto", dtype = "fp32";
  int threads = 0;
};

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32") return at::kFloat;
  if (s == "bf16") return at::kBFloat16;
  if (s == "fp16") return at::kHalf;
  throw InputError(fmt::format("--dtype `{}`: use fp32, bf16 or fp16", s));
}

int run_generate(const GenerateArgs& a) {
  if (a.model.empty() == a.checkpoint.empty())
    throw InputError("pft generate: give exactly one of --model DIR or --checkpoint FILE");
  if (!a.checkpoint.empty() && a.tokenizer.empty())
    throw InputError(
        fmt::format("--checkpoint {}: a checkpoint stores no tokenizer; pass --tokenizer SPEC "
                    "(the run's data.tokenizer: `byte`, a tokenizer.json or a model directory)",
                    a.checkpoint));
  if (!a.adapter.empty() && a.model.empty())
    throw InputError("--adapter goes with --model DIR, the base model the adapter was trained on");
  if (a.prompts.empty() == a.input.empty())
    throw InputError("pft generate: give --prompt TEXT (one or more) or --input FILE.jsonl");
  if (a.task.empty() != a.template_name.empty())
    throw InputError("--task and --template go together");
  if (a.batch_size < 1) throw InputError("--batch-size: must be at least 1");
  validate_sampling(a.sampling);
  const at::ScalarType dtype = parse_dtype(a.dtype);
  if (a.device != "auto" && a.device != "cpu" && a.device != "cuda")
    throw InputError(fmt::format("--device `{}`: use auto, cpu or cuda", a.device));

  MpiEnvironment mpi;
  RankEnvOptions env_options;
  env_options.threads = a.threads;
  env_options.allow_cuda = a.device != "cpu";
  RankEnv env = discover_rank_env(env_options);
  struct Release {
    RankEnv& env;
    ~Release() { release_rank_env(env); }
  } release{env};
  if (env.world_size > 1) throw InputError("pft generate runs as a single process (no mpirun)");
  if (a.device == "cuda" && !env.is_cuda())
    throw InputError("--device cuda: no CUDA GPU is visible to this process");

  // --checkpoint: verified export into a private directory, removed when generation ends.
  struct TempDir {
    fs::path path;
    ~TempDir() {
      std::error_code ec;
      if (!path.empty()) fs::remove_all(path, ec);
    }
  } exported;
  std::string model_dir = a.model;
  if (!a.checkpoint.empty()) {
    exported.path = fs::temp_directory_path() /
                    fmt::format("pft-generate-{}-{}", ::getpid(), std::random_device{}());
    ckpt::export_checkpoint(a.checkpoint, ckpt::ExportFormat::kHf, exported.path);
    model_dir = exported.path.string();
  }
  const std::string model_name = a.checkpoint.empty() ? a.model : a.checkpoint;

  HfModelInfo info;
  HfLoadReport report;
  Transformer model = load_hf_model(model_dir, &info, &report);
  log::info(
      "model: {} ({} layers, d_model {}, vocab {}) from {}: {} tensors, {} {:.1f} MB, "
      "{} file(s), {:.2f} s",
      info.model_type, info.spec.n_layers, info.spec.d_model, info.spec.vocab_size, model_name,
      report.tensors, report.dtypes, static_cast<double>(report.bytes) / 1e6, report.files,
      report.seconds);
  const std::string tokenizer_spec = !a.tokenizer.empty() ? a.tokenizer : a.model;
  if (a.tokenizer.empty() && !info.has_tokenizer)
    throw InputError(
        fmt::format("{}: no tokenizer.json (or vocab.json + merges.txt); pass "
                    "--tokenizer SPEC",
                    a.model));
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(tokenizer_spec);
  std::vector<int32_t> prefix = info.prompt_prefix_ids;  // BOS the tokenizer adds, as HF does
  if (!a.tokenizer.empty()) {
    const fs::path t = fs::is_directory(a.tokenizer) ? fs::path(a.tokenizer) / "tokenizer.json"
                                                     : fs::path(a.tokenizer);
    prefix = t.extension() == ".json" && fs::exists(t) ? tokenizer_prompt_prefix(t)
                                                       : std::vector<int32_t>{};
  }
  if (tokenizer->vocab_size() > info.spec.vocab_size)
    throw InputError(fmt::format("tokenizer {} has {} ids, more than the model's vocabulary {}",
                                 tokenizer->describe(), tokenizer->vocab_size(),
                                 info.spec.vocab_size));
  std::optional<LoadedAdapter> adapter;
  int64_t block = 0;
  if (!a.adapter.empty()) {
    adapter = attach_adapter_checkpoint(a.adapter, *model);
    block = adapter_block(*adapter, a.adapter_task);
    if (adapter->adapters->spec().lora) model->merge_lora();
    adapter->adapters->to(at::Device(env.device));
    log::info("adapter: {} ({}){}", a.adapter, adapter->method,
              adapter->adapters->spec().blocks > 1
                  ? fmt::format(", block of task `{}`", adapter->task_names.at(static_cast<size_t>(block)))
                  : "");
  }
  model->to(at::Device(env.device), dtype);
  model->eval();

  std::vector<PromptInput> prompts;
  if (!a.task.empty()) {
    const int64_t room = std::max<int64_t>(1, info.spec.max_seq_len - a.sampling.max_new_tokens);
    prompts = task_prompts(a.task, a.template_name, a.input, a.prompts, *tokenizer, room);
  } else if (!a.input.empty()) {
    prompts = read_prompt_file(a.input, *tokenizer, prefix);
  } else {
    prompts = prompts_from_texts(a.prompts, *tokenizer, prefix);
  }

  SamplingOptions sampling = a.sampling;
  if (!a.ignore_eos) {
    sampling.eos_ids = info.eos_token_ids;
    if (sampling.eos_ids.empty() && tokenizer->eos_id() >= 0)
      sampling.eos_ids.push_back(tokenizer->eos_id());
  }

  std::ofstream file;
  if (!a.output.empty()) {
    file.open(a.output);
    if (!file) throw InputError(fmt::format("--output {}: cannot write", a.output));
  }
  std::ostream& out = a.output.empty() ? std::cout : file;
  const bool as_jsonl = a.jsonl || !a.input.empty() || !a.output.empty();

  if (adapter && adapter->adapters->spec().prompt) {  // the block's virtual tokens first
    const int64_t n = adapter->adapters->spec().prompt_tokens;
    std::vector<int32_t> virtual_ids;
    for (int64_t j = 0; j < n; ++j)
      virtual_ids.push_back(static_cast<int32_t>(info.spec.vocab_size + block * n + j));
    for (PromptInput& p : prompts) p.tokens.insert(p.tokens.begin(), virtual_ids.begin(), virtual_ids.end());
  }

  Generator generator(*model, tokenizer.get());
  if (adapter && adapter->adapters->spec().prefix) generator.set_prefix_block(block);
  GenerationStats total;
  for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(a.batch_size)) {
    const size_t last = std::min(prompts.size(), first + static_cast<size_t>(a.batch_size));
    std::vector<std::vector<int32_t>> batch;
    for (size_t i = first; i < last; ++i) batch.push_back(prompts[i].tokens);
    GenerationStats stats;
    const std::vector<Generation> results = generator.generate(batch, sampling, &stats);
    total.add(stats);
    for (size_t i = first; i < last; ++i) {
      const Generation& g = results[i - first];
      if (as_jsonl) {
        boost::json::object rec;
        rec["index"] = static_cast<int64_t>(i);
        if (!prompts[i].id.empty()) rec["id"] = prompts[i].id;
        rec["prompt"] = to_valid_utf8(prompts[i].text);
        rec["completion"] = to_valid_utf8(g.text);
        boost::json::array ids;
        for (int32_t id : g.tokens) ids.emplace_back(id);
        rec["completion_ids"] = std::move(ids);
        rec["finish_reason"] = g.finish_reason;
        rec["prompt_tokens"] = static_cast<int64_t>(prompts[i].tokens.size());
        rec["new_tokens"] = static_cast<int64_t>(g.tokens.size());
        out << boost::json::serialize(rec) << "\n";
      } else {
        out << g.text << "\n";
      }
    }
    out.flush();
  }
  if (!out) throw RuntimeFailure("pft generate: writing the output failed");
  log::info(
      "generated {} tokens for {} prompt(s) ({} prompt tokens) in {:.3f} s: {:.1f} tokens/s "
      "(prefill {:.3f} s, decode {:.3f} s; {}, {}, batch {})",
      total.new_tokens, total.prompts, total.prompt_tokens, total.seconds(), total.tokens_per_s(),
      total.prefill_s, total.decode_s, env.device, a.dtype,
      std::min<size_t>(prompts.size(), static_cast<size_t>(a.batch_size)));
  log::flush();
  return 0;
}

}  // namespace

Command add_generate_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "generate",
      "Generate text from a Hugging Face model directory (greedy or sampled, KV cache)");
  auto a = std::make_shared<GenerateArgs>();
  sub->add_option("--model", a->model, "Hugging Face model directory (config.json + safetensors)");
  sub->add_option("--checkpoint", a->checkpoint, "pft checkpoint file (.h5); needs --tokenizer");
  sub->add_option("--adapter", a->adapter, "Adapter checkpoint (.h5) of a PEFT run on --model");
  sub->add_option("--adapter-task", a->adapter_task,
                  "Task whose prompt/prefix block to use (adapters with one block per task)");
  sub->add_option("--prompt", a->prompts, "Prompt text (repeat for a batch)");
  sub->add_option("--input", a->input,
                  "JSONL file: {\"prompt\": ...} per line, or records of --task");
  sub->add_option("--task", a->task, "Task file (YAML) whose template renders the prompts");
  sub->add_option("--template", a->template_name, "Template id (or index) of --task");
  sub->add_option("--tokenizer", a->tokenizer, "Tokenizer spec (default: the model directory)");
  sub->add_option("--max-new-tokens", a->sampling.max_new_tokens, "Most tokens to generate")
      ->capture_default_str();
  sub->add_option("--temperature", a->sampling.temperature, "0 = greedy; > 0 samples")
      ->capture_default_str();
  sub->add_option("--top-k", a->sampling.top_k, "Sample from the k most likely (0 = off)")
      ->capture_default_str();
  sub->add_option("--top-p", a->sampling.top_p, "Nucleus sampling mass (1 = off)")
      ->capture_default_str();
  sub->add_option("--repetition-penalty", a->sampling.repetition_penalty,
                  "Penalty on tokens already present (1 = off)")
      ->capture_default_str();
  sub->add_option("--stop", a->sampling.stop, "Stop string (repeatable); cut from the text");
  sub->add_option("--seed", a->sampling.seed, "Sampling seed")->capture_default_str();
  sub->add_option("--batch-size", a->batch_size, "Prompts per batch")->capture_default_str();
  sub->add_option("--output", a->output, "Write JSON lines to this file instead of stdout");
  sub->add_flag("--jsonl", a->jsonl, "JSON lines on stdout even for --prompt");
  sub->add_flag("--ignore-eos", a->ignore_eos, "Do not stop at the end-of-text token");
  sub->add_option("--device", a->device, "auto, cpu or cuda")->capture_default_str();
  sub->add_option("--dtype", a->dtype, "Weights and compute: fp32, bf16 or fp16")
      ->capture_default_str();
  sub->add_option("--threads", a->threads, "Torch threads (0 = the machine's cores)");
  Command c;
  c.app = sub;
  c.run = [a]() -> int { return run_generate(*a); };
  return c;
}

}  // namespace pft::cli
