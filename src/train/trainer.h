// The training loop behind `pft train`. train/train_session.h builds everything a run needs
// (model, adapters, flat parameters, communicator and reducer, optimizer, controller,
// checkpointer); train() drives it:
//
// Per step (train/train_step.h has the inside of one step):
//   1. the controller's plan of the step (control/controller.h): which task fills each
//      micro-batch slot; this rank's accumulation micro-batches (global_batch / (micro_batch *
//      world)) from the data source (data.source: synthetic, or tasks: train/task_source.h);
//   2. lr from the schedule; one TrainStep (forward/backward, reduce, clip, AdamW); every
//      dist.check_params_every steps the desync detector compares parameters across ranks;
//   3. the controller's decision at the step boundary: preemption (checkpoint, exit 75),
//      held-out evaluation (train/evaluate.h), checkpoint, the schedule's or early stopping's end;
//   4. a `train` record in metrics.jsonl (train/metrics_sink.h; docs/metrics.md lists every record
//      and field) and, every run.log_every steps, a progress line with tokens/s and ETA;
//   5. checkpoints (train/checkpointing.h, docs/checkpoint-format.md): train.resume restores the
//      run at start-up; a save every checkpoint.every_steps steps, at the controller's request
//      and after the last step.
// At the end: the parameter hash, peak memory, the `end` record and a per-task summary.
//
// train.method other than full (model/adapters.h, docs/peft.md): the base is frozen after
// model.from_pretrained loads it, the adapters are the only trainable (flat) parameters, prompt /
// prefix tables are reduced row-sparse over the step's tasks.
//
// Header without torch on purpose: cli/ only needs this entry point.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "config/config.h"
#include "core/rank_env.h"

namespace pft {

struct TrainSummary {
  int64_t steps = 0;           // the steps done at the end (resumed: at least the resumed step)
  double first_loss = 0.0;     // loss of step 1
  double last_loss = 0.0;      // loss of the last step
  double tokens_per_s = 0.0;   // input tokens / s over the whole run, all ranks
  int64_t skipped_steps = 0;
  std::string stopped = "";    // why the run ended before train.steps ("early_stopping", "schedule")
};

// What a caller adds to a run (the defaults: a plain `pft train`).
struct TrainOptions {
  // Rank 0: called after every held-out evaluation with the steps done and the metric table
  // (control/schedule.h: MetricTable); true stops the run there like its last step (a final
  // checkpoint, `stopped` reason `external`), except at step 0 and train.steps. The controller's
  // eval hook (control/controller.h: Controller::set_eval_hook); an in-allocation sweep's ASHA
  // rungs (sweep/mpi_executor.h).
  std::function<bool(int64_t steps_done, const std::map<std::string, double>& table)> on_eval;
};

// Collective over env.world: every rank calls it with the same config. env may be a group of the
// job's ranks (core/rank_env.h: split_rank_env): the run then involves those ranks only. Start-up problems (a
// config the trainer cannot run, an unwritable run.dir) throw InputError on every rank (exit 2);
// MPI failures throw RuntimeFailure.
TrainSummary train(const Config& config, const RankEnv& env, const TrainOptions& options = {});

// Checks that need the trainer's view of the config (features not built yet, a vocabulary too
// small for the tokenizer, precision vs device). Throws InputError naming the key. Not
// collective; train() runs it on every rank under agree().
void validate_for_training(const Config& config, const RankEnv& env);

}  // namespace pft
