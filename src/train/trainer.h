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

#include "config/config.h"
#include "core/rank_env.h"

namespace pft {

struct TrainSummary {
  int64_t steps = 0;
  double first_loss = 0.0;     // loss of step 1
  double last_loss = 0.0;      // loss of the last step
  double tokens_per_s = 0.0;   // input tokens / s over the whole run, all ranks
  int64_t skipped_steps = 0;
  std::string stopped = "";    // why the run ended before train.steps ("early_stopping", "schedule")
};

// Collective over env.world: every rank calls it with the same config. Start-up problems (a
// config the trainer cannot run, an unwritable run.dir) throw InputError on every rank (exit 2);
// MPI failures throw RuntimeFailure.
TrainSummary train(const Config& config, const RankEnv& env);

// Checks that need the trainer's view of the config (features not built yet, a vocabulary too
// small for the tokenizer, precision vs device). Throws InputError naming the key. Not
// collective; train() runs it on every rank under agree().
void validate_for_training(const Config& config, const RankEnv& env);

}  // namespace pft
