// Synchronous and background checkpoint saves (contract: ckpt/saver.h).
#include "ckpt/saver.h"

#include <chrono>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/trace.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

CheckpointSaver::CheckpointSaver(SaverOptions options) : options_(std::move(options)) {}

CheckpointSaver::~CheckpointSaver() {
  join();
  std::lock_guard<std::mutex> lock(mu_);
  if (error_) log::error("{}", *error_);
}

void CheckpointSaver::protect(const fs::path& path) { protect_.insert(path); }

void CheckpointSaver::join() {
  if (worker_.joinable()) worker_.join();
}

SaveReport CheckpointSaver::run_save(int64_t step, const Contents& contents, bool traced) {
  SaveReport r;
  r.step = step;
  r.path = options_.dir / checkpoint_file_name(step);
  const int64_t begin_us = traced ? trace::now_us() : 0;
  r.stats = write_checkpoint(r.path, contents, options_.write);
  if (traced)
    trace::record_unchecked(trace::Lane::kCheckpointWrite, "write checkpoint", begin_us,
                            trace::now_us(), step, 0);
  write_latest(options_.dir, r.path.filename().string());
  test_kill_point("latest", r.path.filename().string());
  r.deleted = apply_retention(options_.dir, options_.retention, protect_);
  return r;
}

void CheckpointSaver::save(int64_t step, Contents contents, double snapshot_s) {
  const Clock::time_point t0 = Clock::now();
  join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_) {
      const std::string e = *error_;
      error_.reset();
      throw RuntimeFailure(e);
    }
  }
  if (!cleaned_) {
    std::error_code ec;
    fs::create_directories(options_.dir, ec);
    for (const std::string& name : remove_stale_temporaries(options_.dir))
      log::warn("checkpoint: removed '{}' left by an interrupted save", name);
    cleaned_ = true;
  }
  const double wait_s = seconds_since(t0);
  if (!options_.async) {
    SaveReport r = run_save(step, contents, trace::enabled());
    r.stall_s = snapshot_s + seconds_since(t0);
    r.async = false;
    std::lock_guard<std::mutex> lock(mu_);
    finished_.push_back(std::move(r));
    return;
  }
  auto owned = std::make_shared<Contents>(std::move(contents));
  const double stall = snapshot_s + wait_s;
  const bool traced = trace::enabled();
  worker_ = std::thread([this, owned, step, stall, traced] {
    try {
      SaveReport r = run_save(step, *owned, traced);
      r.stall_s = stall;
      r.async = true;
      std::lock_guard<std::mutex> lock(mu_);
      finished_.push_back(std::move(r));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = fmt::format("checkpoint: the background save of step {} to {} failed: {}", step,
                           (options_.dir / checkpoint_file_name(step)).string(), e.what());
    }
  });
}

bool CheckpointSaver::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_.has_value();
}

std::vector<SaveReport> CheckpointSaver::poll() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SaveReport> out;
  out.swap(finished_);
  return out;
}

std::vector<SaveReport> CheckpointSaver::wait() {
  join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_) {
      const std::string e = *error_;
      error_.reset();
      throw RuntimeFailure(e);
    }
  }
  return poll();
}

}  // namespace pft::ckpt
