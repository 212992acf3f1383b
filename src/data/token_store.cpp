// The prepared token store: HDF5 writer and chunk-cached reader (contract: data/token_store.h).
#include "data/token_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <tuple>
#include <utility>
#include <cstring>

#include "core/format.h"
#include "core/hdf5.h"

namespace pft {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kIndexChunk = int64_t{1} << 16;  // offsets / template ids / example ids
constexpr int64_t kFlushChunks = 8;                // buffered chunks before a write
constexpr const char* kChecksumAttr = "checksum";  // on every dataset: "xxh3-64:<16 hex>"

// XXH3-64 over bytes fed in pieces (the store's dataset checksums).
class Checksum {
 public:
  Checksum() : state_(XXH3_createState(), &XXH3_freeState) {
    PFT_ASSERT(state_ != nullptr, "XXH3_createState failed");
    XXH3_64bits_reset(state_.get());
  }
  template <class T>
  void update(std::span<const T> v) {
    XXH3_64bits_update(state_.get(), v.data(), v.size_bytes());
  }
  std::string hex() const { return fmt::format("xxh3-64:{:016x}", XXH3_64bits_digest(state_.get())); }

 private:
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state_;
};

template <class T>
std::string checksum_of(std::span<const T> v) {
  Checksum c;
  c.update(v);
  return c.hex();
}

// A 1-D extensible dataset written in chunk-aligned blocks: HDF5 then never reads a chunk back to
// complete it. The dataset is created on the first write, with chunks of `max_chunk` elements,
// or, when the whole dataset turns out smaller, one chunk of exactly its size.
template <class T>
class Appender {
 public:
  Appender(const char* name, int64_t max_chunk) : name_(name), max_chunk_(max_chunk) {}

  void add(std::span<const T> v, const h5::Group& g) {
    buf_.insert(buf_.end(), v.begin(), v.end());
    if (static_cast<int64_t>(buf_.size()) >= kFlushChunks * max_chunk_) flush(g, false);
  }
  void add(T v, const h5::Group& g) { add(std::span<const T>(&v, 1), g); }

  // Writes what is buffered: whole chunks only unless `all`.
  void flush(const h5::Group& g, bool all) {
    const auto n = static_cast<int64_t>(buf_.size());
    if (!ds_.valid()) {
      const int64_t chunk = all ? std::clamp<int64_t>(n, 1, max_chunk_) : max_chunk_;
      ds_ = h5::Dataset::create_1d<T>(g, name_, 0, static_cast<hsize_t>(chunk));
    }
    const int64_t count = all ? n : n / max_chunk_ * max_chunk_;
    if (count == 0) return;
    ds_.append_1d<T>(std::span<const T>(buf_.data(), static_cast<size_t>(count)));
    sum_.update(std::span<const T>(buf_.data(), static_cast<size_t>(count)));
    buf_.erase(buf_.begin(), buf_.begin() + count);
  }
  // After the last flush: the checksum of everything written, as the dataset's attribute.
  void seal() const { ds_.write_attribute(kChecksumAttr, sum_.hex()); }
  void reset() {
    ds_ = h5::Dataset();
    buf_.clear();
    sum_ = Checksum();
  }

