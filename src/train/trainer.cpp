#include "train/trainer.h"

#include <sys/resource.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cmath>
#include <map>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include "comm/communicator.h"
#include "comm/reducer.h"
#include "control/controller.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/run_dir.h"
#include "core/signals.h"
#include "data/tokenizer.h"
#include "model/adapters.h"
#include "model/flat_params.h"
#include "model/hf_import.h"
#include "model/transformer.h"
#include "train/checkpointing.h"
#include "train/evaluate.h"
#include "train/grad_sync.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/precision.h"
#include "train/progress.h"
#include "train/synthetic_data.h"
#include "train/task_source.h"
#include "train/train_step.h"

namespace pft {

namespace {

using Clock = std::chrono::steady_clock;

void log_resolved_config(const Config& config) {
  std::istringstream lines(to_yaml(config));
  log::info("resolved config ({}):", config.file);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) log::info("  {}", line);
}

boost::json::object metrics_record(int64_t step, double lr, const StepResult& r,
                                   int64_t tokens, double step_time_s, int world_size) {
  boost::json::object rec;
  rec["kind"] = "train";
  rec["step"] = step;
  rec["loss"] = r.loss;
  rec["lr"] = lr;
  rec["grad_norm"] = r.grad_norm;
  rec["tokens"] = tokens;
  rec["target_tokens"] = r.target_tokens;
  rec["tokens_per_s"] = step_time_s > 0 ? static_cast<double>(tokens) / step_time_s : 0.0;
  rec["step_time_s"] = step_time_s;
  rec["comm_time_s"] = r.comm_time_s;
  rec["world_size"] = world_size;
  boost::json::array task_loss, task_tokens;
  for (size_t k = 0; k < r.task_tokens.size(); ++k) {
    if (r.task_tokens[k] > 0) task_loss.emplace_back(r.task_loss_sum[k] / r.task_tokens[k]);
    else task_loss.emplace_back(nullptr);
    task_tokens.emplace_back(static_cast<int64_t>(r.task_tokens[k]));
  }
  rec["task_loss"] = std::move(task_loss);
  rec["task_tokens"] = std::move(task_tokens);
  if (r.skipped) rec["skipped"] = true;
  if (r.loss_scale > 0) rec["loss_scale"] = r.loss_scale;
  return rec;
}

}  // namespace

