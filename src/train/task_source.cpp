// Prompt-task batches for the trainer (contract: train/task_source.h).
#include "train/task_source.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

#include "comm/communicator.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/test_hooks.h"
#include "data/dataset.h"
#include "data/store_prepare.h"
#include "data/token_store.h"
#include "data/tokenizer.h"

namespace pft {

namespace {

Batch allocate(int64_t rows, int64_t seq_len, at::Device device) {
  const auto opts = at::TensorOptions().device(device);
  Batch b;
  b.input_ids = at::zeros({rows, seq_len}, opts.dtype(at::kLong));
  b.targets = at::zeros({rows, seq_len}, opts.dtype(at::kLong));
  b.loss_mask = at::zeros({rows, seq_len}, opts.dtype(at::kFloat));
  b.position_ids = at::zeros({rows, seq_len}, opts.dtype(at::kLong));
  b.doc_ids = at::zeros({rows, seq_len}, opts.dtype(at::kInt));
  b.task_ids = at::full({rows, seq_len}, -1, opts.dtype(at::kLong));
  return b;
}

template <class T>
void copy_into(const std::vector<T>& from, at::Tensor& to) {
  PFT_ASSERT(static_cast<int64_t>(from.size()) == to.numel(),
             "packed rows and batch differ in size");
  std::memcpy(to.data_ptr<T>(), from.data(), from.size() * sizeof(T));
}

// "task\tpath\thash\n" per store, broadcast from world rank 0.
std::string serialize(const std::vector<PreparedStore>& stores) {
  std::string s;
  for (const PreparedStore& p : stores)
    s += fmt::format("{}\t{}\t{}\n", p.task, p.path.string(), p.hash.hex());
  return s;
}

// Prompt tuning: the n virtual tokens first_id .. first_id + n - 1 in front of every document of
// `base`, loss mask 0; documents are cut to `max_len` from the head of their prompt.
class SoftPromptDocuments : public DocumentSource {
 public:
  SoftPromptDocuments(DocumentSource& base, int64_t first_id, int64_t n, int64_t max_len)
      : base_(base), first_id_(first_id), n_(n), max_len_(max_len) {}
  int64_t num_examples() const override { return base_.num_examples(); }
  int32_t num_templates() const override { return base_.num_templates(); }
  int32_t template_id(int32_t slot) const override { return base_.template_id(slot); }
  int64_t length(int64_t doc) const override { return std::min(base_.length(doc) + n_, max_len_); }
  void read(int64_t doc, std::vector<int32_t>& tokens, std::vector<uint8_t>& mask) override {
    base_.read(doc, tok_, mask_);
    const auto cut = static_cast<size_t>(std::max<int64_t>(
        0, static_cast<int64_t>(tok_.size()) + n_ - max_len_));
    tokens.resize(static_cast<size_t>(n_));
    mask.assign(static_cast<size_t>(n_), 0);
    for (int64_t j = 0; j < n_; ++j) tokens[static_cast<size_t>(j)] = static_cast<int32_t>(first_id_ + j);
    tokens.insert(tokens.end(), tok_.begin() + static_cast<std::ptrdiff_t>(cut), tok_.end());
    mask.insert(mask.end(), mask_.begin() + static_cast<std::ptrdiff_t>(cut), mask_.end());
  }

