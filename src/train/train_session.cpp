#include "train/train_session.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "comm/communicator.h"
#include "comm/reducer.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "train/evaluate.h"
#include "train/held_out_eval.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/synthetic_data.h"
#include "train/task_source.h"
#include "train/trainer.h"

namespace pft {

namespace {

Config resolve_config(const Config& in, const RankEnv& env) {
  Config config = in;
  agree(env, [&] {
    apply_pretrained_architecture(config);
    validate_for_training(config, env);
  });
  return config;
}

void log_resolved_config(const Config& config) {
  std::istringstream lines(to_yaml(config));
  log::info("resolved config ({}):", config.file);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) log::info("  {}", line);
}

// Rank 0: run.dir, locked for this run before anything is written there (Note [run directory
// lock] in core/run_dir.h), and config.resolved.yaml; says what a fresh run does to a used one.
RunDir open_run_dir(const Config& config) {
  RunDir dir(config.run.dir, /*create=*/true);
  const char* job = std::getenv("SLURM_JOB_ID");
  dir.lock(job != nullptr ? job : "");
  if (config.train.resume.mode == ResumeFrom::Mode::kNone) {
    std::error_code ec;
    int64_t found = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.checkpoints(), ec))
      found += e.path().extension() == ".h5" ? 1 : 0;
    if (found > 0)
      log::warn("run.dir {} already holds {} checkpoint(s) of an earlier run: this run starts "
                "from step 0 (train.resume: none), appends to its metrics.jsonl and replaces "
                "checkpoints of the same steps; use --set train.resume=auto to continue it, or "
                "another run.dir",
                config.run.dir, found);
  }
  RunDir::write_file_atomic(dir.resolved_config(), to_yaml(config));
  return dir;
}

}  // namespace