void validate_for_training(const Config& c, const RankEnv& env) {
  const auto fail = [&](const std::string& path, const std::string& what) {
    config::fail(c.source_of(path), path, what);
  };
  if (c.train.method != "full") {
    if (!c.train.method.starts_with("lora") && c.data.source != "tasks")
      fail("train.method", "prompt and prefix tuning learn one block per task; they need "
                           "data.source: tasks");
    if (c.train.method.starts_with("prompt_tuning") && c.peft.prompt_tokens >= c.data.seq_len - 1)
      fail("peft.prompt_tokens", fmt::format("{} virtual tokens leave no room in data.seq_len = {}",
                                             c.peft.prompt_tokens, c.data.seq_len));
    if (c.train.method.starts_with("prefix_tuning") &&
        c.data.seq_len + c.peft.prefix_tokens > c.model.max_seq_len)
      fail("peft.prefix_tokens",
           fmt::format("a prefix of {} shifts positions (as PEFT): data.seq_len {} + {} exceeds "
                       "model.max_seq_len {}; use a shorter prefix or data.seq_len",
                       c.peft.prefix_tokens, c.data.seq_len, c.peft.prefix_tokens,
                       c.model.max_seq_len));
    if (c.model.from_pretrained.empty())
      log::warn_once("train.method {}: model.from_pretrained is empty, so the frozen base is the "
                     "random init; adapters are meant for a pretrained model",
                     c.train.method);
  }
  if (!c.peft.init_from.empty() && !std::filesystem::is_regular_file(c.peft.init_from))
    fail("peft.init_from", fmt::format("no checkpoint file '{}'", c.peft.init_from));
  if (c.peft.freeze_loaded && c.peft.init_from.empty())
    fail("peft.freeze_loaded", "freezes the blocks loaded by peft.init_from, which is empty");
  if (c.peft.freeze_loaded &&
      (c.peft.prompt_shared || c.peft.prefix_projection || c.train.method.ends_with("+lora") ||
       c.train.method == "lora"))
    fail("peft.freeze_loaded",
         "freezes the loaded tasks' own blocks of a prompt or prefix table; with shared "
         "parameters (peft.prompt_shared, peft.prefix_projection's MLP, LoRA) the loaded tasks "
         "would still change; use it with prompt_tuning or prefix_tuning alone");
  if (!c.peft.init_from.empty() && c.train.method == "full")
    fail("peft.init_from", "starts adapters from a checkpoint; train.method full has none (use "
                           "train.resume or model.from_pretrained)");
  if (!c.model.from_pretrained.empty()) {
    Config resolved = c;  // the directory, and the model.* keys it decides (model/hf_import.h)
    apply_pretrained_architecture(resolved);
  }
  // An explicit checkpoint must exist before anything is built (train/checkpointing.h verifies it).
  if (c.train.resume != "none" && c.train.resume != "auto" &&
      !std::filesystem::is_regular_file(c.train.resume))
    fail("train.resume", fmt::format("no checkpoint file '{}'; use `auto` to pick the newest valid "
                                     "checkpoint of run.dir, or `none`", c.train.resume));
  if (c.model.vocab_size < 2)
    fail("model.vocab_size", "the model needs at least 2 tokens to learn anything");
  // The embedding must hold every id the tokenizer can produce.
  const int32_t tokenizer_vocab = load_tokenizer(c.data.tokenizer)->vocab_size();
  if (c.model.vocab_size < tokenizer_vocab)
    fail("model.vocab_size",
         fmt::format("{} is smaller than the vocabulary of data.tokenizer `{}` ({} ids); use at "
                     "least {}", c.model.vocab_size, c.data.tokenizer, tokenizer_vocab,
                     tokenizer_vocab));
  const Precision precision = parse_precision(c.train.precision);
  if (precision == Precision::kFp16 && !env.is_cuda())
    log::warn_once("train.precision: fp16 on the CPU is slow on most processors; bf16 is the CPU "
                   "choice (fp16 runs, with loss scaling)");
  // Anything else about the shape the model refuses (it names the model.* key).
  (void)model_spec_from_config(c.model);
}

