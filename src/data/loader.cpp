// The training data loader (contract: data/loader.h).
#include "data/loader.h"

#include "core/error.h"
#include "core/format.h"

namespace pft {

std::vector<int64_t> TaskLoader::count_examples(const std::vector<LoaderTask>& tasks) {
  std::vector<int64_t> n;
  for (const LoaderTask& t : tasks) {
    PFT_ASSERT(t.source != nullptr, "loader task without a document source");
    n.push_back(t.source->num_examples());
  }
  return n;
}

std::vector<double> TaskLoader::mixture_shares() const {
  double total = 0;
  for (int64_t w : weights_) total += static_cast<double>(w);
  std::vector<double> shares;
  for (int64_t w : weights_) shares.push_back(static_cast<double>(w) / total);
  return shares;
}

TaskLoader::TaskLoader(std::vector<LoaderTask> tasks, const LoaderOptions& options)
    : tasks_(std::move(tasks)),
      options_(options),
      examples_(count_examples(tasks_)),
      weights_(pft::mixture_weights(examples_, options.mixing)),
      mixture_(options.seed, weights_, options.mixing.strategy == "round_robin") {
  const LoaderOptions& o = options_;
  PFT_ASSERT(!tasks_.empty(), "the loader needs at least one task");
  PFT_ASSERT(o.seq_len >= 1 && o.micro_batch_size >= 1 && o.world_size >= 1 && o.rank >= 0 &&
                 o.rank < o.world_size &&
                 o.global_batch_size % (o.micro_batch_size * o.world_size) == 0,
             fmt::format("loader: global batch {} is not a multiple of micro batch {} x {} ranks",
                         o.global_batch_size, o.micro_batch_size, o.world_size));
  slots_ = o.global_batch_size / o.micro_batch_size;
  per_rank_ = slots_ / o.world_size;
  for (const LoaderTask& t : tasks_)
    samplers_.emplace_back(o.seed, t.name, t.source->num_examples(), t.source->num_templates());
  state_.next_sample.assign(tasks_.size(), 0);
}

int64_t TaskLoader::length_of(int32_t task, int64_t sample) {
  const SampleRef s = samplers_[static_cast<size_t>(task)].at(sample);
  const DocumentSource& src = *tasks_[static_cast<size_t>(task)].source;
  return src.length(src.document(s.example, s.slot));
}

void TaskLoader::plan_next_step() {
  std::vector<int32_t> tasks(static_cast<size_t>(slots_));
  for (int64_t j = 0; j < slots_; ++j) tasks[static_cast<size_t>(j)] = mixture_.task_of(state_.step, j);
  plan_next_step(tasks);
}

void TaskLoader::plan_next_step(const std::vector<int32_t>& slot_tasks) {
  PFT_ASSERT(static_cast<int64_t>(slot_tasks.size()) == slots_,
             fmt::format("loader: a plan of {} slots for a step of {}", slot_tasks.size(), slots_));
  const int64_t step = state_.step;
  plan_.resize(static_cast<size_t>(slots_));
  for (int64_t j = 0; j < slots_; ++j) {
    SlotPlan& sp = plan_[static_cast<size_t>(j)];
    sp.task = slot_tasks[static_cast<size_t>(j)];
    PFT_ASSERT(sp.task >= 0 && sp.task < num_tasks(), "loader: a plan names no task");
    int64_t& cursor = state_.next_sample[static_cast<size_t>(sp.task)];
    sp.first_sample = cursor;
    const int32_t task = sp.task;
    const int64_t first = cursor;
    sp.pack = plan_rows(options_.micro_batch_size, options_.seq_len,
                        [this, task, first](int64_t i) { return length_of(task, first + i); });
    cursor += sp.pack.consumed;
    planned_positions_ += options_.micro_batch_size * options_.seq_len;
    used_positions_ += sp.pack.used_positions;
  }
  planned_step_ = step;
  state_.step = step + 1;
}

std::vector<DocRef> TaskLoader::slot_documents(int64_t slot) {
  PFT_ASSERT(planned_step_ >= 0 && slot >= 0 && slot < slots_, "slot_documents: no such slot");
  const SlotPlan& sp = plan_[static_cast<size_t>(slot)];
  TaskSampler& sampler = samplers_[static_cast<size_t>(sp.task)];
  const DocumentSource& src = *tasks_[static_cast<size_t>(sp.task)].source;
  std::vector<DocRef> out;
  for (int64_t i = 0; i < sp.pack.consumed; ++i) {
    const SampleRef s = sampler.at(sp.first_sample + i);
    out.push_back(DocRef{sp.task, src.template_id(s.slot), s.example, s.sample});
  }
  return out;
}

void TaskLoader::fill(int64_t micro, PackedRows& out) {
  PFT_ASSERT(planned_step_ >= 0, "fill before plan_next_step");
  PFT_ASSERT(micro >= 0 && micro < per_rank_, "fill: micro-batch index out of range");
  const int64_t slot = static_cast<int64_t>(options_.rank) * per_rank_ + micro;
  const SlotPlan& sp = plan_[static_cast<size_t>(slot)];
  TaskSampler& sampler = samplers_[static_cast<size_t>(sp.task)];
  DocumentSource& src = *tasks_[static_cast<size_t>(sp.task)].source;
  out.clear(options_.micro_batch_size, options_.seq_len);
  for (int64_t i = 0; i < sp.pack.consumed; ++i) {
    const int32_t row = sp.pack.row_of[static_cast<size_t>(i)];
    if (row < 0) continue;
    const SampleRef s = sampler.at(sp.first_sample + i);
    src.read(src.document(s.example, s.slot), tok_buf_, mask_buf_);
    out.add_document(row, tok_buf_, mask_buf_,
                     DocRef{sp.task, src.template_id(s.slot), s.example, s.sample});
  }
  out.finish(options_.pad_id);
}

void TaskLoader::restore(const LoaderState& state) {
  if (state.next_sample.size() != tasks_.size() || state.step < 0)
    throw InputError(
        fmt::format("the saved data loader state has {} task cursors; this run has "
                    "{} tasks (data.tasks changed since it was saved)",
                    state.next_sample.size(), tasks_.size()));
  state_ = state;
  planned_step_ = -1;
  plan_.clear();
}

void TaskLoader::seek(int64_t step) {
  PFT_ASSERT(step >= 0, "seek to a negative step");
  if (step < state_.step) restore(LoaderState{0, std::vector<int64_t>(tasks_.size(), 0)});
  while (state_.step < step) plan_next_step();
  planned_step_ = -1;
  plan_.clear();
}

}  // namespace pft
