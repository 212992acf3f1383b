// TrainSession: everything one `pft train` run builds, built once, in the order the run needs
// it (the phases llm.c's train_gpt2 names one by one):
//   1. config     model.from_pretrained resolves model.*, validate_for_training (every rank)
//   2. run dir    rank 0: run.dir locked for the run (a second run there exits 2, core/run_dir.h),
//                 config.resolved.yaml, metrics.jsonl (MetricsSink)
//   3. comm       the communicator (dist.backend): every collective below has its deadline
//   4. data       data.source tasks: the prompt-task loader (train/task_source.h); else synthetic
//   5. model      the same init on every rank, then model.from_pretrained's weights
//   6. adapters   train.method other than full: frozen base, adapters (model/adapters.h),
//                 peft.init_from, peft.freeze_loaded hooks
//   7. params     the trainable tensors as flat buffers (model/flat_params.h)
//   8. reducer    the bucketed gradient reducer, with the task tables reduced row-sparse;
//                 rank 0's parameters broadcast
//   9. optimizer  AdamW and the learning-rate schedule; the micro-batches; the TrainStep
//  10. control    the rank-0 controller (control/controller.h)
//  11. ckpt       the Checkpointer (train/checkpointing.h); resume() restores a run
// The loop (train/trainer.cpp) then drives it: fill_batches, run_step, the controller's
// decision, evaluate, save. Members are public on purpose: the session is the loop's state.
//
// Collective: the constructor, resume(), run_step(), evaluate() and checkpoint() must be called by
// every rank, in the same order. Start-up failures throw InputError / RuntimeFailure on every
// rank (agree()).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "control/controller.h"
#include "core/rank_env.h"
#include "core/run_dir.h"
#include "model/adapters.h"
#include "model/batch.h"
#include "model/flat_params.h"
#include "model/transformer.h"
#include "train/checkpointing.h"
#include "train/metrics_sink.h"
#include "train/precision.h"
#include "train/train_step.h"

namespace pft {

class Communicator;
class HeldOutEvaluator;
class Reducer;
class AdamW;
class LrSchedule;
class SyntheticTokenSource;
class TaskTokenSource;
class Tokenizer;

class TrainSession {
 public:
  // Steps 1-11 above. Collective.
  TrainSession(const Config& config, const RankEnv& env);
  ~TrainSession();
  TrainSession(const TrainSession&) = delete;
  TrainSession& operator=(const TrainSession&) = delete;

  // Step 11: train.resume restores parameters, optimizer, generators, the loader, the metrics
  // history and the controller's state; writes the start (and resume) records. Returns where the
  // run starts (step 0 for a fresh run). Collective.
  struct StartPoint {
    int64_t step = 0;         // optimizer steps already taken
    int64_t tokens_seen = 0;  // input tokens over all ranks so far
    bool resumed = false;
  };
  StartPoint resume();

  // This rank's micro-batches of `step` (0-based), as the controller planned them.
  void fill_batches(int64_t step, const StepPlan& plan);
  // One optimizer step over the filled micro-batches. A failed collective names the step and the
  // tasks in flight. Collective.
  StepResult run_step(int64_t step, double lr);
  // Held-out evaluation (train/held_out_eval.h, the code `pft eval` runs) after `step` steps:
  // eval records, the tables on rank 0; the metric table the controller decides on. Collective;
  // empty without tasks.
  MetricTable evaluate(int64_t step);
  // The controller's schedule events: logged and written (rank 0; no-op elsewhere).
  void report_events();
  // What a checkpoint after `step` steps records besides parameters and optimizer; call it only
  // for a save (rank 0's plan log hands over its window: Controller::checkpoint_state).
  TrainProgress progress(int64_t step, int64_t tokens_seen, double loss);

  Config config;  // resolved: model.from_pretrained fills model.* (Note [pretrained architecture])
  const RankEnv& env;
  const at::Device device;
  const Precision precision;
  const int64_t accumulation;      // micro-batches per rank per step
  const int64_t tokens_per_step;   // global_batch_size * seq_len: input tokens over all ranks

  std::optional<RunDir> run_dir;   // rank 0
  MetricsSink metrics;             // rank 0 (disabled elsewhere)

  std::unique_ptr<Communicator> comm;                // declared before its users (destroyed after)
  std::unique_ptr<TaskTokenSource> tasks;            // data.source: tasks
  std::unique_ptr<SyntheticTokenSource> synthetic;   // data.source: synthetic
  std::vector<std::string> task_names;               // tasks: data.tasks order

  Transformer model{nullptr};
  AdapterSpec adapter_spec;
  std::string base_hash;                       // PEFT: module_hash of the frozen base
  std::map<std::string, int64_t> block_rows;   // task tables: name -> rows per task block

  std::unique_ptr<FlatParameters> params;
  std::vector<std::pair<size_t, int64_t>> row_sparse;  // (slot, elements per task block)
  std::unique_ptr<Reducer> reducer;
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<LrSchedule> lr_schedule;
  std::vector<Batch> batches;                  // (accumulation) this rank's micro-batches
  std::vector<int64_t> batch_tokens;           // (accumulation) their target tokens
  std::unique_ptr<TrainStep> train_step;
  std::unique_ptr<Controller> controller;
  std::unique_ptr<Checkpointer> checkpointer;

 private:
  void attach_adapters();
  void log_setup() const;

  std::unique_ptr<HeldOutEvaluator> held_out_;  // data.source: tasks (train/held_out_eval.h)
};

}  // namespace pft
