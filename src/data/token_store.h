// The prepared token store: every example of one task, rendered under each template of each
// split and tokenized once, in one HDF5 file that training reads with bounded memory.
//
// File layout (format version kTokenStoreVersion; docs/data-pipeline.md has the full table):
//
//   /                         attributes: format_version (int64), content_hash (32 hex digits),
//                             task, tokenizer (Tokenizer::describe()), seq_len (int64),
//                             pft_version
//   /<split>/                 one group per split present: train, validation, test;
//                             attributes num_examples, num_documents, num_tokens (int64)
//     templates     int32 (S)        task template index of each slot
//     tokens        int32 (N_tok)    every document's tokens, concatenated; chunked
//     loss_mask     uint8 (N_tok)    1 = the token is trained (per token, not shifted); chunked
//     doc_offsets   int64 (D + 1)    document d is tokens[doc_offsets[d], doc_offsets[d+1])
//     template_ids  int32 (D)        template index of each document
//     example_ids   int64 (D)        example index (within the split) of each document
//
// with D = num_examples * S documents ordered example-major (data/document_source.h):
// doc = example * S + slot. template_ids/example_ids are redundant with that order; they are
// there for tools (h5py) and checks.
//
// Integrity: the file starts with a whole-file seal in its HDF5 user block (Note [file seal],
// core/hdf5.cpp); open() checks it before HDF5 opens the file and refuses a mismatch as damaged
// (store preparation then rebuilds the store). Stores written before the seal have none and are
// read as before. Version 2: every dataset has the attribute `checksum` = "xxh3-64:<16 hex digits>",
// XXH3-64 of its elements' bytes as stored. open() checks those of templates and doc_offsets
// (which it reads in full anyway); verify() reads and checks the rest (tokens, loss_mask,
// template_ids, example_ids: the whole file, chunk by chunk). Store preparation
// (data/store_prepare.h) verifies every cached store before it uses it and rebuilds one that
// fails; a reader during training does not check again (corruption after start-up is found at the
// next start).
//
// Staleness: the file name carries the content hash (data/store_prepare.h computes it from
// everything the bytes depend on) and open() compares the stored hash with the expected one, so
// a store is never read for inputs it was not built from.
//
// Writing: TokenStoreWriter writes a temporary file beside the target, in large chunk-aligned
// blocks, and renames it into place on commit(): a reader never sees a partial store, and
// concurrent builders of the same store (two nodes) both succeed.
//
// Note [temporary store files]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The temporary file is NAME.h5.tmp-<pid>-<n>. Its writer holds an exclusive flock on it from
// its creation (before HDF5 opens it) until the rename or its removal; an unwinding writer (an
// error, a preemption signal) removes it. A writer killed outright (SIGKILL, a node lost) leaves
// it behind, and the kernel drops its lock: remove_abandoned_temporaries() -- called by every
// store preparation -- removes exactly the files it can lock, never one whose writer lives,
// whichever host that writer runs on (flock works over NFS). A writer that finds its file gone
// between creating and locking it (a clean-up got there first) takes another name. On a file
// system without flock nothing can be told apart, so nothing is removed.
//
// Reading: TokenStore::open loads the document offsets (8 bytes per document) and reads tokens
// and masks chunk by chunk through a small LRU cache (StoreReadOptions::cache_chunks chunks of
// at most kTokenChunk tokens = 5 MiB each), so memory does not grow with the store's size.
//
// Errors: open() and verify() throw InputError naming the file and dataset on a checksum
// mismatch; open() throws StaleStore (an InputError) when the hash or format version differ, and
// InputError naming the file when it is not a readable store; HDF5 failures while reading throw
// h5::Hdf5Error (RuntimeFailure). Not thread-safe: one reader per thread.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/content_hash.h"
#include "data/document_source.h"
#include "data/example.h"

namespace pft {

// Bump on any change to the layout, or to what the bytes of a store depend on that the content
// hash does not cover (rendering or tokenization behaviour).
inline constexpr int64_t kTokenStoreVersion = 2;  // 2: dataset checksums

// Tokens per HDF5 chunk (and per cache entry) of the token and mask datasets; small splits use
// one chunk of their exact size.
inline constexpr int64_t kTokenChunk = int64_t{1} << 20;

struct StoreInfo {
  std::string task;
  std::string tokenizer;  // Tokenizer::describe()
  ContentHash hash;
  int64_t seq_len = 0;
  int64_t version = kTokenStoreVersion;
};

// The store on disk was built from other inputs (or by another format version).
class StaleStore : public InputError {
 public:
  using InputError::InputError;
};

// Note [temporary store files]: removes the temporary store files in `dir` whose writer is
// gone (unlocked); returns their names. Not an error when `dir` does not exist.
std::vector<std::string> remove_abandoned_temporaries(const std::filesystem::path& dir);

class TokenStoreWriter {
 public:
  // Starts writing the store that commit() will place at `path`. `chunk_tokens` (tests) sets
  // the chunk of the token and mask datasets.
  TokenStoreWriter(std::filesystem::path path, StoreInfo info, int64_t chunk_tokens = kTokenChunk);
  ~TokenStoreWriter();  // without commit(): the temporary file is removed
  TokenStoreWriter(const TokenStoreWriter&) = delete;
  TokenStoreWriter& operator=(const TokenStoreWriter&) = delete;

