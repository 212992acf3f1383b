// The trainer's checkpointing (contract: train/checkpointer.h).
#include "train/checkpointer.h"

#include <chrono>
#include <filesystem>

#include "ckpt/contents.h"
#include "ckpt/format.h"
#include "comm/communicator.h"
#include "control/schedule.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/test_hooks.h"
#include "core/trace.h"
#include "train/resume.h"

namespace pft {

namespace fs = std::filesystem;
using ckpt::Contents;

Checkpointer::Checkpointer(const Config& config, const RankEnv& env, Communicator& comm,
                           FlatParameters& params, AdamW& optimizer, LossScaler* scaler,
                           MetricsSink& metrics)
    : config_(config),
      env_(env),
      comm_(comm),
      params_(params),
      optimizer_(optimizer),
      scaler_(scaler),
      metrics_(metrics) {
  if (!env.is_root()) return;
  const CheckpointConfig& cc = config.checkpoint;
  ckpt::SaverOptions o;
  o.dir = fs::path(config.run.dir) / "checkpoints";
  o.async = cc.async;
  o.write.compression = ckpt::parse_compression(cc.compression);
  o.write.file_locking = cc.file_locking;
  o.retention = retention_policy(cc);
  saver_ = std::make_unique<ckpt::CheckpointSaver>(std::move(o));
}

Checkpointer::~Checkpointer() = default;

std::optional<TrainProgress> Checkpointer::resume(const std::vector<std::string>& task_names) {
  fs::path file;
  const std::optional<Contents> contents = load_resume_checkpoint(config_, env_, comm_, &file);
  if (!contents) return std::nullopt;
  TrainProgress progress;
  std::vector<std::string> changes;
  agree(env_, "resume: restoring the checkpoint on every rank", [&] {
    progress = restore_checkpoint(*contents, config_, env_, params_, optimizer_, scaler_,
                                  task_names, &changes);
  });
  if (saver_) saver_->protect(file);
  log::info("resume: from {} at step {} ({} tokens seen, saved on {} rank(s))", file.string(),
            progress.step, progress.tokens_seen,
            ckpt::attr_to_string(contents->group_attrs(ckpt::kMeta).at(ckpt::kAttrWorldSize)));
  for (const std::string& c : changes) log::info("resume: config changed: {}", c);
  if (env_.is_root()) metrics_.restore_history(progress.metrics_history);
  last_saved_step_ = progress.step;
  return progress;
}

void Checkpointer::report(const std::vector<ckpt::SaveReport>& reports) {
  for (const ckpt::SaveReport& r : reports) {
    metrics_.checkpoint(r);
    log::info("checkpoint: step {} -> {} ({:.1f} MB in {:.2f} s, training stalled {:.3f} s{})",
              r.step, r.path.string(), static_cast<double>(r.stats.data_bytes) / 1e6,
              r.stats.seconds, r.stall_s, r.async ? ", async" : "");
  }
}

void Checkpointer::after_step(int64_t step, const std::function<TrainProgress()>& make_progress,
                              bool save, bool last) {
  const bool due = save && step != last_saved_step_;
  if (due) {
    trace::Span span(trace::Lane::kCheckpoint, "save (snapshot)", step);
    TrainProgress progress = make_progress();
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<std::vector<uint8_t>> rng = gather_rng_states(&comm_, env_.is_cuda());
    // ZeRO-1: every rank's optimizer shard to rank 0's scratch file (collective; nothing when
    // replicated). A failure there is carried, not thrown: the other ranks are in the gather.
    // A synchronous save writes before the next step: rank 0's own shard is read from memory.
    const GatheredMoments moments = gather_moments_for_save(
        optimizer_, params_, saver_ != nullptr, saver_ ? saver_->options().dir : fs::path(),
        ckpt::checkpoint_file_name(progress.step) + ".moments",
        /*borrow_own_shard=*/!config_.checkpoint.async);
    agree(env_, fmt::format("checkpoint save at step {} (rank 0 writes)", progress.step), [&] {
      test_stall_point("ckpt_save", env_.world_rank);
      test_delay_point("ckpt_save", env_.world_rank);
      if (!saver_) return;
      if (moments.error)
        throw RuntimeFailure(fmt::format(
            "checkpoint: the save of step {} to {} failed: spilling the optimizer moments "
            "gathered from the dist.zero: 1 shards: {}; training stopped on every rank. The "
            "previous checkpoints are untouched. HINT: free space on the file system of {} (a "
            "dist.zero: 1 save first writes {} bytes of optimizer moments ({:.1f} MiB) to a "
            "scratch file there, then the checkpoint beside it), then rerun with train.resume: "
            "auto",
            progress.step,
            (saver_->options().dir / ckpt::checkpoint_file_name(progress.step)).string(),
            *moments.error, saver_->options().dir.string(), moments.spill_bytes,
            static_cast<double>(moments.spill_bytes) / (1 << 20)));
      progress.metrics_history = metrics_.history();
      const bool snapshot = config_.checkpoint.async;
      Contents contents = checkpoint_contents(config_, env_.world_size, params_, optimizer_,
                                              scaler_, progress, rng, snapshot,
                                              optimizer_.sharded() ? &moments : nullptr);
      const double snapshot_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      saver_->save(progress.step, std::move(contents), snapshot_s);
    });
    last_saved_step_ = step;
  }
  if (last) {
    std::vector<ckpt::SaveReport> reports;
    agree(env_, "checkpoint: waiting for rank 0's last save to finish", [&] {
      if (saver_) reports = saver_->wait();
    });
    report(reports);
  } else if (saver_) {
    report(saver_->poll());
  }
}

bool Checkpointer::save_failed() const { return saver_ && saver_->failed(); }

void Checkpointer::stop_on_failed_save(int64_t step) {
  agree(env_, fmt::format("checkpoint: stopping on a failed save at step {}", step), [&] {
    if (!saver_) return;
    try {
      (void)saver_->wait();
    } catch (const RuntimeFailure& e) {
      const std::optional<std::string> latest = ckpt::read_latest(saver_->options().dir);
      throw RuntimeFailure(fmt::format(
          "{}; training stopped at step {} on every rank. Nothing written before is lost: {}. "
          "HINT: fix the cause (free space on the file system of {}), then rerun with "
          "train.resume: auto",
          e.what(), step,
          latest ? fmt::format("`latest` still names {}, the checkpoint a rerun resumes from",
                               (saver_->options().dir / *latest).string())
                 : std::string("no earlier checkpoint exists, a rerun starts from step 0"),
          saver_->options().dir.string()));
    }
    PFT_ASSERT(false, "the failed save's error is gone");
  });
  PFT_ASSERT(false, "a failed save did not stop the job");
}

ckpt::RetentionPolicy retention_policy(const CheckpointConfig& cc) {
  ckpt::RetentionPolicy p;
  p.keep_last = cc.keep_last;
  p.keep_best = cc.keep_best;
  p.best_metric = cc.best_metric;
  const size_t dot = cc.best_metric.rfind('.');
  p.higher_is_better = higher_is_better(
      dot == std::string::npos ? cc.best_metric : cc.best_metric.substr(dot + 1), cc.best_mode);
  p.file_locking = cc.file_locking;
  return p;
}

}  // namespace pft
