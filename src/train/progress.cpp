#include "train/progress.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "core/format.h"

namespace pft {

std::string format_rate(double v) {
  if (!std::isfinite(v) || v < 0) return "?";
  if (v < 1e3) return fmt::format("{:.0f}", v);
  if (v < 1e6) return fmt::format("{:.1f}k", v / 1e3);
  if (v < 1e9) return fmt::format("{:.2f}M", v / 1e6);
  return fmt::format("{:.2f}G", v / 1e9);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = s / 3600, m = (s % 3600) / 60, r = s % 60;
  if (h > 0) return fmt::format("{}h{:02d}m{:02d}s", h, m, r);
  if (m > 0) return fmt::format("{}m{:02d}s", m, r);
  return fmt::format("{}s", r);
}

std::string format_progress_line(const ProgressFields& f) {
  std::string line = fmt::format("step {}/{} | loss {:.3f} | lr {:.1e} | grad_norm {:.2f} | {} tok/s",
                                 f.step, f.total_steps, f.loss, f.lr, f.grad_norm,
                                 format_rate(f.tokens_per_s));
  if (f.world_size > 1)
    line += fmt::format(" ({}/rank)", format_rate(f.tokens_per_s / f.world_size));
  if (f.mfu >= 0) line += fmt::format(" | MFU {:.1f}%", 100.0 * f.mfu);
  line += fmt::format(" | ETA {}", format_duration(f.eta_s));
  if (f.loss_scale > 0) line += fmt::format(" | scale {:g}", f.loss_scale);
  if (f.skipped) line += " | skipped (non-finite gradients)";
  return line;
}

TaskSummary::TaskSummary(std::vector<std::string> task_names, int64_t first_step,
                         int64_t total_steps)
    : names_(std::move(task_names)),
      first_step_(first_step),
      first_(names_.size()),
      last_(names_.size()),
      total_tokens_(names_.size(), 0.0) {
  const int64_t run = std::max<int64_t>(total_steps - first_step, 1);
  window_ = std::max<int64_t>(run / 10, 1);
  last_start_ = std::max(total_steps - window_, first_step);
}

void TaskSummary::add(int64_t step, const std::vector<double>& task_loss_sum,
                      const std::vector<double>& task_tokens) {
  ++steps_added_;
  const size_t n = std::min({names_.size(), task_loss_sum.size(), task_tokens.size()});
  for (size_t k = 0; k < n; ++k) {
    total_tokens_[k] += task_tokens[k];
    if (step < first_step_ + window_) {
      first_[k].loss_sum += task_loss_sum[k];
      first_[k].tokens += task_tokens[k];
    }
    if (step >= last_start_) {
      last_[k].loss_sum += task_loss_sum[k];
      last_[k].tokens += task_tokens[k];
    }
  }
}

std::vector<std::string> TaskSummary::format() const {
  if (steps_added_ == 0 || names_.empty()) return {};
  const auto mean = [](const Window& w) {
    return w.tokens > 0 ? fmt::format("{:.3f}", w.loss_sum / w.tokens) : std::string("-");
  };
  const std::string window_label = window_ == 1 ? "step" : fmt::format("{} steps", window_);
  std::vector<std::array<std::string, 5>> rows;
  rows.push_back({"task", "target tokens", "loss first " + window_label,
                  "loss last " + window_label, "change"});
  for (size_t k = 0; k < names_.size(); ++k) {
    std::string change = "-";
    if (first_[k].tokens > 0 && last_[k].tokens > 0 && first_[k].loss_sum > 0) {
      const double a = first_[k].loss_sum / first_[k].tokens;
      const double b = last_[k].loss_sum / last_[k].tokens;
      change = fmt::format("{:+.1f}%", 100.0 * (b - a) / a);
    }
    rows.push_back({names_[k], fmt::format("{:.0f}", total_tokens_[k]), mean(first_[k]),
                    mean(last_[k]), change});
  }
  std::array<size_t, 5> width{};
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line = fmt::format("{:<{}}", row[0], width[0]);  // names left, numbers right
    for (size_t c = 1; c < row.size(); ++c) line += fmt::format("  {:>{}}", row[c], width[c]);
    lines.push_back(line);
  }
  return lines;
}

}  // namespace pft
