// pft data prepare CONFIG [--set k=v ...] [--force] [--threads N]
//     render and tokenize every task of data.tasks once into its prepared token store (HDF5,
//     docs/data-pipeline.md) under data.cache_dir; print what was built or found cached, and the
//     padding the packer leaves at this config's seq_len and batch sizes. Under mpirun only rank 0
//     works.
#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "cli/session.h"
#include "config/config.h"
#include "core/agree.h"
#include "core/format.h"
#include "data/loader.h"
#include "data/store_prepare.h"

namespace pft::cli {

namespace {

struct PrepareArgs {
  ConfigArgs config;
  bool force = false;
  int threads = 0;
};

std::string count(int64_t n) {
  if (n >= 1'000'000) return fmt::format("{:.2f}M", static_cast<double>(n) / 1e6);
  if (n >= 10'000) return fmt::format("{:.1f}k", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

// Padding of the first `steps` planned steps (one rank; the plan does not depend on the world).
double estimate_padding(const Config& config, const std::vector<PreparedStore>& stores,
                        int64_t steps) {
  std::vector<std::unique_ptr<TokenStore>> open;
  std::vector<LoaderTask> tasks;
  for (const PreparedStore& p : stores) {
    open.push_back(TokenStore::open(p.path, p.hash));
    tasks.push_back(LoaderTask{p.task, &open.back()->split(Split::kTrain)});
  }
  LoaderOptions o;
  o.seed = static_cast<uint64_t>(config.run.seed);
  o.seq_len = config.data.seq_len;
  o.micro_batch_size = config.train.micro_batch_size;
  o.global_batch_size = config.train.global_batch_size;
  TaskLoader loader(std::move(tasks), o);
  for (int64_t s = 0; s < steps; ++s) loader.plan_next_step();
  return loader.pad_fraction();
}

int run_prepare(Session& session, const PrepareArgs& a) {
  const Config config = load_resolved_config(a.config);  // from_pretrained's tokenizer too
  std::vector<PreparedStore> stores;
  double padding = 0.0;
  int64_t padding_steps = 0;
  PrepareOptions options;
  options.force = a.force;
  options.threads = a.threads > 0 ? a.threads : usable_cores();
  const auto t0 = std::chrono::steady_clock::now();
  agree_world([&] {
    if (session.world_rank() != 0) return;
    stores = prepare_token_stores(config, options);
    padding_steps = std::min<int64_t>(config.train.steps, 200);
    padding = estimate_padding(config, stores, padding_steps);
  });
  if (session.world_rank() != 0) return 0;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::cout << fmt::format("{:<16} {:<7} {:>9} {:>9} {:>9} {:>9} {:>8}  {}\n", "task", "store",
                           "examples", "documents", "tokens", "truncated", "seconds", "file");
  int64_t built = 0, tokens = 0, docs = 0;
  for (const PreparedStore& p : stores) {
    int64_t ex = 0, d = 0, t = 0;
    for (int s = 0; s < kNumSplits; ++s) {
      ex += p.examples[static_cast<size_t>(s)];
      d += p.documents[static_cast<size_t>(s)];
      t += p.tokens[static_cast<size_t>(s)];
    }
    built += p.built ? 1 : 0;
    tokens += t;
    docs += d;
    std::cout << fmt::format("{:<16} {:<7} {:>9} {:>9} {:>9} {:>9} {:>8.2f}  {}\n", p.task,
                             p.built ? "built" : "cached", count(ex), count(d), count(t),
                             p.built ? std::to_string(p.truncated) : "-", p.seconds,
                             p.path.filename().string());
  }
  std::cout << fmt::format(
      "data: {} store(s) in {} ({} built, {} cached): {} documents, {} "
      "tokens; {:.2f} s on {} thread(s)\n",
      stores.size(), token_cache_dir(config).string(), built,
      static_cast<int64_t>(stores.size()) - built, count(docs), count(tokens), seconds,
      options.threads);
  std::cout << fmt::format(
                   "packing: {:.2f}% padding over the first {} steps (seq_len {}, {} "
                   "rows per micro-batch, {} per step)\n",
                   100.0 * padding, padding_steps, config.data.seq_len,
                   config.train.micro_batch_size, config.train.global_batch_size)
            << std::flush;
  return 0;
}

}  // namespace

Command add_data_prepare(CLI::App& data) {
  auto args = std::make_shared<PrepareArgs>();
  auto* sub = data.add_subcommand(
      "prepare", "Render and tokenize every task once into the token store cache (data.cache_dir)");
  add_config_args(*sub, args->config);
  sub->add_flag("--force", args->force, "Rebuild stores even when a valid one exists");
  sub->add_option("--threads", args->threads, "Rendering threads (default: every usable core)");
  return Command{sub, [args] {
                   Session session;
                   return run_prepare(session, *args);
                 }};
}

}  // namespace pft::cli
