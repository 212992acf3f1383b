// One held-out evaluation as a run performs it (contract: train/held_out_eval.h).
#include "train/held_out_eval.h"

#include "core/logging.h"
#include "core/test_hooks.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "train/eval_references.h"
#include "train/task_source.h"

namespace pft {

HeldOutEvaluator::HeldOutEvaluator(const Config& config, TaskTokenSource& tasks, Split split)
    : config_(config),
      tasks_(tasks),
      batch_(tasks.make_batch()),
      tokenizer_(load_tokenizer(config.data.tokenizer)),
      references_(std::make_unique<EvalReferences>(config, *tokenizer_, split)) {}

HeldOutEvaluator::~HeldOutEvaluator() = default;

std::vector<TaskEval> HeldOutEvaluator::run(TransformerImpl& model, const RankEnv& env,
                                            Communicator* comm, Precision precision,
                                            int64_t max_batches) {
  test_delay_point("eval", env.world_rank);
  AutocastScope autocast(precision, at::Device(env.device));
  EvalOptions o;
  o.max_batches = max_batches >= 0 ? max_batches : config_.eval.max_batches;
  o.rank = env.world_rank;
  o.world_size = env.world_size;
  o.comm = comm;
  o.model = &model;
  o.eos_id = tokenizer_->eos_id();
  o.max_new_tokens = config_.eval.max_new_tokens;
  o.stop = config_.eval.stop;
  o.tokenizer = tokenizer_.get();
  o.references = references_.get();
  const auto forward = [&model](const Batch& b) {
    return model.forward(b.input_ids, b.position_ids, b.doc_ids, b.task_ids);
  };
  return evaluate_held_out(tasks_, forward, batch_, o);
}

void log_held_out_tables(const RankEnv& env, const std::vector<TaskEval>& evals, int64_t step) {
  if (!env.is_root()) return;
  for (const std::string& line : format_eval_table(evals, step)) log::info("{}", line);
  for (const std::string& line : format_template_table(evals, step)) log::info("{}", line);
}

}  // namespace pft
