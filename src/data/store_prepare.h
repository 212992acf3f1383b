// Preparing token stores: the content hash that keys a task's store, the cache directory, and
// building stores (render + tokenize every example of every split under each of its templates,
// on all cores) -- what `pft data prepare` and `pft train` (data.source: tasks) run.
//
// Note [store key]
// ~~~~~~~~~~~~~~~~
// A store's content hash (XXH3-128, data/content_hash.h) covers everything its bytes depend on:
//   - kTokenStoreVersion and the pft version;
//   - the task definition as resolved (the YAML tree after `defaults:` composition, without
//     source positions: comments and formatting do not count);
//   - the bytes of every data file the task reads (each split's JSONL files, or the pooled
//     file/directory, or the natinst file);
//   - the tokenizer: Tokenizer::describe() and the bytes of its files (tokenizer.json,
//     tokenizer_config.json, vocab.json, merges.txt, encoder.json, vocab.bpe,
//     special_tokens_map.json, added_tokens.json where present);
//   - data.seq_len, data.train_on_prompt, data.strict, and run.seed when a template draws
//     few-shot demonstrations (the picks depend on it).
// The store lives at CACHE/<task>-<hash>.h5; any change of an input gives another name, and
// TokenStore::open re-checks the hash inside, so nothing stale is ever read. A store found in the
// cache is also read in full and checked against its dataset checksums (TokenStore::verify) and
// rebuilt, with a warning naming the dataset, when damaged. Old stores stay until removed (rm -r
// the cache directory to reclaim space).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/content_hash.h"
#include "data/dataset.h"
#include "data/task.h"
#include "data/token_store.h"
#include "data/tokenizer.h"

namespace pft {

// data.cache_dir when set (relative paths: to the working directory), else
// <parent of run.dir>/.pft-cache.
std::filesystem::path token_cache_dir(const Config& config);

// Note [store key]. Reads every data and tokenizer file (fast: XXH3 runs at memory speed).
// Throws InputError naming an unreadable file.
ContentHash token_store_hash(const Task& task, const DataOptions& options,
                             const std::string& tokenizer_spec, const Tokenizer& tokenizer);

std::filesystem::path token_store_path(const std::filesystem::path& cache_dir,
                                       const std::string& task, const ContentHash& hash);

// Cores this process may run on (its affinity mask), at least 1.
int usable_cores();

struct PreparedStore {
  std::string task;
  std::filesystem::path path;
  ContentHash hash;
  bool built = false;    // false: found valid in the cache
  double seconds = 0.0;  // hashing + (building)
  std::array<int64_t, kNumSplits> examples{}, documents{}, tokens{};
  int64_t truncated = 0;  // documents cut to data.seq_len (built stores only)
};

// Renders every example of every split of `data` under each template the split uses and writes
// the store to `path`, rendering on `threads` threads (the calling thread writes).
PreparedStore build_token_store(const TaskDataset& data, const Tokenizer& tokenizer,
                                const StoreInfo& info, const std::filesystem::path& path,
                                int threads);

struct PrepareOptions {
  int threads = 0;     // 0 = usable_cores()
  bool force = false;  // rebuild even when a valid store exists
};

// For every task of data.tasks, in order: reuse its store when valid, else build it. Not
// collective: the caller decides which rank(s) run it. Throws InputError (bad task, data,
// tokenizer, unwritable cache directory).
std::vector<PreparedStore> prepare_token_stores(const Config& config,
                                                const PrepareOptions& options);

}  // namespace pft
