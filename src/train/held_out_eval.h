// One held-out evaluation as a run performs it: train/evaluate.h's evaluate_held_out with the
// options the config gives (eval.max_batches, eval.max_new_tokens, eval.stop, every reference of
// each example, exact match by greedy generation with the data.tokenizer's eos, the run's
// precision), over train.micro_batch_size rows. TrainSession::evaluate (at eval.every_steps and
// the end of `pft train`) and `pft eval` (train/eval_run.h) both call it, so a checkpoint scored
// by `pft eval` gets exactly the numbers its run logged.
//
// Collective over `comm` (evaluate_held_out's one all-reduce): every rank calls run() together.
// The constructor is local (it loads the tokenizer and reads the task files for their other
// references) and throws InputError as they do.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/rank_env.h"
#include "data/example.h"
#include "model/batch.h"
#include "train/evaluate.h"
#include "train/precision.h"

namespace pft {

class Communicator;
class EvalReferences;
class TaskTokenSource;
class Tokenizer;
class TransformerImpl;

class HeldOutEvaluator {
 public:
  // `tasks` must outlive this; `split` is the one `tasks` was built to hold out (its references
  // are read for exact match).
  HeldOutEvaluator(const Config& config, TaskTokenSource& tasks, Split split = Split::kValidation);
  ~HeldOutEvaluator();
  HeldOutEvaluator(const HeldOutEvaluator&) = delete;
  HeldOutEvaluator& operator=(const HeldOutEvaluator&) = delete;

  // Scores `model` (in eval mode: the caller switches it) on every task's held-out split.
  // `max_batches` < 0: eval.max_batches. Collective.
  std::vector<TaskEval> run(TransformerImpl& model, const RankEnv& env, Communicator* comm,
                            Precision precision, int64_t max_batches = -1);

 private:
  const Config& config_;
  TaskTokenSource& tasks_;
  Batch batch_;  // a scratch micro-batch
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<EvalReferences> references_;  // every reference of each example
};

// Rank 0 (no-op elsewhere): the held-out table and the per-template table at `step`
// (format_eval_table, format_template_table), line by line to the log.
void log_held_out_tables(const RankEnv& env, const std::vector<TaskEval>& evals, int64_t step);

}  // namespace pft
