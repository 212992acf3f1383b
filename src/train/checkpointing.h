// The trainer's side of checkpoints: live training state <-> ckpt::Contents
// (docs/checkpoint-format.md), and choosing the checkpoint to resume from.
//
// Saved (rank 0 writes; docs/checkpoint-format.md has the layout):
//   /meta        step, tokens seen, world size, pft version, git commit, time, metric.loss;
//                the resolved config (YAML), every key flattened, the architecture keys
//   /model       every parameter (FlatParameters slot) under its name, in its dtype
//   /optimizer   AdamW exp_avg / exp_avg_sq per parameter (attribute step), hyperparameters,
//                the schedule's options, the fp16 loss scaler
//   /trainable   method and, for adapters (train.method other than full), the base-model
//                reference: model.from_pretrained and module_hash() of the frozen base; /model
//                then holds only the adapter tensors (model/adapters.h names)
//   /rng         per rank: torch's CPU generator state (and CUDA's on GPUs)
//   /data        source, next step, per task: name and next sample (the loader's whole state)
//   /controller  version, the mixture weights of the step, the schedule state (state, JSON) and
//                the plan log (plan/*: per step its phase, world size and slot tasks; per slot
//                its documents' example indices and template ids)
//   /metrics     recent metrics.jsonl records
// Snapshots copy the flat buffers once per group (one memcpy each on the CPU, one device-to-host
// copy on GPUs) and slice the per-parameter datasets out of the copies; synchronous saves on the
// CPU borrow the live buffers instead (no copy).
//
// Restoring is the reverse on every rank, after check_resume_config (architecture refused,
// other changes logged).
#pragma once

#include <ATen/ATen.h>

#include <boost/json/object.hpp>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/contents.h"
#include "ckpt/run_checkpoints.h"
#include "ckpt/saver.h"
#include "config/config.h"
#include "control/controller.h"
#include "core/rank_env.h"
#include "core/run_dir.h"
#include "data/loader.h"
#include "model/flat_params.h"
#include "train/grad_sync.h"
#include "train/metrics_sink.h"
#include "train/optimizer.h"
#include "train/precision.h"

namespace pft {

// Everything outside the parameters and optimizer that a checkpoint records.
struct TrainProgress {
  int64_t step = 0;                         // optimizer steps taken
  int64_t tokens_seen = 0;                  // input tokens over all ranks so far
  double loss = 0.0;                        // loss of the last step (metric.loss)
  std::string data_source;                  // data.source
  std::optional<LoaderState> loader;        // tasks source: the loader's state
  std::vector<std::string> task_names;      // tasks source
  std::vector<int64_t> mixture_weights;     // tasks source: the mixture weight of each task
  std::deque<std::string> metrics_history;  // recent metrics.jsonl lines
  std::string base_model_hash;              // PEFT: module_hash of the frozen base; else empty
  std::optional<ControlState> control;      // the controller's state and plan log (rank 0)
  std::map<std::string, double> metrics;    // more metric.<name> attributes (eval.* for keep_best)
};

// Collective over `world`: every rank's generator states (CPU, and the current CUDA device's when
// `cuda`), concatenated per rank on rank 0 (other ranks get an empty vector).
std::vector<std::vector<uint8_t>> gather_rng_states(const WorldComm& world, bool cuda);

// Rank 0: the checkpoint contents. `snapshot` = copy every tensor to host memory the Contents
// owns (async saves, or device buffers); otherwise the CPU buffers are borrowed and must not
// change until the write returns.
ckpt::Contents checkpoint_contents(const Config& config, int world_size,
                                   const FlatParameters& params, const AdamW& optimizer,
                                   LossScaler* scaler, const TrainProgress& progress,
                                   const std::vector<std::vector<uint8_t>>& rng_states,
                                   bool snapshot);

// Every rank: loads `contents` into the live state. Throws InputError naming the file and the key
// or dataset when the checkpoint does not fit this run (architecture, parameter names, shapes,
// tasks). Returns the config changes allowed (for the log) through `changes`.
TrainProgress restore_checkpoint(const ckpt::Contents& contents, const Config& config,
                                 const RankEnv& env, FlatParameters& params, AdamW& optimizer,
                                 LossScaler* scaler, const std::vector<std::string>& task_names,
                                 std::vector<std::string>* changes);

// Collective (agree()d): the checkpoint to resume from, read and verified, on every rank; nullopt
// to start fresh. train.resume: none -> nullopt; auto -> the newest checkpoint of
// run.dir/checkpoints that verifies (rank 0 tries them newest first and warns naming each one it
// skips; none at all -> nullopt with an info line); a path -> that file, or InputError when it is
// missing or invalid (fail closed). `file` receives the path.
std::optional<ckpt::Contents> load_resume_checkpoint(const Config& config, const RankEnv& env,
                                                     std::filesystem::path* file);

// The trainer's checkpointing in one object: resume at start-up, a save every
// checkpoint.every_steps steps and after the last one, a metrics record for each save (and the
// recent metrics history saved with it). Every method is collective over env.world (call them on
// every rank, at the same steps); rank 0 owns the saver and writes.
class Checkpointer {
 public:
  // `scaler`: the fp16 loss scaler (nullptr otherwise); `metrics`: where finished saves are
  // reported and whose history() each checkpoint records. All references must outlive this.
  Checkpointer(const Config& config, const RankEnv& env, FlatParameters& params, AdamW& optimizer,
               LossScaler* scaler, MetricsSink& metrics);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // train.resume: restores the live state (and the metrics history) from the chosen checkpoint
  // and returns its progress (with `loader` set for the tasks source: restore the loader from
  // it), or nullopt to start at step 0. Logs the file, the step and every allowed config change.
  // Throws InputError on every rank when the checkpoint is refused.
  std::optional<TrainProgress> resume(const std::vector<std::string>& task_names);