 private:
  DocumentSource& base_;
  int64_t first_id_, n_, max_len_;
  std::vector<int32_t> tok_;
  std::vector<uint8_t> mask_;
};

}  // namespace

TaskTokenSource::TaskTokenSource(const Config& config, const RankEnv& env, Communicator& comm,
                                 at::Device device, Split held_out)
    : device_(device),
      rows_(config.train.micro_batch_size),
      seq_len_(config.data.seq_len),
      vocab_size_(config.model.vocab_size) {
  PrepareOptions options;
  options.threads = usable_cores();
  std::vector<PreparedStore> prepared;
  // Steps 1 and 2: the builders work while the other ranks wait inside agree(), which sleeps
  // between polls (the builders render on every core) and has the dist.timeout_s deadline.
  agree(env, "data store preparation (world rank 0 builds the stores)", [&] {
    test_stall_point("store_prepare", env.world_rank);
    if (env.world_rank == 0) prepared = prepare_token_stores(config, options);
  });
  agree(env, "data store preparation (local rank 0 of every other node)", [&] {
    if (env.world_rank != 0 && env.local_rank == 0)
      (void)prepare_token_stores(config, options);
  });
  if (env.is_root()) {
    for (const PreparedStore& p : prepared)
      log::info("data: task '{}': {} store {} ({:.2f} s)", p.task, p.built ? "built" : "cached",
                p.path.string(), p.seconds);
  }
  // Step 3.
  std::string list = env.is_root() ? serialize(prepared) : std::string();
  comm.broadcast_bytes(list, 0);

  int32_t pad_id = 0;
  agree(env, [&] {
    const std::unique_ptr<Tokenizer> tok = load_tokenizer(config.data.tokenizer);
    pad_id = tok->pad_id().value_or(tok->eos_id() >= 0 ? tok->eos_id() : 0);
    std::istringstream lines(list);
    std::vector<LoaderTask> tasks;
    const bool soft = has_prompt(config.train.method);
    const int64_t n = config.peft.prompt_tokens;
    // Wraps a split in the virtual tokens of task k's block (prompt tuning), else returns it.
    const auto documents = [&](DocumentSource& split, size_t k,
                               std::vector<std::unique_ptr<DocumentSource>>& keep) {
      if (!soft) return &split;
      const int64_t block = config.peft.prompt_shared ? 0 : static_cast<int64_t>(k);
      keep.push_back(std::make_unique<SoftPromptDocuments>(
          split, config.model.vocab_size + block * n, n, config.data.seq_len));
      return keep.back().get();
    };
    for (std::string line; std::getline(lines, line);) {
      const size_t a = line.find('\t'), b = line.rfind('\t');
      ContentHash hash;
      PFT_ASSERT(
          a != std::string::npos && b > a && ContentHash::from_hex(line.substr(b + 1), &hash),
          "malformed store list from rank 0");
      names_.push_back(line.substr(0, a));
      stores_.push_back(TokenStore::open(line.substr(a + 1, b - a - 1), hash));
      const size_t k = names_.size() - 1;
      tasks.push_back(LoaderTask{names_.back(), documents(stores_.back()->split(Split::kTrain), k, wrappers_)});
      validation_.push_back(stores_.back()->has_split(held_out)
                                ? documents(stores_.back()->split(held_out), k, wrappers_)
                                : nullptr);
    }
    LoaderOptions o;
    o.seed = static_cast<uint64_t>(config.run.seed);
    o.seq_len = config.data.seq_len;
    o.micro_batch_size = config.train.micro_batch_size;
    o.global_batch_size = config.train.global_batch_size;
    o.world_size = env.world_size;
    o.rank = env.world_rank;
    o.pad_id = pad_id;
    pad_id_ = pad_id;
    o.mixing = MixingOptions{config.data.mixing, config.data.mixing_cap,
                             config.data.mixing_temperature, config.data.mixing_weights};
    loader_ = std::make_unique<TaskLoader>(std::move(tasks), o);
  });
  agree(env, [&] {
    std::map<std::string, Task> by_name;
    for (const std::filesystem::path& file : task_files(config)) {
      Task task = load_task(file);
      by_name.emplace(task.name, std::move(task));
    }
    for (const std::string& name : names_) {
      const auto it = by_name.find(name);
      metrics_.push_back(it == by_name.end() ? Metric::kExactMatch : it->second.metric);
      std::vector<std::string> labels;
      if (it != by_name.end())
        for (const Template& t : it->second.templates)
          labels.push_back((t.held_out ? "*" : "") + t.id);
      template_labels_.push_back(std::move(labels));
    }
  });
  int64_t examples = 0;
  for (int64_t n : loader_->task_examples()) examples += n;
  const std::vector<double> share = loader_->mixture_shares();
  std::string shares;
  for (size_t k = 0; k < names_.size(); ++k)
    shares += fmt::format("{}{} {:.1f}%", k == 0 ? "" : ", ", names_[k], 100.0 * share[k]);
  const DataConfig& d = config.data;
  const std::string how =
      d.mixing == "temperature" ? fmt::format("temperature {}", d.mixing_temperature)
      : d.mixing == "round_robin" ? std::string("round_robin (whole steps per task, in turn)")
      : d.mixing == "proportional" && d.mixing_cap > 0
          ? fmt::format("proportional, cap {}", d.mixing_cap)
          : d.mixing;
  if (config.schedule.phases.empty())
    log::info("data: {} task(s), {} training examples; packed into {} x {} rows; task of each "
              "micro-batch drawn by mixing {}: {}",
              loader_->num_tasks(), examples, rows_, seq_len_, how, shares);
  else
    log::info("data: {} task(s), {} training examples; packed into {} x {} rows; task of each "
              "micro-batch planned by the schedule's {} phase(s) (schedule.phases)",
              loader_->num_tasks(), examples, rows_, seq_len_, config.schedule.phases.size());
  if (!device_.is_cpu()) host_ = allocate(rows_, seq_len_, at::kCPU);
}

std::vector<int64_t> TaskTokenSource::tasks_in_step() const {
  std::vector<uint8_t> used(names_.size(), 0);
  for (const SlotPlan& sp : loader_->plan()) used[static_cast<size_t>(sp.task)] = 1;
  std::vector<int64_t> out;
  for (size_t k = 0; k < used.size(); ++k)
    if (used[k]) out.push_back(static_cast<int64_t>(k));
  return out;
}

DocumentSource* TaskTokenSource::validation(size_t task) { return validation_.at(task); }

std::string TaskTokenSource::template_label(size_t task, int32_t template_id) const {
  const std::vector<std::string>& labels = template_labels_.at(task);
  return template_id >= 0 && static_cast<size_t>(template_id) < labels.size()
             ? labels[static_cast<size_t>(template_id)]
             : fmt::format("template{}", template_id);
}

TaskTokenSource::~TaskTokenSource() {
  loader_.reset();  // holds pointers into the stores
  wrappers_.clear();
  stores_.clear();
}

Batch TaskTokenSource::make_batch() const { return allocate(rows_, seq_len_, device_); }

void TaskTokenSource::plan_step(int64_t step) {
  if (loader_->state().step != step) loader_->seek(step);
  loader_->plan_next_step();
}

void TaskTokenSource::plan_step(int64_t step, const std::vector<int32_t>& slot_tasks) {
  PFT_ASSERT(loader_->state().step == step,
             fmt::format("the loader is at step {}, the controller's plan is for step {}",
                         loader_->state().step, step));
  loader_->plan_next_step(slot_tasks);
}

std::vector<std::vector<DocRef>> TaskTokenSource::slot_documents() {
  std::vector<std::vector<DocRef>> out;
  for (int64_t j = 0; j < loader_->slots_per_step(); ++j) out.push_back(loader_->slot_documents(j));
  return out;
}

int64_t TaskTokenSource::fill(int64_t micro, Batch& batch) {
  loader_->fill(micro, packed_);
  return copy_packed(batch);
}

int64_t TaskTokenSource::fill_documents(size_t task, DocumentSource& split,
                                        const std::vector<int64_t>& docs, Batch& batch) {
  PFT_ASSERT(static_cast<int64_t>(docs.size()) <= rows_, "fill_documents: more documents than rows");
  packed_.clear(rows_, seq_len_);
  for (size_t i = 0; i < docs.size(); ++i) {
    split.read(docs[i], eval_tokens_, eval_mask_);
    // A document longer than a row keeps its end (the answer), as the packer does.
    const auto n = static_cast<size_t>(
        std::min<int64_t>(seq_len_ + 1, static_cast<int64_t>(eval_tokens_.size())));
    if (n < 2) continue;  // nothing to predict
    const size_t skip = eval_tokens_.size() - n;
    const int32_t slot = static_cast<int32_t>(docs[i] % split.num_templates());
    packed_.add_document(static_cast<int64_t>(i), std::span(eval_tokens_.data() + skip, n),
                         std::span(eval_mask_.data() + skip, n),
                         DocRef{static_cast<int32_t>(task), split.template_id(slot),
                                docs[i] / split.num_templates(), 0});
  }
  packed_.finish(pad_id_);
  return copy_packed(batch);
}

int64_t TaskTokenSource::fill_sequences(size_t task, const std::vector<std::vector<int32_t>>& tokens,
                                        const std::vector<std::vector<uint8_t>>& masks,
                                        Batch& batch) {
  PFT_ASSERT(static_cast<int64_t>(tokens.size()) <= rows_ && tokens.size() == masks.size(),
             "fill_sequences: more sequences than rows");
  packed_.clear(rows_, seq_len_);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto n = static_cast<size_t>(
        std::min<int64_t>(seq_len_ + 1, static_cast<int64_t>(tokens[i].size())));
    if (n < 2) continue;
    const size_t skip = tokens[i].size() - n;
    packed_.add_document(static_cast<int64_t>(i), std::span(tokens[i].data() + skip, n),
                         std::span(masks[i].data() + skip, n),
                         DocRef{static_cast<int32_t>(task), 0, static_cast<int64_t>(i), 0});
  }
  packed_.finish(pad_id_);
  return copy_packed(batch);
}