TrainSession::TrainSession(const Config& config_in, const RankEnv& env_in)
    : config(resolve_config(config_in, env_in)),
      env(env_in),
      device(env_in.device),
      precision(config.train.precision),
      accumulation(config.train.global_batch_size /
                   (config.train.micro_batch_size * env_in.world_size)),
      tokens_per_step(config.train.global_batch_size * config.data.seq_len) {
  const TrainConfig& tc = config.train;
  const auto seed = static_cast<uint64_t>(config.run.seed);

  // 2. Run directory (rank 0, locked for the whole run; a failure, another run holding it
  // included, stops every rank).
  agree(env, [&] {
    if (!env.is_root()) return;
    run_dir.emplace(open_run_dir(config));
    metrics = MetricsSink(run_dir->metrics());
  });
  log_resolved_config(config);

  // 3. The communicator (dist.backend): every collective from here on has its deadline.
  comm = make_communicator(env, config.dist);

  // 4. Data. Prompt and prefix tables have one block per task, so the tasks come first.
  if (config.data.source == DataSource::kTasks) {
    tasks = std::make_unique<TaskTokenSource>(config, env, *comm, device);
    task_names = tasks->task_names();
  }
  // run.tensorboard: the event file beside metrics.jsonl, once the per-task arrays' names are
  // known (the synthetic tasks are numbered).
  agree(env, [&] {
    if (!env.is_root() || !config.run.tensorboard) return;
    std::vector<std::string> names = task_names;
    if (!tasks)
      for (int64_t k = 0; k < SyntheticTokenSource::kNumTasks; ++k)
        names.push_back(fmt::format("synthetic{}", k));
    metrics.enable_tensorboard(run_dir->root() / "tensorboard", std::move(names));
    log::info("tensorboard: writing {}", metrics.tensorboard_file().string());
  });
  if (!tasks)
    synthetic = std::make_unique<SyntheticTokenSource>(
        SyntheticDataOptions{seed, config.model.vocab_size, config.data.seq_len,
                             tc.micro_batch_size, /*packed=*/true},
        device);

  // 5. Model, identical on every rank (same seed; rank 0's values broadcast below to be certain).
  at::manual_seed(seed);
  model = Transformer(model_spec_from_config(config.model));
  model->to(device);
  model->reset_parameters(seed);
  agree(env, [&] { load_pretrained_weights(*model, config); });
  model->train();

  // 6-7. Adapters and the flat trainable parameters.
  adapter_spec = adapter_spec_from_config(
      config, model->spec(), tasks ? tasks->num_tasks() : SyntheticTokenSource::kNumTasks);
  attach_adapters();
  // After the (identical) init: each rank its own random stream (LoRA dropout).
  at::manual_seed(seed ^ (0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(env.world_rank) + 1)));

  // 8. The gradient reducer (comm/reducer.h): task tables are row-sparse, only the blocks of the
  // step's tasks are reduced; rank 0's initial weights go to every rank.
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
  if (config.dist.grad_comm_dtype == "bf16") {
    // The NCCL backend has no float32-accumulating reduce-scatter of bf16 yet (NCCL's own sums
    // in bf16): refuse rather than silently accumulate in bf16. One rank communicates nothing.
    if (comm->backend_name() != "mpi" && env.world_size > 1)
      throw InputError(fmt::format(
          "dist.grad_comm_dtype: bf16 is implemented for the MPI backend only (this run uses "
          "{}); set dist.grad_comm_dtype: fp32, or dist.backend: mpi",
          comm->backend_name()));
    if (comm->backend_name() == "mpi") reducer_options.grad_comm_dtype = at::kBFloat16;
  }
  if (tasks)
    for (size_t i = 0; i < params->slots().size(); ++i)
      if (const auto it = block_rows.find(params->slots()[i].name); it != block_rows.end()) {
        reducer_options.row_sparse_slots.push_back(i);
        row_sparse.emplace_back(i, it->second * params->slots()[i].shape.at(1));
      }
  reducer = std::make_unique<Reducer>(*params, *comm, reducer_options);
  reducer->broadcast_parameters();

  // 9. Optimizer, learning rate, micro-batches, the step.
  // dist.zero 1: each rank keeps the moments of its shard only (Note [ZeRO-1] in
  // train/optimizer.h); on one rank that is all of them, the replicated optimizer.
  optimizer = std::make_unique<AdamW>(*params,
                                      AdamWOptions{tc.beta1, tc.beta2, tc.eps, tc.weight_decay},
                                      config.dist.zero == 1 ? comm.get() : nullptr);
  lr_schedule = std::make_unique<LrSchedule>(LrScheduleOptions{
      parse_schedule(tc.schedule), tc.lr, tc.steps, tc.warmup_steps, tc.min_lr_ratio});
  for (int64_t m = 0; m < accumulation; ++m)
    batches.push_back(tasks ? tasks->make_batch() : synthetic->make_batch());
  batch_tokens.assign(static_cast<size_t>(accumulation), 0);
  TrainStepOptions step_options;
  step_options.grad_clip = tc.grad_clip;
  step_options.precision = precision;
  step_options.num_tasks = tasks ? tasks->num_tasks() : SyntheticTokenSource::kNumTasks;
  step_options.comm = comm.get();
  step_options.reducer = reducer.get();
  step_options.device = device;
  step_options.row_sparse = row_sparse;
  step_options.loss_chunk_rows = tc.loss_chunk_rows;
  step_options.hidden_forward = [this](const Batch& b) {
    return std::make_pair(model->forward_hidden(b.input_ids, b.position_ids, b.doc_ids, b.task_ids),
                          model->output_weight());
  };
  model->set_activation_checkpointing(tc.activation_checkpointing);
  train_step = std::make_unique<TrainStep>(
      [this](const Batch& b) {
        return model->forward(b.input_ids, b.position_ids, b.doc_ids, b.task_ids);
      },
      *params, *optimizer, step_options);
  log_setup();

  // 10. The controller: rank 0 decides every step's tasks and actions (control/controller.h).
  agree(env, [&] {
    controller = std::make_unique<Controller>(
        config, *comm, task_names,
        tasks ? tasks->loader().task_examples() : std::vector<int64_t>{},
        tasks ? tasks->loader().slots_per_step() : 0, tokens_per_step);
  });

  // 11. Checkpoints (resume() restores from them).
  checkpointer = std::make_unique<Checkpointer>(config, env, *comm, *params, *optimizer,
                                                train_step->loss_scaler(), metrics);
  if (tasks) held_out_ = std::make_unique<HeldOutEvaluator>(config, *tasks);
}

