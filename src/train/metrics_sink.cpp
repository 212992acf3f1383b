#include "train/metrics_sink.h"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <cmath>

#include "ckpt/saver.h"
#include "control/schedule.h"
#include "train/evaluate.h"
#include "train/flops.h"
#include "train/tensorboard.h"
#include "train/train_step.h"

namespace pft {

namespace json = boost::json;

MetricsSink::MetricsSink(const std::filesystem::path& path) : writer_(path) {}
MetricsSink::MetricsSink() = default;
MetricsSink::MetricsSink(MetricsSink&&) noexcept = default;
MetricsSink& MetricsSink::operator=(MetricsSink&&) noexcept = default;
MetricsSink::~MetricsSink() = default;  // ~EventFileWriter flushes

void MetricsSink::enable_tensorboard(const std::filesystem::path& dir,
                                     std::vector<std::string> task_names) {
  if (!enabled()) return;
  tensorboard_ = std::make_unique<TensorBoardWriter>(dir, std::move(task_names));
}

std::filesystem::path MetricsSink::tensorboard_file() const {
  return tensorboard_ ? tensorboard_->path() : std::filesystem::path();
}

void MetricsSink::flush() {
  if (tensorboard_) tensorboard_->flush();
}

namespace {

// JSON has no NaN or infinity (Boost.JSON would write `Infinity`, which no JSON reader takes): a
// diverged run's losses and perplexities are written as null.
void null_non_finite(json::value& v) {
  if (v.is_double()) {
    if (!std::isfinite(v.get_double())) v = nullptr;
  } else if (v.is_array()) {
    for (json::value& x : v.get_array()) null_non_finite(x);
  } else if (v.is_object()) {
    for (auto& kv : v.get_object()) null_non_finite(kv.value());
  }
}

}  // namespace

void MetricsSink::write(json::object record) {
  if (!writer_.enabled()) return;
  for (auto& kv : record) null_non_finite(kv.value());
  if (!tensorboard_) {
    writer_.write(std::move(record));
    return;
  }
  // One time for both (MetricsWriter keeps a "time" that is there); metrics.jsonl first.
  record["time"] = std::chrono::duration<double>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  writer_.write(record);
  tensorboard_->add(record);
}

void MetricsSink::start(const Start& s) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = "start";
  rec["world_size"] = s.world_size;
  rec["steps"] = s.steps;
  rec["parameters"] = s.parameters;
  rec["method"] = s.method;
  if (!s.base_model_hash.empty()) rec["base_model_hash"] = s.base_model_hash;
  if (!s.mixture.empty()) {
    json::object mixture;
    for (const auto& [task, share] : s.mixture) mixture[task] = share;
    rec["mixture"] = std::move(mixture);
  }
  write(std::move(rec));
}

void MetricsSink::resume(int64_t step, int world_size) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = "resume";
  rec["step"] = step;
  rec["world_size"] = world_size;
  write(std::move(rec));
}

void MetricsSink::train(const Train& t) {
  if (!enabled()) return;
  const StepResult& r = *t.result;
  json::object rec;
  rec["kind"] = "train";
  rec["step"] = t.step;
  rec["loss"] = r.loss;
  rec["lr"] = t.lr;
  rec["grad_norm"] = r.grad_norm;
  rec["tokens"] = t.tokens;
  rec["target_tokens"] = r.target_tokens;
  rec["tokens_per_s"] = t.step_time_s > 0 ? static_cast<double>(t.tokens) / t.step_time_s : 0.0;
  rec["step_time_s"] = t.step_time_s;
  rec["step_time_max_s"] = t.step_time_max_s;
  // Per rank: what one device did (Note [model FLOPs] in train/flops.h).
  const double per_rank = tokens_per_s_per_rank(t.tokens, t.step_time_s, t.world_size);
  rec["tokens_per_s_per_rank"] = per_rank;
  rec["model_tflops_per_rank"] = per_rank * t.flops_per_token / 1e12;
  if (t.peak_flops) rec["mfu"] = per_rank * t.flops_per_token / *t.peak_flops;
  rec["comm_time_s"] = r.comm_time_s;
  rec["comm_bytes"] = r.comm_bytes;
  rec["control_s"] = t.control_s;
  rec["world_size"] = t.world_size;
  json::array task_loss, task_tokens;
  for (size_t k = 0; k < r.task_tokens.size(); ++k) {
    if (r.task_tokens[k] > 0) task_loss.emplace_back(r.task_loss_sum[k] / r.task_tokens[k]);
    else task_loss.emplace_back(nullptr);
    task_tokens.emplace_back(static_cast<int64_t>(r.task_tokens[k]));
  }
  rec["task_loss"] = std::move(task_loss);
  rec["task_tokens"] = std::move(task_tokens);
  if (t.phase) rec["phase"] = *t.phase;
  if (r.skipped) rec["skipped"] = true;
  if (r.loss_scale > 0) rec["loss_scale"] = r.loss_scale;
  history_.push_back(json::serialize(rec));
  while (history_.size() > kHistory) history_.pop_front();
  write(std::move(rec));
}