int64_t TaskTokenSource::copy_packed(Batch& batch) {
  // Prompt tuning's virtual tokens (ids vocab_size + row) are inputs, never targets: the
  // positions that would predict one have loss_mask 0, and their target becomes the pad id, so
  // every target is a vocabulary id (model/batch.h) and no gather over the logits can be handed
  // one (issue 18: classification scoring gathered every position and crashed on them).
  for (size_t i = 0; i < packed_.targets.size(); ++i) {
    if (packed_.targets[i] < vocab_size_) continue;
    PFT_ASSERT(packed_.loss_mask[i] == 0.0f, "a virtual token is a trained target");
    packed_.targets[i] = pad_id_;
  }
  Batch& host = device_.is_cpu() ? batch : host_;
  copy_into(packed_.input_ids, host.input_ids);
  copy_into(packed_.targets, host.targets);
  copy_into(packed_.loss_mask, host.loss_mask);
  copy_into(packed_.position_ids, host.position_ids);
  copy_into(packed_.doc_ids, host.doc_ids);
  copy_into(packed_.task_ids, host.task_ids);
  if (!device_.is_cpu()) {
    batch.input_ids.copy_(host.input_ids);
    batch.targets.copy_(host.targets);
    batch.loss_mask.copy_(host.loss_mask);
    batch.position_ids.copy_(host.position_ids);
    batch.doc_ids.copy_(host.doc_ids);
    batch.task_ids.copy_(host.task_ids);
  }
  return packed_.target_tokens;
}

}  // namespace pft