 private:
  const char* name_;
  int64_t max_chunk_;
  h5::Dataset ds_;
  std::vector<T> buf_;
  Checksum sum_;
};

fs::path temporary_path(const fs::path& target) {
  static std::atomic<int> counter{0};
  return target.parent_path() /
         fmt::format("{}.tmp-{}-{}", target.filename().string(), ::getpid(), counter++);
}

bool same_file(int fd, const fs::path& p) {
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::stat(p.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

// Note [temporary store files]: creates a fresh temporary file for `target` and returns it with
// an open descriptor holding an exclusive flock on it (-1 where it cannot be created: H5Fcreate
// then reports why).
std::pair<fs::path, int> create_locked_temporary(const fs::path& target) {
  for (int attempt = 0;; ++attempt) {
    const fs::path temp = temporary_path(target);
    const int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST && attempt < 100) continue;
      return {temp, -1};
    }
    // No flock on this file system (EINVAL, ENOLCK, EOPNOTSUPP): unlocked, so a later run's
    // clean-up cannot lock it either and leaves it alone.
    (void)::flock(fd, LOCK_EX | LOCK_NB);
    if (same_file(fd, temp) || attempt >= 100) return {temp, fd};
    ::close(fd);  // a clean-up removed it between the open and the lock: take another name
  }
}

void fsync_file(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

// ---- Writer ---------------------------------------------------------------------------------

struct TokenStoreWriter::Impl {
  explicit Impl(int64_t chunk) : tok("tokens", chunk), mask("loss_mask", chunk) {}
  ~Impl() {
    if (lock_fd >= 0) ::close(lock_fd);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  fs::path target, temp;
  int lock_fd = -1;  // holds the flock of `temp` while it is written (Note [temporary store files])
  StoreInfo info;
  h5::File file;
  bool committed = false;

  // Current split.
  int split = -1;
  h5::Group group;
  std::vector<int32_t> templates;
  int64_t num_examples = 0;
  int64_t tokens = 0;
  int64_t docs = 0;
  Appender<int32_t> tok;
  Appender<uint8_t> mask;
  Appender<int64_t> offsets{"doc_offsets", kIndexChunk};
  Appender<int32_t> template_ids{"template_ids", kIndexChunk};
  Appender<int64_t> example_ids{"example_ids", kIndexChunk};
};

TokenStoreWriter::TokenStoreWriter(fs::path path, StoreInfo info, int64_t chunk_tokens)
    : impl_(std::make_unique<Impl>(std::max<int64_t>(1, chunk_tokens))) {
  impl_->target = std::move(path);
  impl_->info = std::move(info);
  std::error_code ec;
  if (impl_->target.has_parent_path()) fs::create_directories(impl_->target.parent_path(), ec);
  if (ec)
    throw InputError(fmt::format("{}: cannot create the token store directory: {}",
                                 impl_->target.parent_path().string(), ec.message()));
  std::tie(impl_->temp, impl_->lock_fd) = create_locked_temporary(impl_->target);
  h5::FileOptions fo;
  fo.seal = true;  // Note [file seal], core/hdf5.cpp
  impl_->file = h5::File::create(impl_->temp, fo);  // truncates the same file: the lock stays
}

TokenStoreWriter::~TokenStoreWriter() {
  if (!impl_ || impl_->committed) return;
  impl_->group = h5::Group();
  impl_->tok.reset();
  impl_->mask.reset();
  impl_->offsets.reset();
  impl_->template_ids.reset();
  impl_->example_ids.reset();
  impl_->file.reset();
  std::error_code ec;
  fs::remove(impl_->temp, ec);
}

void TokenStoreWriter::begin_split(Split s, std::vector<int32_t> templates, int64_t num_examples) {
  Impl& m = *impl_;
  PFT_ASSERT(m.split < 0, "begin_split while a split is open");
  PFT_ASSERT(!templates.empty(), "a split needs at least one template");
  m.split = static_cast<int>(s);
  m.group = m.file.create_group(split_name(s));
  m.templates = std::move(templates);
  m.num_examples = num_examples;
  m.tokens = 0;
  m.docs = 0;
  m.offsets.add(int64_t{0}, m.group);
  split_docs_ = 0;
  split_tokens_ = 0;
}

void TokenStoreWriter::append(std::span<const int32_t> tokens, std::span<const uint8_t> mask) {
  Impl& m = *impl_;
  PFT_ASSERT(m.split >= 0, "append outside a split");
  PFT_ASSERT(tokens.size() == mask.size(), "tokens and loss mask differ in length");
  const int64_t slots = static_cast<int64_t>(m.templates.size());
  m.tok.add(tokens, m.group);
  m.mask.add(mask, m.group);
  m.tokens += static_cast<int64_t>(tokens.size());
  m.offsets.add(m.tokens, m.group);
  m.template_ids.add(m.templates[static_cast<size_t>(m.docs % slots)], m.group);
  m.example_ids.add(m.docs / slots, m.group);
  ++m.docs;
  split_docs_ = m.docs;
  split_tokens_ = m.tokens;
}

void TokenStoreWriter::end_split() {
  Impl& m = *impl_;
  PFT_ASSERT(m.split >= 0, "end_split without begin_split");
  const int64_t expected = m.num_examples * static_cast<int64_t>(m.templates.size());
  PFT_ASSERT(m.docs == expected,
             fmt::format("split {}: {} documents appended, expected {}",
                         split_name(static_cast<Split>(m.split)), m.docs, expected));
  m.tok.flush(m.group, true);
  m.mask.flush(m.group, true);
  m.offsets.flush(m.group, true);
  m.template_ids.flush(m.group, true);
  m.example_ids.flush(m.group, true);
  m.tok.seal();
  m.mask.seal();
  m.offsets.seal();
  m.template_ids.seal();
  m.example_ids.seal();
  const h5::Dataset t = h5::Dataset::create_1d<int32_t>(m.group, "templates", m.templates.size());
  t.write_1d<int32_t>(0, m.templates);
  t.write_attribute(kChecksumAttr, checksum_of(std::span<const int32_t>(m.templates)));
  m.group.write_attribute("num_examples", m.num_examples);
  m.group.write_attribute("num_documents", m.docs);
  m.group.write_attribute("num_tokens", m.tokens);
  m.tok.reset();
  m.mask.reset();
  m.offsets.reset();
  m.template_ids.reset();
  m.example_ids.reset();
  m.group = h5::Group();
  m.split = -1;
}

void TokenStoreWriter::commit() {
  Impl& m = *impl_;
  PFT_ASSERT(m.split < 0, "commit with a split still open");
  m.file.write_attribute("format_version", m.info.version);
  m.file.write_attribute("content_hash", m.info.hash.hex());
  m.file.write_attribute("task", m.info.task);
  m.file.write_attribute("tokenizer", m.info.tokenizer);
  m.file.write_attribute("seq_len", m.info.seq_len);
  m.file.write_attribute("pft_version", std::string(PFT_VERSION));
  m.file.close();
  h5::seal_file(m.temp);
  fsync_file(m.temp);
  std::error_code ec;
  fs::rename(m.temp, m.target, ec);
  if (ec) {
    fs::remove(m.temp, ec);
    throw RuntimeFailure(fmt::format("cannot move the token store into place at {}: {}",
                                     m.target.string(), ec.message()));
  }
  m.committed = true;
}

std::vector<std::string> remove_abandoned_temporaries(const fs::path& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(".h5.tmp-") == std::string::npos) continue;
    const int fd = ::open(e.path().c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    // Locked: a live writer. Unlockable here: no flock on this file system, leave it.
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && same_file(fd, e.path()) &&
        ::unlink(e.path().c_str()) == 0)
      removed.push_back(name);
    ::close(fd);
  }
  return removed;
}

// ---- Reader ---------------------------------------------------------------------------------

struct StoreSplit::Datasets {
  h5::Dataset tokens, mask, template_ids, example_ids;
};

namespace {

// Throws InputError naming the dataset when `computed` is not its stored checksum.
void expect_checksum(const h5::Dataset& ds, const std::string& where, const char* name,
                     const std::string& computed) {
  const std::string stored = ds.read_string_attribute(kChecksumAttr);
  if (stored != computed)
    throw InputError(fmt::format(
        "{}/{}: checksum mismatch (stored {}, computed {}): the token store is corrupt; delete "
        "it and run `pft data prepare` (training rebuilds it by itself)",
        where, name, stored, computed));
}

}  // namespace

struct TokenStore::FileHandle {
  h5::File file;
};

StoreSplit::StoreSplit() : ds_(std::make_unique<Datasets>()) {}
StoreSplit::~StoreSplit() = default;
TokenStore::~TokenStore() {
  for (auto& s : splits_) s.reset();  // datasets before their file
  file_.reset();
}

int64_t StoreSplit::resident_bytes() const {
  int64_t bytes = static_cast<int64_t>(offsets_.capacity() * sizeof(int64_t) +
                                       templates_.capacity() * sizeof(int32_t));
  for (const Chunk& c : cache_)
    bytes += static_cast<int64_t>(c.tokens.capacity() * sizeof(int32_t) + c.mask.capacity());
  return bytes;
}

const StoreSplit::Chunk& StoreSplit::chunk(int64_t index) {
  ++clock_;
  Chunk* victim = &cache_[0];
  for (Chunk& c : cache_) {
    if (c.index == index) {
      c.last_use = clock_;
      return c;
    }
    if (c.index < 0 || (victim->index >= 0 && c.last_use < victim->last_use)) victim = &c;
  }
  const int64_t start = index * chunk_tokens_;
  const int64_t count = std::min(chunk_tokens_, num_tokens() - start);
  victim->tokens.resize(static_cast<size_t>(count));
  victim->mask.resize(static_cast<size_t>(count));
  victim->index = -1;  // invalid until both reads succeed
  ds_->tokens.read_1d<int32_t>(static_cast<hsize_t>(start), victim->tokens);
  ds_->mask.read_1d<uint8_t>(static_cast<hsize_t>(start), victim->mask);
  victim->index = index;
  victim->last_use = clock_;
  ++chunk_reads_;
  return *victim;
}

void StoreSplit::read(int64_t doc, std::vector<int32_t>& tokens, std::vector<uint8_t>& mask) {
  PFT_ASSERT(doc >= 0 && doc < num_documents(),
             fmt::format("{}: document {} out of range [0, {})", where_, doc, num_documents()));
  const int64_t begin = offsets_[static_cast<size_t>(doc)];
  const int64_t end = offsets_[static_cast<size_t>(doc) + 1];
  tokens.resize(static_cast<size_t>(end - begin));
  mask.resize(static_cast<size_t>(end - begin));
  int64_t pos = begin;
  while (pos < end) {
    const int64_t c = pos / chunk_tokens_;
    const Chunk& ch = chunk(c);
    const int64_t in_chunk = pos - c * chunk_tokens_;
    const int64_t n = std::min(end - pos, static_cast<int64_t>(ch.tokens.size()) - in_chunk);
    std::memcpy(tokens.data() + (pos - begin), ch.tokens.data() + in_chunk,
                static_cast<size_t>(n) * sizeof(int32_t));
    std::memcpy(mask.data() + (pos - begin), ch.mask.data() + in_chunk, static_cast<size_t>(n));
    pos += n;
  }
}

StoreSplit& TokenStore::split(Split s) {
  StoreSplit* p = splits_[static_cast<int>(s)].get();
  if (p == nullptr)
    throw InputError(
        fmt::format("{}: task '{}' has no {} split", path_.string(), info_.task, split_name(s)));
  return *p;
}

const StoreSplit& TokenStore::split(Split s) const {
  return const_cast<TokenStore*>(this)->split(s);
}

std::unique_ptr<TokenStore> TokenStore::open(const fs::path& path,
                                             const std::optional<ContentHash>& expected,
                                             const StoreReadOptions& options) {
  h5::init();
  // Before HDF5 sees the file: HDF5 1.10 can crash on damaged metadata (Note [file seal]).
  if (const h5::SealCheck seal = h5::check_seal(path); !seal.damage.empty())
    throw InputError(fmt::format("{}: token store damaged: {}; delete it and run `pft data prepare`",
                                 path.string(), seal.damage));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(
        fmt::format("{}: not a token store (missing, or not an HDF5 file); delete it "
                    "and run `pft data prepare`",
                    path.string()));
  }
  std::unique_ptr<TokenStore> store(new TokenStore());
  store->path_ = path;
  store->file_ = std::make_unique<FileHandle>();
  StoreInfo& info = store->info_;
  try {
    store->file_->file = h5::File::open(path);
    const h5::File& f = store->file_->file;
    info.version = f.has_attribute("format_version") ? f.read_int_attribute("format_version") : -1;
    if (info.version != kTokenStoreVersion)
      throw StaleStore(
          fmt::format("{}: token store format version {} (this pft reads {}); it is "
                      "rebuilt by `pft data prepare`",
                      path.string(), info.version, kTokenStoreVersion));
    const std::string hex = f.read_string_attribute("content_hash");
    if (!ContentHash::from_hex(hex, &info.hash))
      throw InputError(
          fmt::format("{}: malformed content_hash attribute '{}'", path.string(), hex));
    if (expected && !(*expected == info.hash))
      throw StaleStore(
          fmt::format("{}: token store built from other inputs (content hash {}, "
                      "expected {}); it is rebuilt by `pft data prepare`",
                      path.string(), hex, expected->hex()));
    info.task = f.read_string_attribute("task");
    info.tokenizer = f.read_string_attribute("tokenizer");
    info.seq_len = f.read_int_attribute("seq_len");

    for (int s = 0; s < kNumSplits; ++s) {
      const char* name = split_name(static_cast<Split>(s));
      if (!f.has(name)) continue;
      const h5::Group g = f.open_group(name);
      std::unique_ptr<StoreSplit> sp(new StoreSplit());
      sp->where_ = fmt::format("{}:/{}", path.string(), name);
      sp->num_examples_ = g.read_int_attribute("num_examples");
      const h5::Dataset templates = g.open_dataset("templates");
      const h5::Dataset offsets = g.open_dataset("doc_offsets");
      sp->templates_ = templates.read_all_1d<int32_t>();
      sp->offsets_ = offsets.read_all_1d<int64_t>();
      // Read in full anyway: their checksums cost nothing (verify() checks the rest).
      expect_checksum(templates, sp->where_, "templates",
                      checksum_of(std::span<const int32_t>(sp->templates_)));
      expect_checksum(offsets, sp->where_, "doc_offsets",
                      checksum_of(std::span<const int64_t>(sp->offsets_)));
      const h5::PropList dapl = h5::chunk_cache_access(0);  // whole chunks are cached here
      sp->ds_->tokens = g.open_dataset("tokens", dapl.id());
      sp->ds_->mask = g.open_dataset("loss_mask", dapl.id());
      sp->ds_->template_ids = g.open_dataset("template_ids");
      sp->ds_->example_ids = g.open_dataset("example_ids");
      const auto n_tok = static_cast<int64_t>(sp->ds_->tokens.size_1d());
      // num_examples comes from the file: overflow-checked (a corrupt value is refused below).
      int64_t docs = -1;
      if (sp->num_examples_ < 0 ||
          __builtin_mul_overflow(sp->num_examples_, static_cast<int64_t>(sp->templates_.size()),
                                 &docs))
        docs = -1;
      const bool offsets_ok = !sp->offsets_.empty() && sp->offsets_.front() == 0 &&
                              sp->offsets_.back() == n_tok &&
                              std::is_sorted(sp->offsets_.begin(), sp->offsets_.end());
      if (sp->templates_.empty() || docs < 0 ||
          static_cast<int64_t>(sp->offsets_.size()) != docs + 1 ||
          !offsets_ok || static_cast<int64_t>(sp->ds_->mask.size_1d()) != n_tok)
        throw InputError(fmt::format(
            "{}: inconsistent token store split ({} examples x {} "
            "templates, {} offsets, {} tokens); delete the file and run "
            "`pft data prepare`",
            sp->where_, sp->num_examples_, sp->templates_.size(), sp->offsets_.size(), n_tok));
      const hsize_t chunk = sp->ds_->tokens.chunk_size_1d();
      sp->chunk_tokens_ = chunk > 0 ? static_cast<int64_t>(chunk) : kTokenChunk;
      sp->cache_.resize(static_cast<size_t>(std::max(1, options.cache_chunks)));
      store->splits_[s] = std::move(sp);
    }
  } catch (const h5::Hdf5Error& e) {
    throw InputError(
        fmt::format("{}: cannot read this token store ({}); delete it and run `pft "
                    "data prepare`",
                    path.string(), e.what()));
  }
  return store;
}

