// Prompt-task batches for the trainer (contract: train/task_source.h).
#include "train/task_source.h"

#include <mpi.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <sstream>
#include <thread>

#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_check.h"
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

// A barrier that sleeps while it waits: ranks waiting for rank 0 to build stores must not spin
// on the cores it renders with.
void quiet_barrier(MPI_Comm comm) {
  MPI_Request request = MPI_REQUEST_NULL;
  PFT_MPI_CHECK(MPI_Ibarrier(comm, &request));
  for (int done = 0;;) {
    PFT_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Runs `body` on the ranks where `mine` holds, while the others wait quietly; then every rank
// learns whether it failed (core/agree.h).
template <class Body>
void on_some_ranks(const RankEnv& env, bool mine, Body body) {
  std::exception_ptr error;
  if (mine) {
    try {
      body();
    } catch (...) {
      error = std::current_exception();
    }
  }
  quiet_barrier(env.world);
  agree(env, [&] {
    if (error) std::rethrow_exception(error);
  });
}

std::string broadcast(std::string text, MPI_Comm comm) {
  int64_t n = static_cast<int64_t>(text.size());
  PFT_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, 0, comm));
  text.resize(static_cast<size_t>(n));
  PFT_MPI_CHECK(MPI_Bcast(text.data(), static_cast<int>(n), MPI_CHAR, 0, comm));
  return text;
}

}  // namespace

TaskTokenSource::TaskTokenSource(const Config& config, const RankEnv& env, at::Device device)
    : device_(device), rows_(config.train.micro_batch_size), seq_len_(config.data.seq_len) {
  PrepareOptions options;
  options.threads = usable_cores();
  std::vector<PreparedStore> prepared;
  on_some_ranks(env, env.world_rank == 0,
                [&] { prepared = prepare_token_stores(config, options); });
  on_some_ranks(env, env.world_rank != 0 && env.local_rank == 0,
                [&] { (void)prepare_token_stores(config, options); });
  if (env.is_root()) {
    for (const PreparedStore& p : prepared)
      log::info("data: task '{}': {} store {} ({:.2f} s)", p.task, p.built ? "built" : "cached",
                p.path.string(), p.seconds);
  }
  const std::string list =
      broadcast(env.is_root() ? serialize(prepared) : std::string(), env.world);

  int32_t pad_id = 0;
  agree(env, [&] {
    const std::unique_ptr<Tokenizer> tok = load_tokenizer(config.data.tokenizer);
    pad_id = tok->pad_id().value_or(tok->eos_id() >= 0 ? tok->eos_id() : 0);
    std::istringstream lines(list);
    std::vector<LoaderTask> tasks;
    for (std::string line; std::getline(lines, line);) {
      const size_t a = line.find('\t'), b = line.rfind('\t');
      ContentHash hash;
      PFT_ASSERT(
          a != std::string::npos && b > a && ContentHash::from_hex(line.substr(b + 1), &hash),
          "malformed store list from rank 0");
      names_.push_back(line.substr(0, a));
      stores_.push_back(TokenStore::open(line.substr(a + 1, b - a - 1), hash));
      tasks.push_back(LoaderTask{names_.back(), &stores_.back()->split(Split::kTrain)});
    }
    LoaderOptions o;
    o.seed = static_cast<uint64_t>(config.run.seed);
    o.seq_len = config.data.seq_len;
    o.micro_batch_size = config.train.micro_batch_size;
    o.global_batch_size = config.train.global_batch_size;
    o.world_size = env.world_size;
    o.rank = env.world_rank;
    o.pad_id = pad_id;
    o.mixing = MixingOptions{config.data.mixing, config.data.mixing_cap,
                             config.data.mixing_temperature};
    loader_ = std::make_unique<TaskLoader>(std::move(tasks), o);
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
      : d.mixing == "proportional" && d.mixing_cap > 0
          ? fmt::format("proportional, cap {}", d.mixing_cap)
          : d.mixing;
  log::info("data: {} task(s), {} training examples; packed into {} x {} rows; task of each "
            "micro-batch drawn by mixing {}: {}",
            loader_->num_tasks(), examples, rows_, seq_len_, how, shares);
  if (!device_.is_cpu()) host_ = allocate(rows_, seq_len_, at::kCPU);
}

TaskTokenSource::~TaskTokenSource() {
  loader_.reset();  // holds pointers into the stores
  stores_.clear();
}

Batch TaskTokenSource::make_batch() const { return allocate(rows_, seq_len_, device_); }

void TaskTokenSource::plan_step(int64_t step) {
  if (loader_->state().step != step) loader_->seek(step);
  loader_->plan_next_step();
}

int64_t TaskTokenSource::fill(int64_t micro, Batch& batch) {
  loader_->fill(micro, packed_);
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