TrainSession::~TrainSession() = default;

// PEFT (model/adapters.h): a frozen base; the adapters are the only trainable tensors.
void TrainSession::attach_adapters() {
  std::vector<std::string> no_decay = config.train.no_decay;
  if (!adapter_spec.any()) {
    params = std::make_unique<FlatParameters>(FlatParameters::from_module(*model, no_decay));
    return;
  }
  const auto seed = static_cast<uint64_t>(config.run.seed);
  for (at::Tensor& p : model->parameters()) p.set_requires_grad(false);
  base_hash = module_hash(*model);
  auto adapters = std::make_shared<Adapters>(model->spec(), adapter_spec, model->lora_candidates());
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
  // Task tables never decay: a block no step uses stays bitwise what it was.
  no_decay.insert(no_decay.end(),
                  {"prompt_embeddings", "prefix_embeddings", "prefix_encoder.embedding"});
  params = std::make_unique<FlatParameters>(adapters->named(), no_decay);
}

void TrainSession::log_setup() const {
  log::info("model: {} {} parameters in {} flat groups; {} rank(s) on {}, {} thread(s) each; "
            "precision {}",
            family_name(model->spec().family), params->numel(), params->num_groups(),
            env.world_size, env.device, env.threads, precision_name(precision));
  if (adapter_spec.any())
    log::info("method: {} | {} trainable parameters ({:.3f}% of the {} frozen base weights, "
              "stored as {}) | base {}{}",
              method_name(adapter_spec), params->numel(),
              100.0 * static_cast<double>(params->numel()) /
                  static_cast<double>(parameter_count(model->spec())),
              parameter_count(model->spec()), precision_name(config.model.base_dtype), base_hash,
              row_sparse.empty() ? ""
                                 : fmt::format(" | {} task table(s) reduced row-sparse",
                                               row_sparse.size()));
  log::info("batch: {} sequences x {} tokens per step = {} micro-batch(es) of {} per rank",
            config.train.global_batch_size, config.data.seq_len, accumulation,
            config.train.micro_batch_size);
  log::info("gradients: {} bucket(s) (first {} MiB, then {} MiB) {} over {}",
            reducer->buckets().size(), config.dist.first_bucket_mb, config.dist.bucket_cap_mb,
            config.dist.grad_comm_dtype == "bf16"
                ? "sent as bf16 (reduce-scatter summed in fp32, all-gather)"
                : "all-reduced in fp32",
            comm->backend_name());
  log::info("optimizer: AdamW state {} bytes ({:.2f} MiB) on this rank{}",
            optimizer->state_bytes(),
            static_cast<double>(optimizer->state_bytes()) / (1024.0 * 1024.0),
            optimizer->sharded()
                ? fmt::format(" (dist.zero 1: sharded over {} ranks, updated shards all-gathered)",
                              env.world_size)
                : std::string(" (replicated)"));
}

TrainSession::StartPoint TrainSession::resume() {
  MetricsSink::Start start;
  start.world_size = env.world_size;
  start.steps = config.train.steps;
  start.parameters = params->numel();
  start.method = config::config_text(config.train.method);
  start.base_model_hash = base_hash;
  if (controller->schedule()) {  // the first phase's mixture: each task's share
    const std::vector<double> shares = controller->schedule()->shares();
    for (size_t k = 0; k < shares.size(); ++k) start.mixture.emplace_back(task_names[k], shares[k]);
  }
  metrics.start(start);

  const std::optional<TrainProgress> resumed = checkpointer->resume(task_names);
  if (resumed && resumed->base_model_hash != base_hash)  // the same on every rank
    throw InputError(fmt::format(
        "train.resume: the checkpoint's adapters were trained on base model {}; this run's base "
        "(model.from_pretrained `{}`) is {}; resume on the base they were trained on",
        resumed->base_model_hash.empty() ? "none (a full fine-tuning checkpoint)"
                                         : resumed->base_model_hash,
        config.model.from_pretrained,
        base_hash.empty() ? "not frozen (train.method full)" : base_hash));
  const int64_t start_step = resumed ? resumed->step : 0;
  if (resumed) {
    if (tasks && resumed->loader) tasks->loader().restore(*resumed->loader);
    metrics.resume(start_step, env.world_size);
  }
  std::optional<ControlState> control;
  if (resumed) control = resumed->control;
  agree(env, [&] { controller->restore(start_step, control); });
  StartPoint point;
  point.step = start_step;
  point.tokens_seen = resumed ? resumed->tokens_seen : 0;
  point.resumed = resumed.has_value();
  return point;
}