void StoreSplit::verify() const {
  try {
    Checksum tokens, mask;
    std::vector<int32_t> t;
    std::vector<uint8_t> m;
    for (int64_t start = 0; start < num_tokens(); start += chunk_tokens_) {
      const int64_t count = std::min(chunk_tokens_, num_tokens() - start);
      t.resize(static_cast<size_t>(count));
      m.resize(static_cast<size_t>(count));
      ds_->tokens.read_1d<int32_t>(static_cast<hsize_t>(start), t);
      ds_->mask.read_1d<uint8_t>(static_cast<hsize_t>(start), m);
      tokens.update(std::span<const int32_t>(t));
      mask.update(std::span<const uint8_t>(m));
    }
    expect_checksum(ds_->tokens, where_, "tokens", tokens.hex());
    expect_checksum(ds_->mask, where_, "loss_mask", mask.hex());
    const std::vector<int32_t> ids = ds_->template_ids.read_all_1d<int32_t>();
    expect_checksum(ds_->template_ids, where_, "template_ids",
                    checksum_of(std::span<const int32_t>(ids)));
    const std::vector<int64_t> examples = ds_->example_ids.read_all_1d<int64_t>();
    expect_checksum(ds_->example_ids, where_, "example_ids",
                    checksum_of(std::span<const int64_t>(examples)));
  } catch (const h5::Hdf5Error& e) {
    throw InputError(fmt::format("{}: cannot read this token store ({}); delete it and run `pft "
                                 "data prepare`",
                                 where_, e.what()));
  }
}

void TokenStore::verify() const {
  for (const auto& s : splits_)
    if (s) s->verify();
}

}  // namespace pft
