// The prompt-task token source of `pft train` (data.source: tasks): prepares the tasks' token
// stores, opens their train splits, and fills Batch tensors from the data loader
// (data/loader.h; docs/data-pipeline.md).
//
// Start-up (collective over `comm` and env's world, every rank in the same order):
//   1. world rank 0 prepares the stores (data/store_prepare.h): reuses valid ones, builds missing
//      ones on all its cores while the other ranks wait;
//   2. local rank 0 of every other node does the same (on a shared filesystem it finds them
//      cached; on node-local cache directories it builds its own identical copies);
//   3. rank 0 broadcasts the stores' paths and content hashes; every rank opens them, checking
//      the hash, so no rank reads a store built from other inputs.
// A failure on any rank (bad task file, data, tokenizer) stops every rank with one message
// (core/agree.h). Every wait has the dist.timeout_s deadline: a builder that stalls ends the job,
// and so does one that takes longer than the deadline (prepare large stores beforehand with
// `pft data prepare`, or raise dist.timeout_s).
//
// Per step: plan_step(s) plans the step on every rank (no communication, data/loader.h), then
// fill(m, batch) writes this rank's micro-batch m into `batch`.
//
// Prompt tuning (train.method prompt_tuning*): every document, training and validation, starts
// with the n virtual tokens of its task's block, ids V + block * n + j (model/adapters.h); a
// document that no longer fits data.seq_len loses the head of its prompt (its answer stays).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/rank_env.h"
#include "data/example.h"
#include "data/loader.h"
#include "data/task.h"
#include "model/batch.h"

namespace pft {

class Communicator;
class TokenStore;
class DocumentSource;

class TaskTokenSource {
 public:
  // Collective (see above). Throws InputError / RuntimeFailure on every rank. `held_out`: the
  // split validation() returns (`pft eval --split test` evaluates the test split).
  TaskTokenSource(const Config& config, const RankEnv& env, Communicator& comm, at::Device device,
                  Split held_out = Split::kValidation);
  ~TaskTokenSource();
  TaskTokenSource(const TaskTokenSource&) = delete;
  TaskTokenSource& operator=(const TaskTokenSource&) = delete;

  int64_t num_tasks() const { return loader_->num_tasks(); }
  const std::vector<std::string>& task_names() const { return names_; }
  TaskLoader& loader() { return *loader_; }

  // A micro-batch of (micro_batch_size, seq_len) tensors on the device, to be filled again and
  // again.
  Batch make_batch() const;
  // Plans step `step`: the next one, else the loader seeks there (replaying plans).
  void plan_step(int64_t step);
  // Plans step `step` (the loader's next) with the controller's task of every slot.
  void plan_step(int64_t step, const std::vector<int32_t>& slot_tasks);
  // The documents of every slot of the planned step (the controller's plan log).
  std::vector<std::vector<DocRef>> slot_documents();
  // Writes this rank's micro-batch `micro` of the planned step into `batch` (from make_batch);
  // returns its target tokens (counted on the host).
  int64_t fill(int64_t micro, Batch& batch);

  // The tasks of the planned step's micro-batches over ALL ranks, ascending (every rank plans
  // every slot, so every rank knows them without communication).
  std::vector<int64_t> tasks_in_step() const;
  // Task k's held-out split as documents (with the virtual tokens of prompt tuning): the
  // validation split, or the one given to the constructor; null when the task has none.
  DocumentSource* validation(size_t task);
  // Task k's evaluation metric (its task file's `metric`).
  Metric metric(size_t task) const { return metrics_.at(task); }
  // The id of template `template_id` of task k (its task file's `id`), with a leading `*` when it
  // is held out of training.
  std::string template_label(size_t task, int32_t template_id) const;
  // Writes token sequences (tokens, loss mask), one per row from row 0, as documents of task
  // `task` into `batch` (at most micro_batch_size; longer ones keep their end); returns the
  // target tokens.
  int64_t fill_sequences(size_t task, const std::vector<std::vector<int32_t>>& tokens,
                         const std::vector<std::vector<uint8_t>>& masks, Batch& batch);
  // Writes documents `docs` of `split` (task `task`), one per row from row 0, into `batch` (at
  // most micro_batch_size of them; longer ones are cut to seq_len); returns its target tokens.
  int64_t fill_documents(size_t task, DocumentSource& split, const std::vector<int64_t>& docs,
                         Batch& batch);

 private:
  at::Device device_;
  int64_t rows_, seq_len_;
  std::vector<std::string> names_;
  std::vector<Metric> metrics_;
  std::vector<std::vector<std::string>> template_labels_;
  std::vector<std::unique_ptr<TokenStore>> stores_;
  std::vector<std::unique_ptr<DocumentSource>> wrappers_;  // prompt tuning: soft-prompt splits
  std::vector<DocumentSource*> validation_;                 // per task, or null
  std::unique_ptr<TaskLoader> loader_;
  int64_t copy_packed(Batch& batch);  // packed_ -> batch (through host_ on devices)

  PackedRows packed_;
  int32_t pad_id_ = 0;
  int64_t vocab_size_ = 0;  // ids from here on are prompt tuning's virtual tokens
  std::vector<int32_t> eval_tokens_;
  std::vector<uint8_t> eval_mask_;
  Batch host_;  // CPU staging when the device is not the CPU
};

}  // namespace pft