void MetricsSink::eval(int64_t step, const std::vector<TaskEval>& evals) {
  if (!enabled()) return;
  for (const TaskEval& e : evals) {
    for (const TemplateLoss& t : e.templates) {
      json::object rec;
      rec["kind"] = "eval";
      rec["step"] = step;
      rec["task"] = e.task;
      rec["template"] = t.template_id;
      const bool held_out = t.label.starts_with('*');
      rec["template_name"] = held_out ? t.label.substr(1) : t.label;
      rec["held_out"] = held_out;
      rec["loss"] = t.loss();
      rec["perplexity"] = std::exp(t.loss());
      if (t.scored > 0) rec["exact_match"] = t.exact_match();
      if (t.classified > 0) rec["accuracy"] = t.accuracy();
      rec["tokens"] = t.tokens;
      rec["documents"] = t.documents;
      write(std::move(rec));
    }
    json::object rec;
    rec["kind"] = "eval";
    rec["step"] = step;
    rec["task"] = e.task;
    rec["template"] = "all";
    rec["loss"] = e.loss();
    rec["perplexity"] = std::exp(e.loss());
    rec["worst_template_loss"] = e.worst_template_loss();
    if (e.scored > 0) {
      rec["exact_match"] = e.exact_match();
      rec["worst_template_exact_match"] = e.worst_template_exact_match();
    }
    if (e.classified > 0) {
      rec["accuracy"] = e.accuracy();
      rec["worst_template_accuracy"] = e.worst_template_accuracy();
    }
    rec["tokens"] = e.tokens;
    rec["documents"] = e.documents;
    write(std::move(rec));
  }
  flush();
}

void MetricsSink::eval_summary(const EvalSummary& s, const std::vector<TaskEval>& evals) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = "eval_summary";
  rec["step"] = s.step;
  rec["split"] = s.split;
  rec["world_size"] = s.world_size;
  rec["method"] = s.method;
  if (!s.model.empty()) rec["model"] = s.model;
  if (!s.checkpoint.empty()) rec["checkpoint"] = s.checkpoint;
  rec["tasks"] = static_cast<int64_t>(evals.size());
  int64_t documents = 0;
  for (const TaskEval& e : evals) documents += e.documents;
  rec["documents"] = documents;
  // The means over tasks (metric_table's unqualified keys), as the controller reads them.
  const MetricTable table = metric_table(evals);
  for (const char* metric : {"loss", "perplexity", "worst_template_loss", "exact_match",
                             "worst_template_exact_match", "accuracy", "worst_template_accuracy"})
    if (const auto it = table.find(metric); it != table.end()) rec[metric] = it->second;
  rec["seconds"] = s.seconds;
  write(std::move(rec));
}

void MetricsSink::schedule_event(const ScheduleEvent& e, const std::string& phase_name,
                                 const std::vector<std::string>& task_names) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = e.kind == ScheduleEvent::Kind::kPhase ? "phase" : "mixture";
  rec["step"] = e.step;
  rec["phase"] = phase_name;
  rec["reason"] = e.reason;
  if (e.kind == ScheduleEvent::Kind::kPhase) {
    rec["index"] = e.phase;
  } else {
    json::object weights;
    for (size_t k = 0; k < e.shares.size() && k < task_names.size(); ++k)
      weights[task_names[k]] = e.shares[k];
    rec["weights"] = std::move(weights);
  }
  write(std::move(rec));
}

void MetricsSink::checkpoint(const ckpt::SaveReport& r) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = "checkpoint";
  rec["step"] = r.step;
  rec["file"] = r.path.string();
  rec["bytes"] = r.stats.data_bytes;
  rec["file_bytes"] = r.stats.file_bytes;
  rec["write_s"] = r.stats.seconds;
  rec["mb_per_s"] =
      r.stats.seconds > 0 ? static_cast<double>(r.stats.data_bytes) / 1e6 / r.stats.seconds : 0.0;
  rec["stall_s"] = r.stall_s;
  rec["async"] = r.async;
  json::array deleted;
  for (const std::filesystem::path& d : r.deleted) deleted.emplace_back(d.string());
  rec["deleted"] = std::move(deleted);
  write(std::move(rec));
}

void MetricsSink::preempted(int64_t step, std::string_view signal) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = "preempted";
  rec["step"] = step;
  rec["signal"] = signal;
  write(std::move(rec));
  flush();
}

void MetricsSink::stopped(int64_t step, std::string_view reason) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = "stopped";
  rec["step"] = step;
  rec["reason"] = reason;
  write(std::move(rec));
  flush();
}

void MetricsSink::end(const End& e) {
  if (!enabled()) return;
  json::object rec;
  rec["kind"] = "end";
  rec["step"] = e.step;
  rec["tokens_seen"] = e.tokens_seen;
  rec["param_hash"] = e.param_hash;
  rec["peak_rss_mb"] = e.peak_rss_mb;
  if (!e.stopped.empty()) rec["stopped"] = e.stopped;
  if (!e.base_model_hash.empty()) rec["base_model_hash"] = e.base_model_hash;
  write(std::move(rec));
  flush();
}

}  // namespace pft