  // After each optimizer step: saves when `save` (the controller's decision) and this step is
  // not saved yet; reports saves that finished. The `last` call also waits for the save in
  // flight. A failed save throws RuntimeFailure on every rank.
  void after_step(TrainProgress progress, bool save, bool last);

 private:
  void report(const std::vector<ckpt::SaveReport>& reports);

  const Config& config_;
  const RankEnv& env_;
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

// XXH3-64 of every parameter byte (group by group, slots in order; padding excluded) as
// "xxh3-64:<hex>": the final parameter hash of a run (bitwise-resume tests compare it).
std::string parameter_hash(const FlatParameters& params);

// The task names a checkpoint records (/data/task_names, data.tasks order); empty when it has
// none (the synthetic data source).
std::vector<std::string> saved_task_names(const ckpt::Contents& contents);

// peft.init_from: loads the adapter tensors of checkpoint `file` into `named` (same names) on
// every rank that calls it. Tables listed in `block_rows` (name -> rows per task block) are copied
// block by block by task name (unless both task lists are equal): tasks the file knows keep their
// rows bitwise, new tasks keep their fresh init. `what` starts the error messages (the key or
// flag that named the file). Returns the indices (in `task_names`) of the tasks whose blocks were loaded. Throws
// InputError naming the file when it holds no adapters, was trained on a base other than
// `base_model_hash`, or a tensor does not fit.
std::vector<size_t> init_adapters_from(const std::filesystem::path& file, const std::string& base_model_hash,
                        const std::vector<std::pair<std::string, at::Tensor>>& named,
                        const std::map<std::string, int64_t>& block_rows,
                        const std::vector<std::string>& task_names,
                        const std::string& what = "peft.init_from");
// The same from `contents` already read from `file`.
std::vector<size_t> init_adapters_from(const ckpt::Contents& contents,
                                       const std::filesystem::path& file,
                                       const std::string& base_model_hash,
                                       const std::vector<std::pair<std::string, at::Tensor>>& named,
                                       const std::map<std::string, int64_t>& block_rows,
                                       const std::vector<std::string>& task_names,
                                       const std::string& what);

// XXH3-64 of every parameter of `module` (named_parameters() order), "xxh3-64:<hex>": the
// base-model hash adapter checkpoints record (/trainable/base_model_hash).
std::string module_hash(torch::nn::Module& module);

}  // namespace pft
