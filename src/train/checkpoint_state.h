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
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/contents.h"
#include "ckpt/spill_file.h"
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

// Note [streamed ZeRO-1 save]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Under ZeRO-1 no rank holds the whole moments, but a checkpoint has them whole, in the layout of
// a replicated run's (Note [ZeRO-1], train/optimizer.h). Gathering them whole into rank 0's memory
// cost it 8 bytes per trainable parameter on top of its share (the 0.5B Llama's rank 0 peaked at
// 0.872x the replicated run's; streamed as below, at most 0.584x: docs/performance.md). Instead
// (gather_moments_for_save):
//   1. every rank runs the chunked all-gather from the training thread, in lock step; rank 0
//      pwrites each piece it receives (at most 2^20 elements per rank) at its place in a scratch
//      file in the checkpoints directory (ckpt/spill_file.h: created and unlinked at once), so it
//      holds the all-gather's reused buffers and nothing more;
//   2. checkpoint_contents lists the moments as streamed datasets of that file (ckpt/contents.h),
//      and whoever writes the checkpoint - the training thread (checkpoint.async: false) or the
//      saver's background thread (true) - reads them back 4 MiB at a time into the HDF5 file
//      (ckpt/writer.h), punching the bytes read out of the scratch file (every 256 MiB read, or
//      every read while its file system is short of space: ckpt/spill_file.h).
// Why a scratch file rather than HDF5 writes from the training thread during the gather: with
// checkpoint.async the saver's thread may still be inside HDF5 writing the previous checkpoint
// (HDF5 is built thread-safe with one global lock, core/hdf5.h: the training thread's HDF5 calls
// would queue behind the saver's dataset writes and stall training for the previous save; with a
// build that is not thread-safe they must never overlap at all), and the gather delivers
// the W shards' pieces interleaved, not in dataset order, which chunked (gzip) datasets would pay
// for by re-compressing chunks. The scratch file takes any order, the writer's thread stays the
// only one in HDF5, and an async save stays asynchronous. A synchronous save (the write returns
// before the next step) spills only the other ranks' pieces: rank 0's own shard is read from its
// live state, as a replicated synchronous save borrows the live buffers (MomentsSource).
// The training thread's share is a pwrite into the page cache per piece where it used to be a
// copy into new host tensors, and that is not free ("training stalled X s" in the log): on a
// 25.4M-parameter GPT-2 (203 MB of moments) on 2 ranks, a save every 2 steps, two runs of 3 saves
// each before and after, interleaved on the 2-core development machine under a load of 5-8 (only
// the medians mean much), the stall went from 0.37 s to 0.73 s with checkpoint.async (ranges
// 0.21-0.49 and 0.47-1.10 s) and stayed at 1.51 -> 1.40 s without (0.94-1.63 and 1.26-1.97 s;
// spilling all of the moments there, before rank 0's shard was read live, it was 2.13 -> 3.42 s
// in a busier hour); a plain page-cache write ran at 263 MB/s there (dd). The alternatives stall
// more: HDF5 writes of the moments from the training thread put the whole moments write in the
// stall, and moments made synchronous under ZeRO-1 the whole save. Other costs: the spilled
// moments pass through the page cache twice, and during a save the checkpoints' file system also
// holds what of them the writer has not read yet (it punches what it has read out of the scratch
// file, so the peak stays near the checkpoint's own size: tests/reliability/
// zero_save_failure_test.sh).
// A failure on rank 0 (creating or writing the scratch file: a full disk) must not leave the
// other ranks waiting in the all-gather: the first error is kept, the remaining pieces are
// received and dropped, and after the gather rank 0 throws it inside the save's agree(), so
// every rank fails with the same message (train/checkpointer.cpp).

// The ZeRO-1 moments gathered for one save (Note [streamed ZeRO-1 save]).
struct GatheredMoments {
  std::shared_ptr<ckpt::SpillFile> spill;  // rank 0, once created
  // Per group: the byte offset of its exp_avg in `spill`; its exp_avg_sq follows at once.
  std::vector<uint64_t> offset;
  std::optional<std::string> error;  // rank 0: the first failure (the gather still ran to its end)
  // Rank 0: the most bytes of moments the gather held at once: the all-gather's reused buffers
  // (AdamW::gather_buffer_bytes) plus the largest device-to-host copy of a piece (GPUs).
  int64_t held_bytes = 0;
  // Rank 0's own shard was not spilled: the save reads it from the live optimizer state, which
  // must not change until the write returns (synchronous saves on the CPU only).
  bool own_shard_live = false;
  int64_t spilled_bytes = 0;  // rank 0: bytes written to the scratch file
  // Rank 0: the bytes the scratch file takes once the gather completes (both moments of every
  // group, less rank 0's own shard when own_shard_live), for messages about its space.
  int64_t spill_bytes = 0;
};

// Collective over the optimizer's communicator when optimizer.sharded() (every rank, in lock
// step; otherwise nothing happens and nothing is returned). Rank 0 (`root`) spills the moments
// to a scratch file named after `name` in `dir`; a failure there is carried in `error`, never
// thrown (the other ranks are in the gather too). `borrow_own_shard` (a synchronous save whose
// write returns before the next step, moments on the CPU): rank 0 spills the other ranks' pieces
// only and the save reads its own 1/W from memory, as a replicated synchronous save borrows the
// live buffers.
GatheredMoments gather_moments_for_save(const AdamW& optimizer, const FlatParameters& params,
                                        bool root, const std::filesystem::path& dir,
                                        const std::string& name, bool borrow_own_shard = false);

// Rank 0: the checkpoint contents. `snapshot` = copy every tensor to host memory the Contents
// owns (async saves, or device buffers); otherwise the CPU buffers are borrowed and must not
// change until the write returns.
// `gathered`: for a sharded optimizer (ZeRO-1), what gather_moments_for_save returned on rank 0
// (without an error); the moments become datasets streamed from its scratch file, which the
// Contents keeps alive. nullptr otherwise.
ckpt::Contents checkpoint_contents(const Config& config, int world_size,
                                   const FlatParameters& params, const AdamW& optimizer,
                                   LossScaler* scaler, const TrainProgress& progress,
                                   const std::vector<std::vector<uint8_t>>& rng_states,
                                   bool snapshot, const GatheredMoments* gathered = nullptr);

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
