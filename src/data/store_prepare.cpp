// Store keys, the cache directory, parallel store building (contract: data/store_prepare.h).
#include "data/store_prepare.h"

#include <sched.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "core/format.h"
#include "core/logging.h"
#include "core/signals.h"
#include "core/test_hooks.h"
#include "data/readers.h"

namespace pft {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Files a tokenizer spec reads (Note [store key]).
std::vector<fs::path> tokenizer_files(const std::string& spec) {
  static const char* const kNames[] = {
      "tokenizer.json", "tokenizer_config.json",   "vocab.json",       "merges.txt", "encoder.json",
      "vocab.bpe",      "special_tokens_map.json", "added_tokens.json"};
  std::vector<fs::path> out;
  if (spec == "byte") return out;
  std::error_code ec;
  const fs::path p(spec);
  const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  if (!fs::is_directory(p, ec)) out.push_back(p);
  for (const char* name : kNames) {
    const fs::path f = dir / name;
    if (f != p && fs::is_regular_file(f, ec)) out.push_back(f);
  }
  return out;
}

void hash_format(Hasher& h, const Format& f) { h.text(f.text()); }

// The compiled task: everything rendering reads. Fields added to Task or Template that change
// rendering must be added here (and kTokenStoreVersion bumped).
void hash_task(Hasher& h, const Task& t) {
  h.text("task").text(t.name).integer(static_cast<int64_t>(t.metric));
  h.integer(static_cast<int64_t>(t.labels.size()));
  for (const std::string& l : t.labels) h.text(l);
  h.integer(static_cast<int64_t>(t.fields.size()));
  for (const FieldDef& f : t.fields)
    h.text(f.name).text(f.source).integer(f.optional).integer(f.constant);
  h.integer(t.answer_field).integer(t.extra_fields_error);
  h.integer(static_cast<int64_t>(t.templates.size()));
  for (const Template& tp : t.templates) {
    h.text(tp.id);
    hash_format(h, tp.instruction);
    hash_format(h, tp.guidelines);
    hash_format(h, tp.input);
    hash_format(h, tp.output);
    h.text(tp.separator).integer(tp.few_shot_k).integer(static_cast<int64_t>(tp.few_shot_source));
    h.text(tp.few_shot_separator);
    hash_format(h, tp.demo);
    h.integer(tp.eos).integer(tp.truncate_field).integer(tp.truncate_left).integer(tp.held_out);
  }
  h.integer(static_cast<int64_t>(t.format));
  for (double r : t.split_ratios) h.real(r);
  h.integer(static_cast<int64_t>(t.split_seed));
  // The data: file names within their source and bytes.
  const auto hash_source = [&h, &t](const std::string& role, const fs::path& src) {
    h.text(role);
    if (src.empty()) return;
    std::vector<fs::path> files;
    if (t.format == SourceFormat::kNatinst && role == "pool")
      files.push_back(src);
    else
      files = jsonl_files(src);
    h.integer(static_cast<int64_t>(files.size()));
    for (const fs::path& f : files) h.text(f.filename().string()).file(f);
  };
  for (int s = 0; s < kNumSplits; ++s)
    hash_source(split_name(static_cast<Split>(s)), t.split_paths[static_cast<size_t>(s)]);
  hash_source("pool", t.pooled_path);
}

bool any_few_shot(const Task& t) {
  for (const Template& tp : t.templates)
    if (tp.few_shot_k > 0) return true;
  return false;
}

// Rendered documents of a block of consecutive examples.
struct Block {
  int64_t index = -1;  // block number once rendered; -1 = slot free
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  std::vector<int64_t> lengths;
  int64_t truncated = 0;
};

constexpr int64_t kBlockExamples = 64;

// Renders split `s` on `threads` workers and appends it to `w` in document order from this
// thread. At most `window` blocks are in flight, so memory stays bounded.
int64_t write_split(const TaskDataset& data, Split s, const std::vector<int32_t>& templates,
                    const Tokenizer& tok, int threads, TokenStoreWriter& w) {
  const int64_t n = data.size(s);
  const int64_t blocks = (n + kBlockExamples - 1) / kBlockExamples;
  const int64_t window = std::max<int64_t>(2, int64_t{threads} * 4);
  std::vector<Block> ring(static_cast<size_t>(window));
  std::mutex mu;
  std::condition_variable cv;
  int64_t next = 0, written = 0;
  bool stop = false;
  std::exception_ptr error;

  const auto worker = [&] {
    try {
      for (;;) {
        int64_t b = 0;
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return stop || next >= blocks || next < written + window; });
          if (stop || next >= blocks) return;
          b = next++;
        }
        // Slot b % window is ours: block b - window has been written.
        Block& blk = ring[static_cast<size_t>(b % window)];
        blk.tokens.clear();
        blk.mask.clear();
        blk.lengths.clear();
        blk.truncated = 0;
        const int64_t end = std::min(n, (b + 1) * kBlockExamples);
        for (int64_t e = b * kBlockExamples; e < end; ++e) {
          for (int32_t t : templates) {
            const RenderedExample ex = data.render(s, e, t, tok);
            blk.tokens.insert(blk.tokens.end(), ex.tokens.begin(), ex.tokens.end());
            blk.mask.insert(blk.mask.end(), ex.loss_mask.begin(), ex.loss_mask.end());
            blk.lengths.push_back(static_cast<int64_t>(ex.tokens.size()));
            blk.truncated += ex.truncated ? 1 : 0;
          }
        }
        {
          std::lock_guard lock(mu);
          blk.index = b;
        }
        cv.notify_all();
      }
    } catch (...) {
      {
        std::lock_guard lock(mu);
        if (!error) error = std::current_exception();
        stop = true;
      }
      cv.notify_all();
    }
  };

  std::vector<std::thread> pool;
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, blocks));
  for (int64_t i = 0; i < workers; ++i) pool.emplace_back(worker);
  int64_t truncated = 0;
  try {
    for (int64_t b = 0; b < blocks; ++b) {
      test_delay_point("store_block", 0);
      preemption_check("the token store preparation");  // core/signals.h: prompt, tmp removed
      Block* blk = nullptr;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stop || ring[static_cast<size_t>(b % window)].index == b; });
        if (stop) break;
        blk = &ring[static_cast<size_t>(b % window)];
      }
      int64_t off = 0;
      for (int64_t len : blk->lengths) {
        w.append(std::span<const int32_t>(blk->tokens.data() + off, static_cast<size_t>(len)),
                 std::span<const uint8_t>(blk->mask.data() + off, static_cast<size_t>(len)));
        off += len;
      }
      truncated += blk->truncated;
      {
        std::lock_guard lock(mu);
        blk->index = -1;
        written = b + 1;
      }
      cv.notify_all();
    }
  } catch (...) {
    {
      std::lock_guard lock(mu);
      if (!error) error = std::current_exception();
      stop = true;
    }
    cv.notify_all();
  }
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return truncated;
}

}  // namespace

