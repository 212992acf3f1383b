// The trainer's live state <-> ckpt::Contents (docs/checkpoint-format.md; the paths are the
// constants of ckpt/format.h).
//
// Saved (rank 0 writes):
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

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/contents.h"
#include "config/config.h"
#include "control/controller.h"
#include "core/rank_env.h"
#include "data/loader.h"
#include "model/flat_params.h"
#include "train/optimizer.h"
#include "train/precision.h"

namespace pft {

class Communicator;

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

// Collective over `comm` (gather_bytes_to_root, with its deadline): every rank's generator
// states (CPU, and the current CUDA device's when `cuda`), one blob per rank on rank 0 (other
// ranks get an empty vector). Without a communicator (nullptr) or with one rank: this rank's.
std::vector<std::vector<uint8_t>> gather_rng_states(Communicator* comm, bool cuda);

// Rank 0: the checkpoint contents. `snapshot` = copy every tensor to host memory the Contents
// owns (async saves, or device buffers); otherwise the CPU buffers are borrowed and must not
// change until the write returns.
// `gathered_moments`: for a sharded optimizer (ZeRO-1), what optimizer.gather_moments_to_root()
// returned on rank 0 (collective: every rank calls it before); empty otherwise.
ckpt::Contents checkpoint_contents(const Config& config, int world_size,
                                   const FlatParameters& params, const AdamW& optimizer,
                                   LossScaler* scaler, const TrainProgress& progress,
                                   const std::vector<std::vector<uint8_t>>& rng_states,
                                   bool snapshot,
                                   const std::vector<AdamW::HostMoments>& gathered_moments = {});

// Every rank: loads `contents` into the live state. Throws InputError naming the file and the key
// or dataset when the checkpoint does not fit this run (architecture, parameter names, shapes,
// tasks). Returns the config changes allowed (for the log) through `changes`.
TrainProgress restore_checkpoint(const ckpt::Contents& contents, const Config& config,
                                 const RankEnv& env, FlatParameters& params, AdamW& optimizer,
                                 LossScaler* scaler, const std::vector<std::string>& task_names,
                                 std::vector<std::string>* changes);

// The task names a checkpoint records (/data/task_names, data.tasks order); empty when it has
// none (the synthetic data source).
std::vector<std::string> saved_task_names(const ckpt::Contents& contents);

}  // namespace pft
