// Held-out evaluation of `pft train`: the loss (and perplexity) of every task's validation split,
// per template and per task, at eval.every_steps and at the end of the run; and exact match:
// the greedy continuation of each document's prompt (batched, KV cache: train/generate.h),
// compared token for token with its answer (the loss-masked part, without the final eos) and
// with each other reference of the example (EvalOptions::references): equal to any counts. A
// document whose mask has no prompt or no answer (data.train_on_prompt) is not scored; nor is
// one too long to generate its answer within model.max_seq_len.
//
// Classification accuracy (tasks with `metric: classification`): each document's prompt followed
// by each candidate answer is scored by its summed log-likelihood (one forward per
// micro-batch of candidate rows); the most likely candidate is the prediction. The candidates
// are the distinct answers (answer tokens, eos included) of the template's validation documents
// -- a classification task's labels as they appear -- so every rank scores against the same set.
// With eval.stop, exact match generation also stops at those strings and compares the trimmed
// text with the answer's.
//
// Sharding: a task's validation documents are numbered example-major (data/document_source.h);
// for each template slot, the documents of that slot are dealt round-robin over ranks (document
// i of the slot to rank i % W), so every document is evaluated exactly once whatever W, and a
// rank gets at most one more than another. Each rank runs its documents one per row,
// micro_batch_size rows per forward, without gradients, each forward cut to the rows holding a
// document and to the longest one (Note [trimmed evaluation batches] in evaluate.cpp); exact
// match generates all of a template's prompts of the rank in one Generator::generate_all
// (length-sorted batches); the per-(task, template) sums are then
// all-reduced once. eval.max_batches > 0 caps each template at its first
// max_batches * micro_batch_size examples, whatever W: the same documents are evaluated on any
// number of ranks (max_batches forward passes in all, about max_batches / W per rank).
//
// Collective over the communicator (one all-reduce per evaluation); every rank calls it at the
// same steps.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "control/schedule.h"
#include "model/batch.h"
#include "train/generate.h"

namespace pft {

class Communicator;
class EvalReferences;
class Tokenizer;
class TaskTokenSource;
class TransformerImpl;

struct TemplateLoss {
  int32_t template_id = 0;
  std::string label;  // its id in the task file, `*` first when held out of training
  double loss_sum = 0.0;  // over every target token of its documents, all ranks
  double tokens = 0.0;
  int64_t documents = 0;
  int64_t scored = 0, exact = 0;  // exact match: documents scored, answered exactly
  int64_t classified = 0, correct = 0;  // classification: documents scored, label right
  double loss() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
  double exact_match() const { return scored > 0 ? static_cast<double>(exact) / scored : 0.0; }
  double accuracy() const {
    return classified > 0 ? static_cast<double>(correct) / classified : 0.0;
  }
};

struct TaskEval {
  std::string task;
  std::vector<TemplateLoss> templates;  // the validation split's templates, in slot order
  double loss_sum = 0.0, tokens = 0.0;  // all templates
  int64_t documents = 0;
  int64_t scored = 0, exact = 0;
  int64_t classified = 0, correct = 0;
  double loss() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
  double exact_match() const { return scored > 0 ? static_cast<double>(exact) / scored : 0.0; }
  double accuracy() const {
    return classified > 0 ? static_cast<double>(correct) / classified : 0.0;
  }
  double worst_template_exact_match() const;  // the lowest per-template exact match
  double worst_template_accuracy() const;     // the lowest per-template accuracy
  double worst_template_loss() const;   // the highest per-template loss
};

struct EvalOptions {
  int64_t max_batches = 0;  // eval.max_batches: examples per template <= max_batches * rows
  int rank = 0, world_size = 1;
  Communicator* comm = nullptr;  // null = one process
  // Exact match: the model to generate with (null = loss only) and the tokenizer's eos id.
  TransformerImpl* model = nullptr;
  int32_t eos_id = -1;
  int64_t max_new_tokens = 0;     // eval.max_new_tokens (0: the longest answer + 1)
  std::vector<std::string> stop;  // eval.stop
  const Tokenizer* tokenizer = nullptr;  // needed with `stop`
  // The examples' other references (null: the document's own answer is the only one).
  const EvalReferences* references = nullptr;
};

using EvalForward = std::function<at::Tensor(const Batch&)>;

// Exact match of one generation against its answers (each: answer tokens without the final eos):
// true when it equals any of them, token for token; or, with `text` (eval.stop is set), when the
// generated text (cut before a stop string) equals text->decode(answer), both trimmed of
// surrounding whitespace.
bool answer_matches(const Generation& generation, const std::vector<std::vector<int32_t>>& answers,
                    const Tokenizer* text);

// Every task with a validation split (tasks without one are left out). `batch` is a scratch
// micro-batch from tasks.make_batch(). Collective (see above).
std::vector<TaskEval> evaluate_held_out(TaskTokenSource& tasks, const EvalForward& forward,
                                        Batch& batch, const EvalOptions& options);

// One line per task: each template's exact match (accuracy for classification tasks, loss for
// loss-only tasks), held-out templates marked `*` -- prompt robustness at a glance.
std::vector<std::string> format_template_table(const std::vector<TaskEval>& evals, int64_t step);

// The held-out results as the controller reads them (control/schedule.h: MetricTable): per task
// loss, perplexity, worst_template_loss, and exact_match / accuracy (with their worst template)
// where scored; each also as the mean over the tasks that have it.
MetricTable metric_table(const std::vector<TaskEval>& evals);

// The table rank 0 prints: one line per task (loss, perplexity, mean and worst template), then
// the mean over tasks.
std::vector<std::string> format_eval_table(const std::vector<TaskEval>& evals, int64_t step);

}  // namespace pft
