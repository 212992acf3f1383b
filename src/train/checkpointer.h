// The trainer's checkpointing in one object: resume at start-up, a save when the controller
// decides (checkpoint.every_steps, preemption, the last step), a metrics record for each save
// (train/metrics_sink.h, whose recent history each checkpoint saves); and the retention policy
// of checkpoint.*.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/run_checkpoints.h"
#include "ckpt/saver.h"
#include "config/config.h"
#include "core/rank_env.h"
#include "core/run_dir.h"
#include "model/flat_params.h"
#include "train/checkpoint_state.h"
#include "train/metrics_sink.h"
#include "train/optimizer.h"
#include "train/precision.h"

namespace pft {

class Communicator;

// Every method is collective over env's world and `comm` (call them on every rank, at the same
// steps; every wait has the dist.timeout_s deadline, so a rank that stalls in a save ends the
// job); rank 0 owns the saver and writes.
class Checkpointer {
 public:
  // `scaler`: the fp16 loss scaler (nullptr otherwise); `metrics`: where finished saves are
  // reported and whose history() each checkpoint records. All references must outlive this.
  Checkpointer(const Config& config, const RankEnv& env, Communicator& comm,
               FlatParameters& params, AdamW& optimizer, LossScaler* scaler,
               MetricsSink& metrics);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // train.resume: restores the live state (and the metrics history) from the chosen checkpoint
  // and returns its progress (with `loader` set for the tasks source: restore the loader from it), or nullopt to start at
  // step 0. Logs the file, the step and every allowed config change. Throws InputError on every
  // rank when the checkpoint is refused.
  std::optional<TrainProgress> resume(const std::vector<std::string>& task_names);

  // After each optimizer step: saves when `save` (the controller's decision) and this step is
  // not saved yet; reports saves that finished to the MetricsSink. The `last`
  // call also waits for the save in flight. A failed save throws RuntimeFailure on every rank.
  // While rank 0 writes a synchronous save (or finishes an async one at the last step) the other
  // ranks wait for it with the dist.timeout_s deadline: the deadline must exceed that write.
  // `progress` is called only when a save is due: what it gathers (the loader's state, the
  // controller's plan log, which grows with every step) is not copied at the other steps.
  void after_step(int64_t step, const std::function<TrainProgress()>& progress, bool save,
                  bool last);

  // Not collective, never blocks: true on rank 0 once a background save has failed (full disk,
  // I/O error). The trainer passes it to the controller's per-step all-reduce
  // (Controller::after_step), so every rank learns of it at the next step boundary.
  bool save_failed() const;
  // Collective, after the controller reported a failed save at step `step`: every rank throws
  // the same agreed RuntimeFailure (exit 3); rank 0's names the file, the step and the cause of
  // the failed save, the checkpoint that stays `latest`, and what to do.
  [[noreturn]] void stop_on_failed_save(int64_t step);

 private:
  void report(const std::vector<ckpt::SaveReport>& reports);

  const Config& config_;
  const RankEnv& env_;
  Communicator& comm_;
  FlatParameters& params_;
  AdamW& optimizer_;
  LossScaler* scaler_;
  MetricsSink& metrics_;
  std::unique_ptr<ckpt::CheckpointSaver> saver_;  // rank 0
  int64_t last_saved_step_ = -1;
};

// Retention of checkpoint.* (keep_last, keep_best by best_metric). best_mode `auto`: lower is
// better for loss-like metrics (`loss`, `eval.[task.]loss`, perplexity), higher for the rest.
ckpt::RetentionPolicy retention_policy(const CheckpointConfig& checkpoint);

}  // namespace pft