TrainSummary train(const Config& config_in, const RankEnv& env) {
  Config config = config_in;  // model.from_pretrained fills model.* (Note [pretrained architecture])
  const TrainConfig& tc = config.train;
  agree(env, [&] {
    apply_pretrained_architecture(config);
    validate_for_training(config, env);
  });

  // Run directory and resolved config, rank 0 (a failure stops every rank).
  std::optional<RunDir> run_dir;
  MetricsWriter metrics;
  agree(env, [&] {
    if (!env.is_root()) return;
    run_dir.emplace(config.run.dir, /*create=*/true);
    if (tc.resume == "none") {  // a fresh run in a used directory: say what happens to it
      std::error_code ec;
      int64_t found = 0;
      for (const auto& e : std::filesystem::directory_iterator(run_dir->checkpoints(), ec))
        found += e.path().extension() == ".h5" ? 1 : 0;
      if (found > 0)
        log::warn("run.dir {} already holds {} checkpoint(s) of an earlier run: this run starts "
                  "from step 0 (train.resume: none), appends to its metrics.jsonl and replaces "
                  "checkpoints of the same steps; use --set train.resume=auto to continue it, or "
                  "another run.dir",
                  config.run.dir, found);
    }
    RunDir::write_file_atomic(run_dir->resolved_config(), to_yaml(config));
    metrics = MetricsWriter(run_dir->metrics());
  });
  log_resolved_config(config);

  const at::Device device(env.device);
  const Precision precision = parse_precision(tc.precision);
  const int64_t accumulation = tc.global_batch_size / (tc.micro_batch_size * env.world_size);
  const auto seed = static_cast<uint64_t>(config.run.seed);

  // data.source: tasks -> the prompt-task loader (collective start-up), else synthetic tokens.
  // First: prompt and prefix tables have one block per task.
  const std::unique_ptr<Communicator> comm = make_communicator(env, config.dist);
  std::unique_ptr<TaskTokenSource> tasks;
  if (config.data.source == "tasks")
    tasks = std::make_unique<TaskTokenSource>(config, env, *comm, device);
  const std::vector<std::string> task_names =
      tasks ? tasks->task_names() : std::vector<std::string>{};

  // Model, identical on every rank (same seed; rank 0's values broadcast to be certain).
  at::manual_seed(seed);
  Transformer model(model_spec_from_config(config.model));
  model->to(device);
  model->reset_parameters(seed);
  agree(env, [&] { load_pretrained_weights(*model, config); });
  model->train();

  // PEFT (model/adapters.h): a frozen base; the adapters are the only trainable tensors.
  const AdapterSpec adapter_spec = adapter_spec_from_config(
      config, model->spec(), tasks ? tasks->num_tasks() : SyntheticTokenSource::kNumTasks);
  std::string base_hash;
  std::vector<std::pair<std::string, at::Tensor>> trainable;  // adapters
  std::map<std::string, int64_t> block_rows;  // task tables: name -> rows per block
  std::vector<std::string> no_decay = tc.no_decay;
  if (adapter_spec.any()) {
    for (at::Tensor& p : model->parameters()) p.set_requires_grad(false);
    base_hash = module_hash(*model);
    auto adapters =
        std::make_shared<Adapters>(model->spec(), adapter_spec, model->lora_candidates());
    std::vector<int32_t> text_ids;
    if (adapter_spec.prompt && config.peft.prompt_init == "text")
      text_ids = load_tokenizer(config.data.tokenizer)->encode(config.peft.prompt_init_text);
    const auto named = model->named_parameters();
    const at::Tensor embedding = named[model->spec().family == ModelFamily::Gpt2
                                           ? "transformer.wte.weight"
                                           : "model.embed_tokens.weight"];
    agree(env, [&] {
      adapters->reset_parameters(seed, config.peft.prompt_init, embedding, text_ids);
    });
    if (adapter_spec.prompt) block_rows["prompt_embeddings"] = adapter_spec.prompt_tokens;
    if (adapter_spec.prefix)
      block_rows[adapter_spec.prefix_projection ? "prefix_encoder.embedding.weight"
                                                : "prefix_embeddings"] = adapter_spec.prefix_tokens;
    if (config.peft.prompt_shared) block_rows.clear();  // one block, used by every step
    std::vector<size_t> loaded_tasks;
    if (!config.peft.init_from.empty())
      agree(env, [&] {
        loaded_tasks = init_adapters_from(config.peft.init_from, base_hash, adapters->named(),
                                          block_rows, task_names);
      });
    adapters->to(device);
    // peft.freeze_loaded: the loaded blocks' gradient is zeroed before it accumulates, so AdamW
    // (zero moments, no decay) leaves them bitwise unchanged.
    if (config.peft.freeze_loaded && !loaded_tasks.empty()) {
      for (const auto& [name, tensor] : adapters->named()) {
        const auto rows = block_rows.find(name);
        if (rows == block_rows.end()) continue;
        at::Tensor keep = at::ones({tensor.size(0), 1}, tensor.options().requires_grad(false));
        for (size_t k : loaded_tasks)
          keep.narrow(0, static_cast<int64_t>(k) * rows->second, rows->second).zero_();
        at::Tensor t = tensor;
        t.register_hook([keep](const at::Tensor& g) { return g * keep; });
      }
      log::info("peft.freeze_loaded: the blocks of {} task(s) loaded from {} stay unchanged",
                loaded_tasks.size(), config.peft.init_from);
    }
    model->attach_adapters(adapters);
    trainable = adapters->named();
    // Task tables never decay: a block no step uses stays bitwise what it was.
    no_decay.insert(no_decay.end(), {"prompt_embeddings", "prefix_embeddings", "prefix_encoder.embedding"});
  }
  FlatParameters params = adapter_spec.any() ? FlatParameters(trainable, no_decay)
                                             : FlatParameters::from_module(*model, no_decay);
  // After the (identical) init: each rank its own random stream (LoRA dropout).
  at::manual_seed(seed ^ (0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(env.world_rank) + 1)));
  // Cross-rank: one communicator for the step's collectives (dist.backend) and the gradient
  // reducer's buckets over the flat grad buffers (comm/reducer.h); rank 0's initial weights.
  // Task tables are row-sparse: only the blocks of the step's tasks are reduced.
  if (adapter_spec.any()) {  // every rank must hold the same frozen base: rank 0's hash decides
    std::string root_hash = base_hash;
    comm->broadcast_bytes(root_hash, 0);
    agree(env, [&] {
      if (root_hash != base_hash)
        throw RuntimeFailure(fmt::format("the frozen base differs across ranks (rank {}: {}, rank "
                                         "0: {}); every rank must load the same "
                                         "model.from_pretrained",
                                         env.world_rank, base_hash, root_hash));
    });
  }
  ReducerOptions reducer_options{config.dist.bucket_cap_mb, config.dist.first_bucket_mb, {}};
  std::vector<std::pair<size_t, int64_t>> row_sparse;
  if (tasks)
    for (size_t i = 0; i < params.slots().size(); ++i)
      if (const auto it = block_rows.find(params.slots()[i].name); it != block_rows.end()) {
        reducer_options.row_sparse_slots.push_back(i);
        row_sparse.emplace_back(i, it->second * params.slots()[i].shape.at(1));
      }
  Reducer reducer(params, *comm, reducer_options);
  reducer.broadcast_parameters();
  AdamW optimizer(params, AdamWOptions{tc.beta1, tc.beta2, tc.eps, tc.weight_decay});
  const LrSchedule schedule(LrScheduleOptions{parse_schedule(tc.schedule), tc.lr, tc.steps,
                                              tc.warmup_steps, tc.min_lr_ratio});

  SyntheticTokenSource source(SyntheticDataOptions{seed, config.model.vocab_size,
                                                   config.data.seq_len, tc.micro_batch_size,
                                                   /*packed=*/true},
                              device);
  std::vector<Batch> batches;
  for (int64_t m = 0; m < accumulation; ++m)
    batches.push_back(tasks ? tasks->make_batch() : source.make_batch());
  std::vector<int64_t> batch_tokens(static_cast<size_t>(accumulation));

  TrainStepOptions step_options;
  step_options.grad_clip = tc.grad_clip;
  step_options.precision = precision;
  step_options.num_tasks = tasks ? tasks->num_tasks() : SyntheticTokenSource::kNumTasks;
  step_options.comm = comm.get();
  step_options.reducer = &reducer;
  step_options.device = device;
  step_options.row_sparse = row_sparse;
  const auto forward = [&model](const Batch& b) {
    return model->forward(b.input_ids, b.position_ids, b.doc_ids, b.task_ids);
  };
  TrainStep train_step(forward, params, optimizer, step_options);

  log::info("model: {} {} parameters in {} flat groups; {} rank(s) on {}, {} thread(s) each; "
            "precision {}",
            family_name(model->spec().family), params.numel(), params.num_groups(),
            env.world_size, env.device, env.threads, precision_name(precision));
  if (adapter_spec.any())
    log::info("method: {} | {} trainable parameters ({:.3f}% of the {} frozen base weights) | "
              "base {}{}",
              method_name(adapter_spec), params.numel(),
              100.0 * static_cast<double>(params.numel()) /
                  static_cast<double>(parameter_count(model->spec())),
              parameter_count(model->spec()), base_hash,
              row_sparse.empty() ? ""
                                 : fmt::format(" | {} task table(s) reduced row-sparse",
                                               row_sparse.size()));
  log::info("batch: {} sequences x {} tokens per step = {} micro-batch(es) of {} per rank",
            tc.global_batch_size, config.data.seq_len, accumulation, tc.micro_batch_size);
  log::info("gradients: {} bucket(s) (first {} MiB, then {} MiB) all-reduced over {}",
            reducer.buckets().size(), config.dist.first_bucket_mb, config.dist.bucket_cap_mb,
            comm->backend_name());
  // The controller (control/controller.h): rank 0 decides every step's tasks and actions.
  const int64_t tokens_per_step = tc.global_batch_size * config.data.seq_len;
  std::unique_ptr<Controller> controller;
  agree(env, [&] {
    controller = std::make_unique<Controller>(
        config, *comm, task_names,
        tasks ? tasks->loader().task_examples() : std::vector<int64_t>{},
        tasks ? tasks->loader().slots_per_step() : 0, tokens_per_step);
  });
  if (metrics.enabled()) {
    boost::json::object start;
    start["kind"] = "start";
    start["world_size"] = env.world_size;
    start["steps"] = tc.steps;
    start["parameters"] = params.numel();
    start["method"] = config.train.method;
    if (!base_hash.empty()) start["base_model_hash"] = base_hash;
    if (controller->schedule()) {  // the first phase's mixture: each task's share
      const std::vector<double> shares = controller->schedule()->shares();
      boost::json::object mixture;
      for (size_t k = 0; k < shares.size(); ++k) mixture[tasks->task_names()[k]] = shares[k];
      start["mixture"] = std::move(mixture);
    }
    metrics.write(std::move(start));
  }

  // Checkpoints (train/checkpointing.h): resume restores parameters, optimizer, generators, the
  // loader and the metrics history; saves every checkpoint.every_steps steps and at the end.
  Checkpointer checkpointer(config, env, *comm, params, optimizer, train_step.loss_scaler());
  const std::optional<TrainProgress> resumed = checkpointer.resume(task_names);
  if (resumed && resumed->base_model_hash != base_hash)  // the same on every rank
    throw InputError(fmt::format(
        "train.resume: the checkpoint's adapters were trained on base model {}; this run's base "
        "(model.from_pretrained `{}`) is {}; resume on the base they were trained on",
        resumed->base_model_hash.empty() ? "none (a full fine-tuning checkpoint)"
                                         : resumed->base_model_hash,
        config.model.from_pretrained, base_hash.empty() ? "not frozen (train.method full)" : base_hash));
  const int64_t start_step = resumed ? resumed->step : 0;
  int64_t tokens_seen = resumed ? resumed->tokens_seen : 0;
  if (resumed && tasks && resumed->loader) tasks->loader().restore(*resumed->loader);
  if (resumed && metrics.enabled()) {
    boost::json::object rec;
    rec["kind"] = "resume";
    rec["step"] = start_step;
    rec["world_size"] = env.world_size;
    metrics.write(std::move(rec));
  }

  // Held-out evaluation (train/evaluate.h): at the start of a fresh run, every eval.every_steps
  // steps and at the end.
  Batch eval_batch = tasks ? tasks->make_batch() : Batch{};
  const std::unique_ptr<Tokenizer> eval_tokenizer =
      tasks ? load_tokenizer(config.data.tokenizer) : nullptr;
  const int32_t eos_id = eval_tokenizer ? eval_tokenizer->eos_id() : -1;
  const auto evaluate = [&](int64_t step) -> MetricTable {
    if (!tasks) return {};
    model->eval();
    std::vector<TaskEval> evals;
    {
      AutocastScope autocast(precision, device);
      EvalOptions o;
      o.max_batches = config.eval.max_batches;
      o.rank = env.world_rank;
      o.world_size = env.world_size;
      o.comm = comm.get();
      o.model = model.get();
      o.eos_id = eos_id;
      o.max_new_tokens = config.eval.max_new_tokens;
      o.stop = config.eval.stop;
      o.tokenizer = eval_tokenizer.get();
      evals = evaluate_held_out(*tasks, forward, eval_batch, o);
    }
    model->train();
    for (const TaskEval& e : evals) {
      if (!metrics.enabled()) break;
      for (const TemplateLoss& t : e.templates) {
        boost::json::object rec;
        rec["kind"] = "eval";
        rec["step"] = step;
        rec["task"] = e.task;
        rec["template"] = t.template_id;
        const bool held_out = t.label.starts_with('*');
        rec["template_name"] = held_out ? t.label.substr(1) : t.label;
        rec["held_out"] = held_out;
        rec["loss"] = t.loss();
        rec["perplexity"] = std::exp(t.loss());
        if (t.scored > 0) rec["exact_match"] = t.exact_match();
        if (t.classified > 0) rec["accuracy"] = t.accuracy();
        rec["tokens"] = t.tokens;
        rec["documents"] = t.documents;
        metrics.write(std::move(rec));
      }
      boost::json::object rec;
      rec["kind"] = "eval";
      rec["step"] = step;
      rec["task"] = e.task;
      rec["template"] = "all";
      rec["loss"] = e.loss();
      rec["perplexity"] = std::exp(e.loss());
      rec["worst_template_loss"] = e.worst_template_loss();
      if (e.scored > 0) {
        rec["exact_match"] = e.exact_match();
        rec["worst_template_exact_match"] = e.worst_template_exact_match();
      }
      if (e.classified > 0) {
        rec["accuracy"] = e.accuracy();
        rec["worst_template_accuracy"] = e.worst_template_accuracy();
      }
      rec["tokens"] = e.tokens;
      rec["documents"] = e.documents;
      metrics.write(std::move(rec));
    }
    for (const std::string& line : format_eval_table(evals, step)) log::info("{}", line);
    for (const std::string& line : format_template_table(evals, step)) log::info("{}", line);
    return metric_table(evals);
  };
  // The schedule's decisions for the logs and metrics.jsonl (rank 0).
  const auto report_events = [&] {
    if (!env.is_root()) return;
    for (const ScheduleEvent& e : controller->take_events()) {
      const PhaseSpec& phase = controller->schedule()->phases()[static_cast<size_t>(e.phase)];
      boost::json::object rec;
      rec["step"] = e.step;
      rec["phase"] = phase.name;
      rec["reason"] = e.reason;
      if (e.kind == ScheduleEvent::Kind::kPhase) {
        rec["kind"] = "phase";
        rec["index"] = e.phase;
        log::info("schedule: phase {} `{}` from step {} ({})", e.phase, phase.name, e.step,
                  e.reason);
      } else {
        rec["kind"] = "mixture";
        boost::json::object weights;
        std::string text;
        for (size_t k = 0; k < e.shares.size(); ++k) {
          weights[task_names[k]] = e.shares[k];
          if (e.shares[k] > 0)
            text += fmt::format("{}{} {:.1f}%", text.empty() ? "" : ", ", task_names[k],
                                100.0 * e.shares[k]);
        }
        rec["weights"] = std::move(weights);
        log::info("schedule: mixture of `{}` from step {} ({}): {}", phase.name, e.step,
                  e.reason, text);
      }
      if (metrics.enabled()) metrics.write(std::move(rec));
    }
  };
  std::optional<ControlState> resumed_control;
  if (resumed) resumed_control = resumed->control;
  bool summary_stopped_at_start = false;
  agree(env, [&] { controller->restore(start_step, resumed_control); });
  Decision first = controller->start(start_step);
  report_events();
  if (!resumed && tasks) {
    first = controller->after_eval(0, evaluate(0));
    report_events();
  }
  // The schedule may end before any step: a last phase whose `until` holds at step 0, or a run
  // preempted right at the end of its schedule.
  int64_t last_step = tc.steps;
  if (first.stop == StopReason::kSchedule) {
    last_step = start_step;
    summary_stopped_at_start = true;
    log::info("schedule: the last phase ended at step {}; nothing to train", start_step);
    if (metrics.enabled()) {
      boost::json::object rec;
      rec["kind"] = "stopped";
      rec["step"] = start_step;
      rec["reason"] = "schedule";
      metrics.write(std::move(rec));
    }
  }

  install_preemption_handlers();
  TrainSummary summary;
  if (summary_stopped_at_start) summary.stopped = stop_reason_name(StopReason::kSchedule);
  TaskSummary task_summary(tasks ? tasks->task_names() : std::vector<std::string>{}, start_step,
                           tc.steps);
  const Clock::time_point run_start = Clock::now();
  for (int64_t step = start_step; step < last_step; ++step) {
    const Clock::time_point t0 = Clock::now();
    const StepPlan& plan = controller->plan(step);
    const int32_t phase = plan.phase;
    if (tasks) {
      tasks->plan_step(step, plan.slot_tasks);
      if (env.is_root()) controller->log_plan(plan, env.world_size, tasks->slot_documents());
    }
    for (int64_t m = 0; m < accumulation; ++m) {
      if (tasks) {
        batch_tokens[static_cast<size_t>(m)] = tasks->fill(m, batches[static_cast<size_t>(m)]);
        continue;
      }
      const int64_t first = first_sample_index(step, tc.global_batch_size, env.world_rank,
                                               env.world_size, m, tc.micro_batch_size);
      batch_tokens[static_cast<size_t>(m)] = source.fill(first, batches[static_cast<size_t>(m)]);
    }
    if (!row_sparse.empty()) train_step.set_rows_in_use(tasks->tasks_in_step());
    const double lr = schedule.lr(step);
    StepResult r;
    try {
      r = train_step.run(batches, batch_tokens, lr);
    } catch (const RuntimeFailure& e) {  // a collective failed: name the step and its tasks
      if (e.agreed() || e.reported()) throw;
      throw RuntimeFailure(fmt::format("step {} (tasks in flight: {}): {}", step + 1,
                                       controller->in_flight(step), e.what()));
    }
    const double step_time = seconds_since(t0);
    if (config.dist.check_params_every > 0 && (step + 1) % config.dist.check_params_every == 0)
      reducer.check_parameters_in_sync(step + 1);

    // The controller's decision at this step boundary: a preemption signal that reached any
    // rank (core/signals.h), evaluation, checkpoint, the schedule's end.
    const Clock::time_point c0 = Clock::now();
    Decision decision = controller->after_step(step + 1, preemption_signal(), step_time);
    const double control_s = seconds_since(c0);
    report_events();

    if (step == start_step) summary.first_loss = r.loss;
    if (!r.skipped) task_summary.add(step, r.task_loss_sum, r.task_tokens);
    tokens_seen += tokens_per_step;
    summary.last_loss = r.loss;
    summary.steps = step + 1;
    summary.skipped_steps += r.skipped ? 1 : 0;
    boost::json::object record = metrics_record(step + 1, lr, r, tokens_per_step, step_time, env.world_size);
    record["step_time_max_s"] = decision.step_time_max;
    record["control_s"] = control_s;  // the controller's step boundary (collectives included)
    if (tasks) record["phase"] = phase;
    checkpointer.remember(record);
    metrics.write(std::move(record));
    if ((step + 1) % config.run.log_every == 0 || step + 1 == tc.steps || step == 0) {
      const double elapsed = seconds_since(run_start);
      ProgressFields f;
      f.step = step + 1;
      f.total_steps = tc.steps;
      f.loss = r.loss;
      f.lr = lr;
      f.grad_norm = r.grad_norm;
      f.tokens_per_s = static_cast<double>(tokens_per_step) / step_time;
      f.eta_s = elapsed / static_cast<double>(step + 1 - start_step) *
                static_cast<double>(tc.steps - step - 1);
      f.skipped = r.skipped;
      f.loss_scale = r.loss_scale;
      log::info("{}", format_progress_line(f));
    }
    if (decision.evaluate) {
      const Decision after = controller->after_eval(step + 1, evaluate(step + 1));
      report_events();
      decision.checkpoint = decision.checkpoint || after.checkpoint;
      if (decision.stop == StopReason::kNone) decision.stop = after.stop;
    }
    const bool preempt = decision.stop == StopReason::kPreempted;
    const bool last = step + 1 == tc.steps || decision.stop != StopReason::kNone;
    TrainProgress progress;
    progress.step = step + 1;
    progress.tokens_seen = tokens_seen;
    progress.loss = r.loss;
    progress.data_source = config.data.source;
    progress.base_model_hash = base_hash;
    if (tasks) {
      progress.loader = tasks->loader().state();
      progress.task_names = tasks->task_names();
      progress.mixture_weights = env.is_root() ? controller->schedule()->weights()
                                               : tasks->loader().mixture_weights();
    }
    if (env.is_root()) {
      progress.control = controller->state();
      if (const auto best = controller->best_metric_value()) progress.metrics[best->first] = best->second;
    }
    checkpointer.after_step(std::move(progress), decision.checkpoint || last, last, metrics);
    if (preempt) {
      const std::string name = signal_name(static_cast<int>(decision.signal));
      if (metrics.enabled()) {
        boost::json::object rec;
        rec["kind"] = "preempted";
        rec["step"] = step + 1;
        rec["signal"] = name;
        metrics.write(std::move(rec));
      }
      log::info("{}: checkpoint of step {} written; exiting {} so the job is requeued "
                "(train.resume: auto continues from it)",
                name, step + 1, static_cast<int>(ExitCode::kPreempted));
      Preempted stop(fmt::format("{} at step {}", name, step + 1));
      stop.set_agreed(true);  // every rank got the same decision and stops here
      stop.set_reported(true);
      throw stop;
    }
    if (decision.stop != StopReason::kNone) {
      summary.stopped = stop_reason_name(decision.stop);
      if (decision.stop == StopReason::kEarlyStopping) {
        const EarlyStopping& es = controller->early_stopping();
        log::info("early stopping: {} has not improved for {} evaluation(s) (best {:.4f} at "
                  "step {}); stopping after step {} of {}",
                  es.ref().key(), config.early_stopping.patience, es.state().best,
                  es.state().best_step, step + 1, tc.steps);
      } else {
        log::info("schedule: the last phase ended; stopping after step {} of {}", step + 1,
                  tc.steps);
      }
      if (metrics.enabled()) {
        boost::json::object rec;
        rec["kind"] = "stopped";
        rec["step"] = step + 1;
        rec["reason"] = summary.stopped;
        metrics.write(std::move(rec));
      }
      break;
    }
  }
  const std::string param_hash = parameter_hash(params);
  // Peak resident memory of the largest rank (getrusage: the high-water mark of this process).
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double peak_rss_mb =
      static_cast<double>(comm->all_reduce_scalar(static_cast<int64_t>(usage.ru_maxrss), ReduceOp::kMax)) / 1024.0;
  if (metrics.enabled()) {
    boost::json::object end;
    end["kind"] = "end";
    end["step"] = std::max(start_step, summary.steps);
    end["tokens_seen"] = tokens_seen;
    end["param_hash"] = param_hash;
    end["peak_rss_mb"] = peak_rss_mb;
    if (!summary.stopped.empty()) end["stopped"] = summary.stopped;
    if (!base_hash.empty()) end["base_model_hash"] = module_hash(*model);  // still the base's
    metrics.write(std::move(end));
  }
  const double total_time = seconds_since(run_start);
  const int64_t steps_run = std::max(summary.steps - start_step, int64_t{0});
  summary.tokens_per_s =
      total_time > 0 ? static_cast<double>(tokens_per_step * steps_run) / total_time : 0.0;
  log::info("done: {} steps in {} | loss {:.4f} -> {:.4f} | {} tok/s | peak RSS {:.0f} MB/rank | "
            "parameters {}{}",
            steps_run,
            format_duration(total_time), summary.first_loss, summary.last_loss,
            format_rate(summary.tokens_per_s), peak_rss_mb, param_hash,
            summary.skipped_steps > 0 ? fmt::format(" | {} skipped", summary.skipped_steps) : "");
  const std::vector<std::string> table = task_summary.format();
  if (!table.empty()) {
    log::info("per task (training loss per target token; all ranks):");
    for (const auto& line : table) log::info("  {}", line);
  }
  return summary;
}

}  // namespace pft
