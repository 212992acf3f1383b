// One `pft eval` run (contract: train/eval_run.h).
#include "train/eval_run.h"

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/config_record.h"
#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "ckpt/run_checkpoints.h"
#include "comm/communicator.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "data/dataset.h"
#include "model/adapters.h"
#include "model/hf_import.h"
#include "model/transformer.h"
#include "train/adapter_checkpoint.h"
#include "train/checkpoint_tensors.h"
#include "train/held_out_eval.h"
#include "train/metrics_sink.h"
#include "train/task_source.h"

namespace pft {

namespace {

namespace fs = std::filesystem;

Split parse_split(const std::string& s) {
  if (s == "validation") return Split::kValidation;
  if (s == "test") return Split::kTest;
  throw InputError(fmt::format("--split `{}`: use validation or test", s));
}

// The checkpoint file `path` names: the file itself, or in a run directory (its checkpoints/) or
// a checkpoints directory the one `latest` names, else the newest complete one.
fs::path resolve_checkpoint(const std::string& flag, const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return path;
  if (!fs::is_directory(path, ec))
    throw InputError(fmt::format("{} {}: no such file or directory (give a checkpoint file, a run "
                                 "directory or its checkpoints/ directory)",
                                 flag, path.string()));
  const fs::path dir = fs::is_directory(path / "checkpoints", ec) ? path / "checkpoints" : path;
  if (const auto latest = ckpt::read_latest(dir); latest && fs::is_regular_file(dir / *latest, ec))
    return dir / *latest;
  const std::vector<ckpt::ListedCheckpoint> listed = ckpt::list_checkpoints(dir);
  if (listed.empty())
    throw InputError(fmt::format("{} {}: no complete checkpoint (step_*.h5) in {}; name a "
                                 "checkpoint file, or a run directory that has saved one",
                                 flag, path.string(), dir.string()));
  return listed.front().path;
}

// Refuses a checkpoint whose model (model.* of /meta/architecture) is not the config's; warns
// when it was trained with another data.tokenizer.
void check_architecture(const ckpt::Contents& meta, const fs::path& file, const Config& config) {
  const ckpt::FlatConfig saved =
      ckpt::flat_from_json(meta.at(ckpt::kMetaArchitecture).text(), ckpt::kMetaArchitecture);
  std::vector<std::string> model_diffs;
  for (const ckpt::ConfigChange& ch : ckpt::diff_flat(saved, ckpt::architecture_keys(config))) {
    // How the frozen base is stored is not the model: an adapter trained on a bf16 base scores on
    // the fp32 one (the base-hash check casts it, train/adapter_checkpoint.cpp).
    if (ch.key == "model.base_dtype") continue;
    if (ch.key.starts_with("model."))
      model_diffs.push_back(fmt::format("{} {} (checkpoint) vs {} (config)", ch.key, ch.saved,
                                        ch.current));
    else if (ch.key == "data.tokenizer")
      log::warn("checkpoint {} was trained with data.tokenizer {}; this evaluation tokenizes with "
                "{}",
                file.string(), ch.saved, ch.current);
  }
  if (!model_diffs.empty())
    throw InputError(fmt::format(
        "checkpoint {}: its model is not the config's: {}; evaluate it with the config (and "
        "model.from_pretrained) of the run that saved it",
        file.string(), fmt::join(model_diffs, ", ")));
}

// A full fine-tuning checkpoint's /model tensors into `model` (every parameter, nothing else).
void load_full_checkpoint(const fs::path& file, TransformerImpl& model) {
  ckpt::ReadOptions options;
  options.select = [](const std::string& path) {
    return path.starts_with(std::string(ckpt::kModel) + "/");
  };
  const ckpt::Contents c = ckpt::read_checkpoint(file, options);
  size_t used = 0;
  for (const auto& item : model.named_parameters()) {
    const ckpt::Dataset* d = c.find(ckpt::child_path(ckpt::kModel, item.key()));
    if (d == nullptr)
      throw InputError(fmt::format("checkpoint {}: parameter {} is not in it; the checkpoint "
                                   "does not fit this model",
                                   file.string(), item.key()));
    copy_dataset_into(*d, item.value().detach(), file.string());
    ++used;
  }
  if (c.under(ckpt::kModel).size() != used)
    throw InputError(fmt::format("checkpoint {}: it holds {} tensors under /model, this model has "
                                 "{} parameters; the checkpoint does not fit this model",
                                 file.string(), c.under(ckpt::kModel).size(), used));
}

}  // namespace

int run_eval(const Config& config_in, const RankEnv& env, const EvalRequest& r) {
  using Clock = std::chrono::steady_clock;
  Config config = config_in;
  Split split = Split::kValidation;
  fs::path file;         // the checkpoint, when one is given
  bool peft = false;     // ... of a PEFT run
  int64_t step = 0;      // ... its step
  MetricsSink output;    // rank 0, with --output
  const std::string flag = r.adapter.empty() ? "--checkpoint" : "--adapter";

  // 1. The request, the checkpoint's kind and config, the resolved architecture.
  agree(env, [&] {
    split = parse_split(r.split);
    if (!r.checkpoint.empty() && !r.adapter.empty())
      throw InputError("pft eval: give --checkpoint or --adapter, not both (--adapter is a PEFT "
                       "run's checkpoint; --checkpoint takes either kind)");
    if (config.data.source != DataSource::kTasks)
      config::fail(config.source_of("data.source"), "data.source",
                   "pft eval scores a model on prompt tasks; set data.source: tasks and "
                   "data.tasks");
    const std::string given = r.checkpoint.empty() ? r.adapter : r.checkpoint;
    if (!given.empty()) {
      file = resolve_checkpoint(flag, given);
      const ckpt::Contents meta = ckpt::read_checkpoint_meta(file);
      const Config saved =
          parse_config(meta.at(ckpt::kMetaConfig).text(), file.string() + ":/meta/config");
      peft = is_peft(saved.train.method);
      if (!r.adapter.empty() && !peft)
        throw InputError(fmt::format("--adapter {}: a full fine-tuning checkpoint, not an "
                                     "adapter; use --checkpoint",
                                     file.string()));
      step = ckpt::attr_int(meta.group_attrs(ckpt::kMeta), ckpt::kAttrStep, ckpt::kMeta);
      // The adapters' shapes and how documents are wrapped (prompt tuning) are the run's.
      config.train.method = saved.train.method;
      config.peft = saved.peft;
      config.peft.init_from.clear();
      config.peft.freeze_loaded = false;
      apply_pretrained_architecture(config);
      check_architecture(meta, file, config);
    } else {
      if (config.model.from_pretrained.empty() && !r.untrained)
        throw InputError(
            "pft eval: nothing to score: give --model (a Hugging Face directory; it sets "
            "model.from_pretrained), --checkpoint (a checkpoint file or run directory) or "
            "--adapter, or set model.from_pretrained in the config; --untrained scores the "
            "random init of run.seed on purpose");
      config.train.method = Method::kFull;  // the config's adapters, if any, are not trained
      apply_pretrained_architecture(config);
    }
    if (env.is_root() && !r.output.empty()) {
      std::error_code ec;
      fs::remove(r.output, ec);  // replaced, not appended to
      output = MetricsSink(r.output);
    }
  });
  const std::string what =
      !file.empty() ? fmt::format("checkpoint {} (step {}, {})", file.string(), step,
                                  config::config_text(config.train.method))
      : !config.model.from_pretrained.empty()
          ? fmt::format("{} as pretrained", config.model.from_pretrained)
          : fmt::format("the random init of run.seed {}", config.run.seed);
  log::info("pft eval: {} on the {} split of {} task(s); {} rank(s) on {}", what,
            split_name(split), config.data.tasks.size(), env.world_size, env.device);

  // 2. Communicator and tasks (the stores `pft train` prepares, the chosen split held out). No
  // step is trained, so the training loader only needs a batch that divides over the ranks.
  config.train.global_batch_size = config.train.micro_batch_size * env.world_size;
  const at::Device device(env.device);
  std::unique_ptr<Communicator> comm = make_communicator(env, config.dist);
  TaskTokenSource tasks(config, env, *comm, device, split);
  agree(env, [&] {
    const std::vector<fs::path> files = task_files(config);
    for (size_t k = 0; k < tasks.task_names().size(); ++k)
      if (tasks.validation(k) == nullptr || tasks.validation(k)->num_examples() == 0)
        throw InputError(fmt::format(
            "--split {}: task `{}` ({}) has no {} split; add one under its `source:` (or "
            "split_ratios), or evaluate --split validation",
            r.split, tasks.task_names()[k], k < files.size() ? files[k].string() : "?",
            split_name(split)));
  });

  // 3. The model, built as TrainSession builds it, then the checkpoint's weights or adapters.
  const auto seed = static_cast<uint64_t>(config.run.seed);
  at::manual_seed(seed);
  Transformer model(model_spec_from_config(config.model));
  model->to(device);
  model->reset_parameters(seed);
  std::unique_ptr<HeldOutEvaluator> evaluator;
  agree(env, [&] {
    if (file.empty() || peft) load_pretrained_weights(*model, config);
    if (!file.empty() && !peft) load_full_checkpoint(file, *model);
    if (peft) {
      for (at::Tensor& p : model->parameters()) p.set_requires_grad(false);
      const LoadedAdapter adapter = attach_adapter_checkpoint(file, *model);
      const AdapterSpec& spec = adapter.adapters->spec();
      if ((spec.prompt || spec.prefix) && spec.blocks > 1 &&
          adapter.task_names != tasks.task_names())
        throw InputError(fmt::format(
            "checkpoint {}: its {} table has one block per task of its run ({}); data.tasks "
            "must list those tasks in that order (it lists {})",
            file.string(), adapter.method, fmt::join(adapter.task_names, ", "),
            fmt::join(tasks.task_names(), ", ")));
    }
    evaluator = std::make_unique<HeldOutEvaluator>(config, tasks, split);
  });
  model->eval();

  // 4. Evaluate (collective), print, write.
  const auto start = Clock::now();
  const std::vector<TaskEval> evals =
      evaluator->run(*model, env, comm.get(), config.train.precision, r.max_batches);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  log_held_out_tables(env, evals, step);
  int64_t documents = 0;
  for (const TaskEval& e : evals) documents += e.documents;
  log::info("pft eval: {} documents of {} task(s) in {:.2f} s on {} rank(s){}", documents,
            evals.size(), seconds, env.world_size,
            r.output.empty() ? std::string() : fmt::format("; JSON lines in {}", r.output));
  agree(env, [&] {
    output.eval(step, evals);
    MetricsSink::EvalSummary summary;
    summary.step = step;
    summary.split = split_name(split);
    summary.world_size = env.world_size;
    summary.method = config::config_text(config.train.method);
    summary.model = config.model.from_pretrained;
    summary.checkpoint = file.string();
    summary.seconds = seconds;
    output.eval_summary(summary, evals);
  });
  return 0;
}

}  // namespace pft
