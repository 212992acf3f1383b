#include "train/trainer.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/reducer.h"
#include "control/controller.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/signals.h"
#include "core/test_hooks.h"
#include "core/trace.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "model/transformer.h"
#include "train/flops.h"
#include "train/lr_schedule.h"
#include "train/precision.h"
#include "train/progress.h"
#include "train/trace_merge.h"
#include "train/train_session.h"

namespace pft {

void validate_for_training(const Config& c, const RankEnv& env) {
  const auto fail = [&](const std::string& path, const std::string& what) {
    config::fail(c.source_of(path), path, what);
  };
  const Method method = c.train.method;
  if (is_peft(method)) {
    if ((has_prompt(method) || has_prefix(method)) && c.data.source != DataSource::kTasks)
      fail("train.method", "prompt and prefix tuning learn one block per task; they need "
                           "data.source: tasks");
    if (has_prompt(method) && c.peft.prompt_tokens >= c.data.seq_len - 1)
      fail("peft.prompt_tokens", fmt::format("{} virtual tokens leave no room in data.seq_len = {}",
                                             c.peft.prompt_tokens, c.data.seq_len));
    if (has_prefix(method) &&
        c.data.seq_len + c.peft.prefix_tokens > c.model.max_seq_len)
      fail("peft.prefix_tokens",
           fmt::format("a prefix of {} shifts positions (as PEFT): data.seq_len {} + {} exceeds "
                       "model.max_seq_len {}; use a shorter prefix or data.seq_len",
                       c.peft.prefix_tokens, c.data.seq_len, c.peft.prefix_tokens,
                       c.model.max_seq_len));
    if (c.model.from_pretrained.empty())
      log::warn_once("train.method {}: model.from_pretrained is empty, so the frozen base is the "
                     "random init; adapters are meant for a pretrained model",
                     config::config_text(method));
  }
  if (!c.peft.init_from.empty() && !std::filesystem::is_regular_file(c.peft.init_from))
    fail("peft.init_from", fmt::format("no checkpoint file '{}'", c.peft.init_from));
  if (c.peft.freeze_loaded && c.peft.init_from.empty())
    fail("peft.freeze_loaded", "freezes the blocks loaded by peft.init_from, which is empty");
  if (c.peft.freeze_loaded &&
      (c.peft.prompt_shared || c.peft.prefix_projection || has_lora(method)))
    fail("peft.freeze_loaded",
         "freezes the loaded tasks' own blocks of a prompt or prefix table; with shared "
         "parameters (peft.prompt_shared, peft.prefix_projection's MLP, LoRA) the loaded tasks "
         "would still change; use it with prompt_tuning or prefix_tuning alone");
  if (!c.peft.init_from.empty() && !is_peft(method))
    fail("peft.init_from", "starts adapters from a checkpoint; train.method full has none (use "
                           "train.resume or model.from_pretrained)");
  if (!c.model.from_pretrained.empty()) {
    Config resolved = c;  // the directory, and the model.* keys it decides (model/hf_import.h)
    apply_pretrained_architecture(resolved);
  }
  // An explicit checkpoint must exist before anything is built (train/checkpointing.h verifies it).
  if (c.train.resume.mode == ResumeFrom::Mode::kFile &&
      !std::filesystem::is_regular_file(c.train.resume.file))
    fail("train.resume", fmt::format("no checkpoint file '{}'; use `auto` to pick the newest valid "
                                     "checkpoint of run.dir, or `none`", c.train.resume.file));
  if (c.model.vocab_size < 2)
    fail("model.vocab_size", "the model needs at least 2 tokens to learn anything");
  // The embedding must hold every id the tokenizer can produce.
  const int32_t tokenizer_vocab = load_tokenizer(c.data.tokenizer)->vocab_size();
  if (c.model.vocab_size < tokenizer_vocab)
    fail("model.vocab_size",
         fmt::format("{} is smaller than the vocabulary of data.tokenizer `{}` ({} ids); use at "
                     "least {}", c.model.vocab_size, c.data.tokenizer, tokenizer_vocab,
                     tokenizer_vocab));
  if (c.train.precision == Precision::kFp16 && !env.is_cuda())
    log::warn_once("train.precision: fp16 on the CPU is slow on most processors; bf16 is the CPU "
                   "choice (fp16 runs, with loss scaling)");
  // Anything else about the shape the model refuses (it names the model.* key).
  (void)model_spec_from_config(c.model);
}

namespace {

using Clock = std::chrono::steady_clock;

// Model FLOPs per token and the device's peak, for MFU (train/flops.h).
struct FlopsModel {
  double per_token = 0.0;
  std::optional<double> peak;
};

FlopsModel flops_model(const TrainSession& s, const RankEnv& env) {
  FlopsModel f;
  f.per_token = training_flops_per_token(s.config.model, s.config.data.seq_len,
                                         s.config.train.method);
  if (env.is_cuda()) {
    const std::string name = device_name(env.device);
    f.peak = gpu_peak_flops(name, s.config.train.precision);
    if (f.peak)
      log::info("MFU: {:.3g} model GFLOPs per token against {}'s {:.0f} TFLOP/s ({})",
                f.per_token / 1e9, name, *f.peak / 1e12, config_text(s.config.train.precision));
    else
      log::info("MFU: {} is not in pft's table of peaks (train/flops.cpp); metrics.jsonl has "
                "model_tflops_per_rank but no mfu", name);
  }
  return f;
}

// A progress line every run.log_every steps, and at the first and the last.
bool progress_due(const TrainSession& s, int64_t step) {
  return step % s.config.run.log_every == 0 || step == s.config.train.steps || step == 1;
}

void log_progress(const TrainSession& s, int64_t step, double lr, const StepResult& r,
                  double step_time, int64_t start_step, Clock::time_point run_start,
                  const FlopsModel& flops) {
  const int64_t total = s.config.train.steps;
  ProgressFields f;
  f.step = step;
  f.total_steps = total;
  f.loss = r.loss;
  f.lr = lr;
  f.grad_norm = r.grad_norm;
  f.tokens_per_s = static_cast<double>(s.tokens_per_step) / step_time;
  f.world_size = s.env.world_size;
  if (flops.peak) f.mfu = f.tokens_per_s / f.world_size * flops.per_token / *flops.peak;
  f.eta_s = seconds_since(run_start) / static_cast<double>(step - start_step) *
            static_cast<double>(total - step);
  f.skipped = r.skipped;
  f.loss_scale = r.loss_scale;
  log::info("{}", format_progress_line(f));
}

// A preemption signal reached some rank: the checkpoint of `step` is written; every rank throws
// the same agreed Preempted (main exits 75 so the scheduler requeues the job).
[[noreturn]] void stop_preempted(TrainSession& s, int64_t step, int signal) {
  const std::string name = signal_name(signal);
  s.metrics.preempted(step, name);
  log::info("{}: checkpoint of step {} written; exiting {} so the job is requeued "
            "(train.resume: auto continues from it)",
            name, step, static_cast<int>(ExitCode::kPreempted));
  Preempted stop(fmt::format("{} at step {}", name, step));
  stop.set_agreed(true);  // every rank got the same decision and stops here
  stop.set_reported(true);
  throw stop;
}

void log_stop(const TrainSession& s, StopReason reason, int64_t step) {
  if (reason == StopReason::kEarlyStopping) {
    const EarlyStopping& es = s.controller->early_stopping();
    log::info("early stopping: {} has not improved for {} evaluation(s) (best {:.4f} at step {}); "
              "stopping after step {} of {}",
              es.ref().key(), s.config.early_stopping.patience, es.state().best,
              es.state().best_step, step, s.config.train.steps);
  } else if (reason == StopReason::kExternal) {
    log::info("stopped after step {} of {} by the caller's decision at this evaluation (a sweep's "
              "early-stopping rung)", step, s.config.train.steps);
  } else {
    log::info("schedule: the last phase ended; stopping after step {} of {}", step,
              s.config.train.steps);
  }
}

// The end of a run: the parameter hash, peak memory (collective), the end record, the summary.
void finish(TrainSession& s, TrainSummary& summary, int64_t start_step, int64_t tokens_seen,
            double run_s, const TaskSummary& task_summary) {
  const std::string param_hash = parameter_hash(*s.params);
  rusage usage{};  // peak resident memory of the largest rank (this process's high-water mark)
  getrusage(RUSAGE_SELF, &usage);
  const double peak_rss_mb = static_cast<double>(s.comm->all_reduce_scalar(
                                 static_cast<int64_t>(usage.ru_maxrss), ReduceOp::kMax)) /
                             1024.0;
  MetricsSink::End end;
  end.step = std::max(start_step, summary.steps);
  end.tokens_seen = tokens_seen;
  end.param_hash = param_hash;
  end.peak_rss_mb = peak_rss_mb;
  end.stopped = summary.stopped;
  if (!s.base_hash.empty()) end.base_model_hash = module_hash(*s.model);  // still the base's
  s.metrics.end(end);
  const int64_t steps_run = std::max(summary.steps - start_step, int64_t{0});
  summary.tokens_per_s =
      run_s > 0 ? static_cast<double>(s.tokens_per_step * steps_run) / run_s : 0.0;
  log::info("done: {} steps in {} | loss {:.4f} -> {:.4f} | {} tok/s | peak RSS {:.0f} MB/rank | "
            "parameters {}{}",
            steps_run, format_duration(run_s), summary.first_loss, summary.last_loss,
            format_rate(summary.tokens_per_s), peak_rss_mb, param_hash,
            summary.skipped_steps > 0 ? fmt::format(" | {} skipped", summary.skipped_steps) : "");
  const std::vector<std::string> table = task_summary.format();
  if (!table.empty()) {
    log::info("per task (training loss per target token; all ranks):");
    for (const auto& line : table) log::info("  {}", line);
  }
}

}  // namespace

// The loop (train/train_session.h builds what it drives). Per step: the controller's plan, this
// rank's micro-batches, one TrainStep, the controller's decision at the step boundary
// (preemption, evaluation, checkpoint, the schedule's end), metrics and progress, a save.
TrainSummary train(const Config& config, const RankEnv& env, const TrainOptions& options) {
  install_preemption_handlers();  // `pft train` did already, before MPI_Init (core/signals.h)
  TrainSession s(config, env);
  if (options.on_eval) s.controller->set_eval_hook(options.on_eval);
  const TrainConfig& tc = s.config.train;
  const TrainSession::StartPoint start = s.resume();
  int64_t tokens_seen = start.tokens_seen;
  TrainSummary summary;

  // The controller starts; a fresh run with tasks is evaluated once before its first step.
  Decision first = s.controller->start(start.step);
  s.report_events();
  if (!start.resumed && s.tasks) {
    first = s.controller->after_eval(0, s.evaluate(0));
    s.report_events();
  }
  // The schedule may end before any step: a last phase whose `until` holds at step 0, or a run
  // preempted right at the end of its schedule.
  int64_t last_step = tc.steps;
  if (first.stop == StopReason::kSchedule) {
    last_step = start.step;
    summary.stopped = stop_reason_name(StopReason::kSchedule);
    log::info("schedule: the last phase ended at step {}; nothing to train", start.step);
    s.metrics.stopped(start.step, summary.stopped);
  }

  // The last start-up safe point, after the step-0 evaluation (Note [preemption before the
  // first step], core/signals.h); from here on the step boundary handles a signal.
  agree(env, "start-up: the last check before the first step", [] {});
  preemption_at_step_boundaries();
  TaskSummary task_summary(s.task_names, start.step, tc.steps);
  const FlopsModel flops = flops_model(s, env);
  // run.trace (core/trace.h): the ranks' clock offsets first (collective), then spans of the
  // steps in [trace_from, trace_to).
  const RunConfig& rc = s.config.run;
  const int64_t trace_offset_us = rc.trace ? trace_clock_offset_us(*s.comm) : 0;
  const Clock::time_point run_start = Clock::now();
  for (int64_t step = start.step; step < last_step; ++step) {
    trace::set_enabled(rc.trace && step >= rc.trace_from && (rc.trace_to == 0 || step < rc.trace_to));
    const Clock::time_point t0 = Clock::now();
    std::optional<trace::Span> step_span;
    step_span.emplace(trace::Lane::kStep, "step", step + 1);
    const StepPlan& plan = s.controller->plan(step);
    const int32_t phase = plan.phase;
    {
      trace::Span data(trace::Lane::kData, "batches", step + 1);
      s.fill_batches(step, plan);
    }
    const double lr = s.lr_schedule->lr(step);
    const StepResult r = s.run_step(step, lr);
    test_delay_point("step", env.world_rank);
    step_span.reset();
    const double step_time = seconds_since(t0);
    if (s.config.dist.check_params_every > 0 && (step + 1) % s.config.dist.check_params_every == 0)
      s.reducer->check_parameters_in_sync(step + 1);

    // The controller's decision at this step boundary: a preemption signal that reached any
    // rank (core/signals.h), a background checkpoint save that failed (every rank stops here,
    // exit 3), evaluation, checkpoint, the schedule's end.
    const Clock::time_point c0 = Clock::now();
    std::optional<trace::Span> control_span;
    control_span.emplace(trace::Lane::kControl, "step boundary", step + 1);
    Decision decision = s.controller->after_step(step + 1, preemption_signal(), step_time,
                                                 s.checkpointer->save_failed());
    control_span.reset();
    const double control_s = seconds_since(c0);
    s.report_events();
    if (decision.checkpoint_failed) s.checkpointer->stop_on_failed_save(step + 1);

    if (step == start.step) summary.first_loss = r.loss;
    if (!r.skipped) task_summary.add(step, r.task_loss_sum, r.task_tokens);
    tokens_seen += s.tokens_per_step;
    summary.last_loss = r.loss;
    summary.steps = step + 1;
    summary.skipped_steps += r.skipped ? 1 : 0;
    MetricsSink::Train record;
    record.step = step + 1;
    record.lr = lr;
    record.result = &r;
    record.tokens = s.tokens_per_step;
    record.step_time_s = step_time;
    record.step_time_max_s = decision.step_time_max;
    record.control_s = control_s;
    record.world_size = env.world_size;
    if (s.tasks) record.phase = phase;
    record.flops_per_token = flops.per_token;
    record.peak_flops = flops.peak;
    s.metrics.train(record);
    if (env.is_root() && trace::enabled()) {  // counter tracks: metrics.jsonl's numbers
      const double per_rank = tokens_per_s_per_rank(record.tokens, record.step_time_s, env.world_size);
      trace::sample("tokens/s per rank", per_rank);
      trace::sample("model TFLOP/s per rank", per_rank * flops.per_token / 1e12);
      if (flops.peak) trace::sample("MFU", per_rank * flops.per_token / *flops.peak);
    }
    if (progress_due(s, step + 1)) {
      log_progress(s, step + 1, lr, r, step_time, start.step, run_start, flops);
      s.metrics.flush();  // TensorBoard's events, at the same interval
    }

    if (decision.evaluate) {
      std::optional<trace::Span> eval_span;
      eval_span.emplace(trace::Lane::kEval, "evaluation", step + 1);
      const MetricTable table = s.evaluate(step + 1);
      eval_span.reset();
      const Decision after = s.controller->after_eval(step + 1, table);
      s.report_events();
      decision.checkpoint = decision.checkpoint || after.checkpoint;
      if (decision.stop == StopReason::kNone) decision.stop = after.stop;
    }
    const bool last = step + 1 == tc.steps || decision.stop != StopReason::kNone;
    s.checkpointer->after_step(
        step + 1, [&] { return s.progress(step + 1, tokens_seen, r.loss); },
        decision.checkpoint || last, last);
    if (decision.stop == StopReason::kPreempted)
      stop_preempted(s, step + 1, static_cast<int>(decision.signal));
    if (decision.stop != StopReason::kNone) {
      summary.stopped = stop_reason_name(decision.stop);
      log_stop(s, decision.stop, step + 1);
      s.metrics.stopped(step + 1, summary.stopped);
      break;
    }
  }
  // A run resumed from its final checkpoint takes no step: it ended at start.step.
  summary.steps = std::max(summary.steps, start.step);
  if (rc.trace) {
    trace::set_enabled(false);
    const std::filesystem::path path = std::filesystem::path(rc.dir) / "trace.json";
    const int64_t events = write_merged_trace(*s.comm, trace_offset_us, env.rank_hosts, path);
    if (env.is_root() && events == 0)
      log::warn("trace: no step of this run was traced (run.trace_from {}, run.trace_to {}; "
                "0-based; this run took steps {} to {} of metrics.jsonl): {} was not written{}",
                rc.trace_from, rc.trace_to, start.step + 1, summary.steps, path.string(),
                std::filesystem::exists(path) ? " (the one there is an earlier run's)" : "");
    else if (env.is_root())
      log::info("trace: {} spans of {} rank(s) -> {} (open it in https://ui.perfetto.dev or "
                "chrome://tracing)",
                events, env.world_size, path.string());
  }
  finish(s, summary, start.step, tokens_seen, seconds_since(run_start), task_summary);
  return summary;
}

}  // namespace pft
