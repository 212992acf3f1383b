// One `pft eval` run: scores a model on the config's tasks (data.source: tasks), per task and per
// template, held-out templates included, with the code of in-training evaluation
// (train/held_out_eval.h), on 1..N ranks; prints the held-out and per-template tables as `pft
// train` prints them and, with `output`, writes JSON lines (docs/metrics.md: `eval` records and
// one `eval_summary`). cli/cmd_eval.cpp parses the flags into an EvalRequest and hands it here;
// docs/eval.md is the user's page.
//
// The model (what is scored):
//   model.from_pretrained       a Hugging Face directory (or whatever load_pretrained_weights
//                               reads); `pft eval --model M` sets it. Zero-shot / few-shot.
//   checkpoint, full run        a checkpoint of train.method full: its /model tensors replace the
//                               weights; model.* (after from_pretrained) must match its
//                               /meta/architecture (InputError naming each differing key).
//   checkpoint, PEFT run        an adapter checkpoint (train/adapter_checkpoint.h) on the base the
//                               config builds (model.from_pretrained, else the run.seed init): its
//                               hash must be the one the adapters were trained on. train.method
//                               and peft.* come from the checkpoint's own config, so prompt
//                               tuning's virtual tokens go in front of every document as training
//                               put them; LoRA stays unmerged, as in training. A table with one
//                               block per task needs data.tasks to list the run's tasks in order.
//   `checkpoint` may name a file, a run directory or its checkpoints/ directory (the checkpoint
//   `latest` names, else the newest complete one). `adapter` is the same as a checkpoint that must
//   be a PEFT one (the flag `pft generate` has).
// Without any of these, the run is refused (InputError) unless `untrained` asks for the random
// init of run.seed (a floor to compare with).
//
// The split: validation (the split training evaluates) or test; a task file without that split
// is refused naming the file. Documents are dealt over ranks as in training (train/evaluate.h),
// so any number of ranks scores the same documents; micro_batch_size rows per forward,
// eval.max_batches (or `max_batches` >= 0) caps each template, train.precision applies.
// The tables and the records carry `step`: the checkpoint's step (0 without one), as its run
// labelled them.
//
// Collective over the job: every rank calls run_eval with the same request and config; a bad
// request, config, checkpoint or model throws InputError on every rank together (core/agree.h).
#pragma once

#include <cstdint>
#include <string>

#include "config/config.h"
#include "core/rank_env.h"

namespace pft {

struct EvalRequest {
  std::string checkpoint;  // a checkpoint file, a run directory or its checkpoints/ directory
  std::string adapter;     // a PEFT checkpoint file (the same as checkpoint, PEFT required)
  std::string split = "validation";  // validation | test
  int64_t max_batches = -1;          // < 0: eval.max_batches
  std::string output;                // JSON lines file (replaced); empty: none
  bool untrained = false;            // score the random init when nothing else is given
};

// Runs the whole request (see above) on every rank; returns the process exit code (0).
int run_eval(const Config& config, const RankEnv& env, const EvalRequest& request);

}  // namespace pft
