// One `pft generate` run (contract: train/generate_run.h).
#include "train/generate_run.h"

#include <boost/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>

#include "ckpt/export.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_env.h"
#include "core/rank_env.h"
#include "data/tokenizer.h"
#include "model/adapters.h"
#include "model/hf_import.h"
#include "train/adapter_checkpoint.h"
#include "train/generate_prompts.h"

namespace pft {

namespace {

namespace fs = std::filesystem;

// Prompt tuning: the n virtual tokens of `block`, ids vocab + block * n + j, before every prompt
// (where training put them: train/task_source.h).
void prepend_virtual_tokens(const AdapterSpec& spec, int64_t vocab, int64_t block,
                            std::vector<PromptInput>& prompts) {
  const int64_t n = spec.prompt_tokens;
  std::vector<int32_t> ids;
  for (int64_t j = 0; j < n; ++j) ids.push_back(static_cast<int32_t>(vocab + block * n + j));
  for (PromptInput& p : prompts) p.tokens.insert(p.tokens.begin(), ids.begin(), ids.end());
}

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32") return at::kFloat;
  if (s == "bf16") return at::kBFloat16;
  if (s == "fp16") return at::kHalf;
  throw InputError(fmt::format("--dtype `{}`: use fp32, bf16 or fp16", s));
}

}  // namespace

int run_generate(const GenerateRequest& a) {
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
  // info.dir: the resolved model (a known name's file), whose tokenizer is the default.
  const std::string tokenizer_spec = !a.tokenizer.empty() ? a.tokenizer : info.dir.string();
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
    const AdapterSpec& spec = adapter->adapters->spec();
    // Only prompt and prefix tables have a block per task; LoRA is shared by every task.
    const bool per_task = (spec.prompt || spec.prefix) && spec.blocks > 1;
    block = adapter_block(*adapter, a.adapter_task);
    if (spec.lora) model->merge_lora();
    adapter->adapters->to(at::Device(env.device));
    log::info("adapter: {} ({}){}", a.adapter, adapter->method,
              per_task ? fmt::format(", block of task `{}`",
                                     adapter->task_names.at(static_cast<size_t>(block)))
                       : "");
  }
  model->to(at::Device(env.device), dtype);
  model->eval();

  std::vector<PromptInput> prompts;
  if (!a.task.empty()) {
    const int64_t room = std::max<int64_t>(1, info.spec.max_seq_len - a.sampling.max_new_tokens);
    prompts = task_prompts(a.task, a.template_name, a.input, a.prompts, *tokenizer, room,
                           a.run_seed);
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

  if (adapter && adapter->adapters->spec().prompt)
    prepend_virtual_tokens(adapter->adapters->spec(), info.spec.vocab_size, block, prompts);

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

}  // namespace pft
