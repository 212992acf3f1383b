// The training loop behind `pft train`: build the model, flat parameters, optimizer and schedule
// from the config; run train.steps optimizer steps over the data; report progress and metrics.
//
// Per step (train/train_step.h has the inside of one step):
//   1. fill this rank's accumulation micro-batches (global_batch / (micro_batch * world)) from
//      the data source (data.source: synthetic, or tasks: train/task_source.h);
//   2. lr from the schedule; one TrainStep (forward/backward, reduce, clip, AdamW); every
//      dist.check_params_every steps the desync detector compares parameters across ranks;
//   3. rank 0: a progress line every run.log_every steps (and the last) and a metrics.jsonl line
//      every step:
//        {"kind":"train","step":..,"loss":..,"lr":..,"grad_norm":..,"tokens":..,
//         "target_tokens":..,"tokens_per_s":..,"step_time_s":..,"comm_time_s":..,
//         "world_size":..,"task_loss":[..],"task_tokens":[..]}
//                              (+ "skipped":true, "loss_scale" under fp16)
//      comm_time_s: seconds waiting for gradient all-reduces after the last backward (the
//      communication not hidden behind it; comm/reducer.h).
//      `tokens` counts input tokens of the step over all ranks (global_batch * seq_len),
//      task_loss[k] is the mean loss of task k's target tokens (null when it had none).
//   4. checkpoints (train/checkpointing.h, docs/checkpoint-format.md): train.resume restores the
//      run at start-up ({"kind":"resume","step":..}); a save every checkpoint.every_steps steps
//      and after the last ({"kind":"checkpoint",..,"stall_s":..}); at the end
//      {"kind":"end","step":..,"tokens_seen":..,"param_hash":"xxh3-64:..","peak_rss_mb":..}
//      (+ "base_model_hash" of the frozen base for PEFT methods: equal to the start line's).
//   5. held-out evaluation (train/evaluate.h) at step 0 of a fresh run, every eval.every_steps
//      and at the end: per task and template {"kind":"eval","step":..,"task":..,"template":<id>,
//      "loss":..,"perplexity":..,"tokens":..,"documents":..}, per task the same with
//      "template":"all" and "worst_template_loss", and a table printed by rank 0.
//
// train.method other than full (model/adapters.h, docs/peft.md): the base is frozen after
// model.from_pretrained loads it, the adapters are the only trainable (flat) parameters, prompt /
// prefix tables are reduced row-sparse over the step's tasks, and the "start" line records
// "method" and "base_model_hash".
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
