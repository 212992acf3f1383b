// The training data loader: for step s and this rank, the packed micro-batches, from the tasks'
// prepared stores (data/token_store.h) through the sampler (data/sampler.h) and the packer
// (data/packer.h).
//
// One step is G = train.global_batch_size rows in G / B micro-batch slots of B =
// train.micro_batch_size rows, numbered 0 .. G/B - 1 over all ranks. Rank r owns the contiguous
// slots [r*A, (r+1)*A), A = G / (B * W), and its micro-batch m is slot r*A + m. Per step:
//
//   1. task of slot j = TaskMixture(seed, mixture weights).task_of(s, j)      (same everywhere;
//      the weights come from the examples per task and data.mixing: mixture_weights()); in
//      `pft train` the controller decides them instead and passes them in (plan_next_step(tasks),
//      control/controller.h)
//   2. for j = 0 .. G/B - 1 in order: slot j packs a prefix of its task's sample stream, from
//      that task's cursor, into B rows (plan_rows: lengths only, no token I/O); the cursor
//      advances by the prefix taken.
//   3. fill(m): this rank reads the documents of its slot r*A + m and writes the rows.
//
// Every rank plans every slot (step 2 touches only in-memory lengths), so every rank knows all
// cursors, and the plan of a step depends on (seed, step, cursors, G/B, B, seq_len, the data)
// but never on the world size W. Hence:
//   - the slots of a step over all ranks are the same set for any W: ranks take disjoint parts
//     of ONE global stream;
//   - LoaderState {step, per-task cursor} is the whole state: restoring it on any W continues the
//     exact global order (no replay, no skip, no duplicate). Changing B or G on resume still
//     continues every task's stream where it stopped; only the packing differs.
// Not thread-safe. Not collective (no communication at all).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/document_source.h"
#include "data/packer.h"
#include "data/sampler.h"

namespace pft {

struct LoaderOptions {
  uint64_t seed = 0;              // run.seed
  int64_t seq_len = 2;            // data.seq_len (T)
  int64_t micro_batch_size = 1;   // B
  int64_t global_batch_size = 1;  // G, a multiple of B * world_size
  int world_size = 1;
  int rank = 0;
  int32_t pad_id = 0;
  MixingOptions mixing;           // data.mixing*: how tasks are weighed (data/sampler.h)
};

struct LoaderTask {
  std::string name;
  DocumentSource* source = nullptr;  // the train split; not owned, outlives the loader
};

// Where the loader stands: save it in checkpoints, restore() it to resume.
struct LoaderState {
  int64_t step = 0;                  // next step to plan
  std::vector<int64_t> next_sample;  // per task: global index of its next sample
  bool operator==(const LoaderState&) const = default;
};

// One slot of a planned step.
struct SlotPlan {
  int32_t task = 0;
  int64_t first_sample = 0;  // the task's cursor before this slot
  PackPlan pack;
};

class TaskLoader {
 public:
  // Throws InputError for a task without training examples; PFT_ASSERTs the batch arithmetic
  // (config validation checks it first).
  TaskLoader(std::vector<LoaderTask> tasks, const LoaderOptions& options);

  int32_t num_tasks() const { return static_cast<int32_t>(tasks_.size()); }
  int64_t slots_per_step() const { return slots_; }
  int64_t micro_batches_per_rank() const { return per_rank_; }
  const LoaderOptions& options() const { return options_; }

  // Plans step state().step (steps 1-2 above) and advances the state past it.
  void plan_next_step();
  // The same with the task of every slot given (the controller's plan, control/controller.h)
  // instead of drawn from the mixture: slot_tasks.size() == slots_per_step().
  void plan_next_step(const std::vector<int32_t>& slot_tasks);
  // The step planned last (-1 before any), and its slots.
  int64_t planned_step() const { return planned_step_; }
  const std::vector<SlotPlan>& plan() const { return plan_; }
  // Fills `out` with this rank's micro-batch `micro` (0 <= micro < micro_batches_per_rank()) of
  // the planned step. Reads tokens from the stores.
  void fill(int64_t micro, PackedRows& out);
  // The documents of global slot `slot` of the planned step, in stream order (no token I/O;
  // tests and logs).
  std::vector<DocRef> slot_documents(int64_t slot);

  const LoaderState& state() const { return state_; }
  // Resume: the next plan_next_step() plans state.step with these cursors.
  void restore(const LoaderState& state);
  // Moves to `step` by planning every step before it from step 0 (lengths only). For resuming
  // without a saved state.
  void seek(int64_t step);

  // Padding over all slots planned so far (all ranks): pad positions / row positions.
  double pad_fraction() const {
    return planned_positions_ > 0 ? 1.0 - static_cast<double>(used_positions_) /
                                              static_cast<double>(planned_positions_)
                                  : 0.0;
  }
  // Training examples per task.
  const std::vector<int64_t>& task_examples() const { return examples_; }
  // The mixture's weights (data/sampler.h: mixture_weights).
  const std::vector<int64_t>& mixture_weights() const { return weights_; }
  // Each task's share of the micro-batches: the weights normalised to sum 1.
  std::vector<double> mixture_shares() const;

 private:
  int64_t length_of(int32_t task, int64_t sample);
  static std::vector<int64_t> count_examples(const std::vector<LoaderTask>& tasks);

  std::vector<LoaderTask> tasks_;
  LoaderOptions options_;
  int64_t slots_ = 0, per_rank_ = 0;
  std::vector<int64_t> examples_;
  std::vector<int64_t> weights_;
  std::vector<TaskSampler> samplers_;
  TaskMixture mixture_;
  LoaderState state_;
  int64_t planned_step_ = -1;
  std::vector<SlotPlan> plan_;
  int64_t planned_positions_ = 0, used_positions_ = 0;
  std::vector<int32_t> tok_buf_;
  std::vector<uint8_t> mask_buf_;
};

}  // namespace pft