void TrainSession::fill_batches(int64_t step, const StepPlan& plan) {
  if (tasks) {
    tasks->plan_step(step, plan.slot_tasks);
    if (env.is_root()) controller->log_plan(plan, env.world_size, tasks->slot_documents());
  }
  for (int64_t m = 0; m < accumulation; ++m) {
    const auto i = static_cast<size_t>(m);
    if (tasks) {
      batch_tokens[i] = tasks->fill(m, batches[i]);
    } else {
      const TrainConfig& tc = config.train;
      batch_tokens[i] = synthetic->fill(first_sample_index(step, tc.global_batch_size,
                                                           env.world_rank, env.world_size, m,
                                                           tc.micro_batch_size),
                                        batches[i]);
    }
  }
  if (!row_sparse.empty()) train_step->set_rows_in_use(tasks->tasks_in_step());
}

StepResult TrainSession::run_step(int64_t step, double lr) {
  try {
    return train_step->run(batches, batch_tokens, lr);
  } catch (const RuntimeFailure& e) {  // a collective failed: name the step and its tasks
    if (e.agreed() || e.reported()) throw;
    throw RuntimeFailure(fmt::format("step {} (tasks in flight: {}): {}", step + 1,
                                     controller->in_flight(step), e.what()));
  }
}

MetricTable TrainSession::evaluate(int64_t step) {
  if (!tasks) return {};
  model->eval();
  const std::vector<TaskEval> evals = held_out_->run(*model, env, comm.get(), precision);
  model->train();
  metrics.eval(step, evals);
  log_held_out_tables(env, evals, step);
  return metric_table(evals);
}

void TrainSession::report_events() {
  if (!env.is_root()) return;
  for (const ScheduleEvent& e : controller->take_events()) {
    const PhaseSpec& phase = controller->schedule()->phases()[static_cast<size_t>(e.phase)];
    if (e.kind == ScheduleEvent::Kind::kPhase) {
      log::info("schedule: phase {} `{}` from step {} ({})", e.phase, phase.name, e.step,
                e.reason);
    } else {
      std::string text;
      for (size_t k = 0; k < e.shares.size(); ++k)
        if (e.shares[k] > 0)
          text += fmt::format("{}{} {:.1f}%", text.empty() ? "" : ", ", task_names[k],
                              100.0 * e.shares[k]);
      log::info("schedule: mixture of `{}` from step {} ({}): {}", phase.name, e.step, e.reason,
                text);
    }
    metrics.schedule_event(e, phase.name, task_names);
  }
}

TrainProgress TrainSession::progress(int64_t step, int64_t tokens_seen, double loss) {
  TrainProgress p;
  p.step = step;
  p.tokens_seen = tokens_seen;
  p.loss = loss;
  p.data_source = config::config_text(config.data.source);
  p.base_model_hash = base_hash;
  if (tasks) {
    p.loader = tasks->loader().state();
    p.task_names = task_names;
    p.mixture_weights = env.is_root() ? controller->schedule()->weights()
                                      : tasks->loader().mixture_weights();
  }
  if (env.is_root()) {
    p.control = controller->checkpoint_state(step);
    if (const auto best = controller->best_metric_value()) p.metrics[best->first] = best->second;
  }
  return p;
}

}  // namespace pft