fs::path token_cache_dir(const Config& config) {
  if (!config.data.cache_dir.empty()) return fs::path(config.data.cache_dir);
  const fs::path run = fs::path(config.run.dir).lexically_normal();
  fs::path parent = run.has_filename() ? run.parent_path() : run.parent_path().parent_path();
  if (parent.empty()) parent = ".";
  return parent / ".pft-cache";
}

ContentHash token_store_hash(const Task& task, const DataOptions& options,
                             const std::string& tokenizer_spec, const Tokenizer& tokenizer) {
  Hasher h;
  h.text("pft token store").integer(kTokenStoreVersion).text(PFT_VERSION);
  hash_task(h, task);
  h.text("tokenizer").text(tokenizer.describe());
  for (const fs::path& f : tokenizer_files(tokenizer_spec)) h.text(f.filename().string()).file(f);
  h.text("options")
      .integer(options.seq_len)
      .integer(options.train_on_prompt)
      .integer(options.strict);
  h.integer(any_few_shot(task) ? static_cast<int64_t>(options.seed) : -1);
  return h.finish();
}

fs::path token_store_path(const fs::path& cache_dir, const std::string& task,
                          const ContentHash& hash) {
  return cache_dir / fmt::format("{}-{}.h5", task, hash.hex());
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

PreparedStore build_token_store(const TaskDataset& data, const Tokenizer& tokenizer,
                                const StoreInfo& info, const fs::path& path, int threads) {
  const Clock::time_point t0 = Clock::now();
  PreparedStore out;
  out.task = info.task;
  out.path = path;
  out.hash = info.hash;
  out.built = true;
  TokenStoreWriter w(path, info);
  for (int s = 0; s < kNumSplits; ++s) {
    const Split split = static_cast<Split>(s);
    if (!data.has_split(split)) continue;
    const std::vector<int32_t> templates = data.templates_for(split);
    w.begin_split(split, templates, data.size(split));
    out.truncated += write_split(data, split, templates, tokenizer, std::max(1, threads), w);
    out.examples[static_cast<size_t>(s)] = data.size(split);
    out.documents[static_cast<size_t>(s)] = w.split_documents();
    out.tokens[static_cast<size_t>(s)] = w.split_tokens();
    w.end_split();
  }
  w.commit();
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

std::vector<PreparedStore> prepare_token_stores(const Config& config,
                                                const PrepareOptions& options) {
  const std::unique_ptr<Tokenizer> tok = load_tokenizer(config.data.tokenizer);
  const DataOptions data_opts = data_options(config);
  const fs::path cache = token_cache_dir(config);
  const int threads = options.threads > 0 ? options.threads : usable_cores();
  const std::vector<fs::path> files = task_files(config);
  if (files.empty())
    config::fail(config.source_of("data.tasks"), "data.tasks",
                 "no task files are listed; add task YAML files (docs/tasks.md)");
  for (const std::string& name : remove_abandoned_temporaries(cache))
    log::warn("data: removed '{}' from {}, left by a store build that was interrupted (its "
              "writer is gone)", name, cache.string());
  std::vector<PreparedStore> out;
  for (size_t i = 0; i < files.size(); ++i) {
    const Clock::time_point t0 = Clock::now();
    Task task = load_task(files[i]);
    const ContentHash hash = token_store_hash(task, data_opts, config.data.tokenizer, *tok);
    const fs::path path = token_store_path(cache, task.name, hash);
    std::error_code ec;
    if (!options.force && fs::exists(path, ec)) {
      try {
        const std::unique_ptr<TokenStore> store = TokenStore::open(path, hash);
        store->verify();  // a flipped bit anywhere in it: rebuilt below
        PreparedStore p;
        p.task = task.name;
        p.path = path;
        p.hash = hash;
        for (int s = 0; s < kNumSplits; ++s) {
          if (!store->has_split(static_cast<Split>(s))) continue;
          const StoreSplit& sp = store->split(static_cast<Split>(s));
          p.examples[static_cast<size_t>(s)] = sp.num_examples();
          p.documents[static_cast<size_t>(s)] = sp.num_documents();
          p.tokens[static_cast<size_t>(s)] = sp.num_tokens();
        }
        p.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        out.push_back(std::move(p));
        continue;
      } catch (const InputError& e) {
        log::warn("rebuilding the token store of task '{}': {}", task.name, e.what());
      }
    }
    const std::string name = task.name;
    TaskDataset data(std::move(task), static_cast<int32_t>(i), data_opts);
    if (data.load_report().problems > 0)
      log::warn("task '{}': skipped {}", name, data.load_report().summary());
    const StoreInfo info{name, tok->describe(), hash, data_opts.seq_len, kTokenStoreVersion};
    PreparedStore p = build_token_store(data, *tok, info, path, threads);
    p.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace pft