  // Starts split `s`, whose documents use `templates` (task template indices, one per slot)
  // and whose examples number `num_examples`. Splits are written one at a time.
  void begin_split(Split s, std::vector<int32_t> templates, int64_t num_examples);
  // Appends the next document (in doc order: example-major, then slot). `mask` has the size of
  // `tokens`.
  void append(std::span<const int32_t> tokens, std::span<const uint8_t> mask);
  // Checks that num_examples * templates documents were appended, then flushes the split.
  void end_split();
  // Writes the attributes, closes, and renames the file into place. Throws Hdf5Error or
  // RuntimeFailure (rename) on failure.
  void commit();

  int64_t split_documents() const { return split_docs_; }
  int64_t split_tokens() const { return split_tokens_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t split_docs_ = 0, split_tokens_ = 0;
};

struct StoreReadOptions {
  int cache_chunks = 4;  // LRU entries per split (each kTokenChunk tokens: 5 MiB at most)
};

class TokenStore;

// One split of an open store.
class StoreSplit final : public DocumentSource {
 public:
  int64_t num_examples() const override { return num_examples_; }
  int32_t num_templates() const override { return static_cast<int32_t>(templates_.size()); }
  int32_t template_id(int32_t slot) const override { return templates_[static_cast<size_t>(slot)]; }
  int64_t length(int64_t doc) const override {
    return offsets_[static_cast<size_t>(doc) + 1] - offsets_[static_cast<size_t>(doc)];
  }
  void read(int64_t doc, std::vector<int32_t>& tokens, std::vector<uint8_t>& mask) override;

  int64_t num_tokens() const { return offsets_.back(); }
  // Reads the split's tokens, masks, template and example ids and checks their checksums; throws
  // InputError naming the dataset when one differs or cannot be read. Bounded memory (a chunk).
  void verify() const;
  // Bytes held by the chunk cache (and the offsets), for memory checks.
  int64_t resident_bytes() const;
  // Chunks read from the file so far (cache misses).
  int64_t chunk_reads() const { return chunk_reads_; }

  ~StoreSplit() override;
  StoreSplit(const StoreSplit&) = delete;
  StoreSplit& operator=(const StoreSplit&) = delete;

 private:
  friend class TokenStore;
  StoreSplit();
  struct Chunk {
    int64_t index = -1;
    uint64_t last_use = 0;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> mask;
  };
  const Chunk& chunk(int64_t index);

  struct Datasets;
  std::unique_ptr<Datasets> ds_;
  std::string where_;
  int64_t num_examples_ = 0;
  std::vector<int32_t> templates_;
  std::vector<int64_t> offsets_;  // (D + 1)
  int64_t chunk_tokens_ = kTokenChunk;
  std::vector<Chunk> cache_;
  uint64_t clock_ = 0;
  int64_t chunk_reads_ = 0;
};

class TokenStore {
 public:
  // Opens a store read-only. With `expected`, a different content hash throws StaleStore. A
  // different format version always throws StaleStore. A file that is not a store throws
  // InputError naming it.
  static std::unique_ptr<TokenStore> open(const std::filesystem::path& path,
                                          const std::optional<ContentHash>& expected,
                                          const StoreReadOptions& options = {});
  ~TokenStore();

  const StoreInfo& info() const { return info_; }
  // StoreSplit::verify() for every split: reads the whole file.
  void verify() const;
  const std::filesystem::path& path() const { return path_; }
  bool has_split(Split s) const { return splits_[static_cast<int>(s)] != nullptr; }
  // Throws InputError when the task has no such split.
  StoreSplit& split(Split s);
  const StoreSplit& split(Split s) const;

 private:
  TokenStore() = default;
  struct FileHandle;
  std::unique_ptr<FileHandle> file_;
  std::filesystem::path path_;
  StoreInfo info_;
  std::array<std::unique_ptr<StoreSplit>, kNumSplits> splits_;
};

}  // namespace pft
