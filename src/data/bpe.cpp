// Byte-level BPE merging, the merge-rank table and the per-thread piece cache.
#include "data/bpe.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <queue>

#include "core/error.h"

namespace pft {

// ---- GPT-2 byte <-> unicode mapping ---------------------------------------------------------
namespace {

struct ByteMap {
  char32_t to_unicode[256];
  int16_t from_unicode[324];  // mapped characters are all below U+0144
  ByteMap() : to_unicode(), from_unicode() {
    std::fill(std::begin(from_unicode), std::end(from_unicode), int16_t{-1});
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      to_unicode[b] = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      from_unicode[to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace

char32_t byte_to_unicode(uint8_t byte) { return byte_map().to_unicode[byte]; }

int byte_from_unicode(char32_t c) { return c < 324 ? byte_map().from_unicode[c] : -1; }

std::string bytes_to_token_text(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(byte_to_unicode(b), out);
  return out;
}

bool token_text_to_bytes(std::string_view text, std::string* bytes) {
  bytes->clear();
  // Mapped characters are U+0021..U+0143: one or two UTF-8 bytes.
  for (size_t i = 0; i < text.size();) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    char32_t c;
    if (b0 < 0x80) {
      c = b0;
      i += 1;
    } else if ((b0 & 0xE0) == 0xC0 && i + 1 < text.size() &&
               (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80) {
      c = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;
    }
    const int byte = byte_from_unicode(c);
    if (byte < 0) return false;
    bytes->push_back(static_cast<char>(byte));
  }
  return true;
}

// ---- Piece cache --------------------------------------------------------------------------
// Note [piece cache]: text repeats its words, so most pieces were merged before. Each thread
// keeps, per encoder (up to kCachesPerThread encoders, least recently used replaced), an
// open-addressing table from the piece's bytes (hashed with XXH3) to its ids, the bytes and ids
// in two arenas. A thread-local cache needs no lock and makes every const call thread-safe.
// When the table is full it is dropped whole: cheap, and a working set of common pieces refills
// it in a few kilobytes of text. Pieces over kMaxCachedPieceBytes are rare and not cached.
class BytePairEncoder::PieceCache {
 public:
  static constexpr uint32_t kInitialSlots = 1u << 14;
  static constexpr uint32_t kMaxSlots = 1u << 18;

  PieceCache() { reset(kInitialSlots); }

  uint64_t owner = 0;
  uint64_t last_use = 0;

  // The cached ids of `piece`, or false.
  bool find(uint64_t hash, std::string_view piece, const int32_t** ids, uint32_t* count) const {
    for (uint32_t i = static_cast<uint32_t>(hash) & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.key_len == 0) return false;
      if (slot.hash == hash && slot.key_len == piece.size() &&
          std::memcmp(keys_.data() + slot.key_offset, piece.data(), piece.size()) == 0) {
        *ids = values_.data() + slot.value_offset;
        *count = slot.value_len;
        return true;
      }
    }
  }

  void insert(uint64_t hash, std::string_view piece, const int32_t* ids, uint32_t count) {
    if (2 * (count_ + 1) > slots_.size()) {
      if (slots_.size() < kMaxSlots) {
        grow();
      } else {
        reset(static_cast<uint32_t>(slots_.size()));
      }
    }
    uint32_t i = static_cast<uint32_t>(hash) & mask_;
    while (slots_[i].key_len != 0) i = (i + 1) & mask_;
    slots_[i] =
        Slot{hash, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(values_.size()),
             static_cast<uint16_t>(piece.size()), static_cast<uint16_t>(count)};
    keys_.append(piece);
    values_.insert(values_.end(), ids, ids + count);
    ++count_;
  }

  void reset(uint32_t slots) {
    slots_.assign(slots, Slot{});
    mask_ = slots - 1;
    keys_.clear();
    values_.clear();
    count_ = 0;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_offset = 0;
    uint32_t value_offset = 0;
    uint16_t key_len = 0;  // 0: free (pieces are never empty)
    uint16_t value_len = 0;
  };

  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Slot{});
    mask_ = static_cast<uint32_t>(slots_.size()) - 1;
    for (const Slot& slot : old) {
      if (slot.key_len == 0) continue;
      uint32_t i = static_cast<uint32_t>(slot.hash) & mask_;
      while (slots_[i].key_len != 0) i = (i + 1) & mask_;
      slots_[i] = slot;
    }
  }

  std::vector<Slot> slots_;
  uint32_t mask_ = 0;
  uint32_t count_ = 0;
  std::string keys_;
  std::vector<int32_t> values_;
};

namespace {
constexpr size_t kCachesPerThread = 4;
std::atomic<uint64_t> next_cache_owner{1};

struct ThreadCaches {
  std::unique_ptr<BytePairEncoder::PieceCache> caches[kCachesPerThread];
  uint64_t clock = 0;
};
thread_local ThreadCaches thread_caches;
}  // namespace

BytePairEncoder::PieceCache& BytePairEncoder::thread_cache() const {
  ThreadCaches& tc = thread_caches;
  ++tc.clock;
  PieceCache* victim = nullptr;
  for (auto& cache : tc.caches) {
    if (!cache) cache = std::make_unique<PieceCache>();
    if (cache->owner == cache_owner_) {
      cache->last_use = tc.clock;
      return *cache;
    }
    if (victim == nullptr || cache->last_use < victim->last_use) victim = cache.get();
  }
  victim->reset(PieceCache::kInitialSlots);
  victim->owner = cache_owner_;
  victim->last_use = tc.clock;
  return *victim;
}

// ---- The encoder ----------------------------------------------------------------------------
namespace {
constexpr uint64_t kEmptyKey = ~uint64_t{0};
inline uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}
inline uint64_t mix(uint64_t key) { return key * 0x9E3779B97F4A7C15ull; }
}  // namespace

BytePairEncoder::BytePairEncoder(std::vector<std::string> token_bytes, ByteSymbols bytes,
                                 const std::vector<MergeRule>& merges, bool ignore_merges)
    : token_bytes_(std::move(token_bytes)),
      bytes_(std::move(bytes)),
      all_bytes_(
          std::none_of(bytes_.id.begin(), bytes_.id.end(), [](int32_t id) { return id < 0; })),
      ignore_merges_(ignore_merges),
      cache_owner_(next_cache_owner.fetch_add(1)) {
  uint32_t bits = 4;
  while ((size_t{1} << bits) < 2 * merges.size() + 2) ++bits;
  merge_slots_.assign(size_t{1} << bits, MergeSlot{kEmptyKey, kNoRank, -1});
  merge_shift_ = 64 - bits;
  const size_t mask = merge_slots_.size() - 1;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const MergeRule& m = merges[rank];
    const uint64_t key = pair_key(m.left, m.right);
    size_t i = mix(key) >> merge_shift_;
    while (merge_slots_[i].key != kEmptyKey && merge_slots_[i].key != key) i = (i + 1) & mask;
    // A repeated pair takes the later rank, as HF's merge map (a collected HashMap) does.
    merge_slots_[i] = MergeSlot{key, static_cast<int32_t>(rank), m.result};
  }
  if (ignore_merges_) {
    id_of_bytes_.reserve(token_bytes_.size());
    for (size_t id = 0; id < token_bytes_.size(); ++id) {
      if (!token_bytes_[id].empty())
        id_of_bytes_.emplace(token_bytes_[id], static_cast<int32_t>(id));
    }
  }
}

BytePairEncoder::~BytePairEncoder() = default;

BytePairEncoder::RankResult BytePairEncoder::lookup_merge(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  const size_t mask = merge_slots_.size() - 1;
  for (size_t i = mix(key) >> merge_shift_;; i = (i + 1) & mask) {
    const MergeSlot& slot = merge_slots_[i];
    if (slot.key == key) return {slot.rank, slot.result};
    if (slot.key == kEmptyKey) return {kNoRank, -1};
  }
}

void BytePairEncoder::encode_piece(std::string_view piece, PieceCache& cache,
                                   std::vector<int32_t>& out) const {
  if (piece.size() == 1 && bytes_.id[static_cast<unsigned char>(piece[0])] >= 0) {
    out.push_back(bytes_.id[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (piece.size() > kMaxCachedPieceBytes) {
    encode_piece_uncached(piece, out);
    return;
  }
  const uint64_t hash = XXH3_64bits(piece.data(), piece.size());
  const int32_t* ids;
  uint32_t count;
  if (cache.find(hash, piece, &ids, &count)) {
    out.insert(out.end(), ids, ids + count);
    return;
  }
  const size_t before = out.size();
  encode_piece_uncached(piece, out);
  cache.insert(hash, piece, out.data() + before, static_cast<uint32_t>(out.size() - before));
}

void BytePairEncoder::encode_piece_uncached(std::string_view piece,
                                            std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = id_of_bytes_.find(std::string(piece));
    if (it != id_of_bytes_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const size_t n = piece.size();
  if (!all_bytes_) {
    thread_local std::vector<int32_t> ids;  // the merges below never come back here
    ids.clear();
    initial_symbols(piece, ids);
    if (ids.size() <= kHeapThreshold) {
      merge_linear(ids.data(), ids.size(), out);
    } else {
      merge_heap(ids.data(), ids.size(), out);
    }
  } else if (n == 1) {
    out.push_back(bytes_.id[static_cast<unsigned char>(piece[0])]);
  } else if (n <= kHeapThreshold) {
    int32_t ids[kHeapThreshold];
    for (size_t i = 0; i < n; ++i) ids[i] = bytes_.id[static_cast<unsigned char>(piece[i])];
    merge_linear(ids, n, out);
  } else {
    std::vector<int32_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = bytes_.id[static_cast<unsigned char>(piece[i])];
    merge_heap(ids.data(), n, out);
  }
}

// HF's BPE::merge_word over the piece's bytes (Note [missing bytes]).
void BytePairEncoder::initial_symbols(std::string_view piece, std::vector<int32_t>& ids) const {
  ids.reserve(piece.size());
  bool unk_pending = false;
  for (unsigned char b : piece) {
    if (const int32_t id = bytes_.id[b]; id >= 0) {
      if (unk_pending) ids.push_back(bytes_.unk_id);
      unk_pending = false;
      ids.push_back(id);
    } else if (!bytes_.fallback[b].empty()) {
      ids.insert(ids.end(), bytes_.fallback[b].begin(), bytes_.fallback[b].end());
    } else if (bytes_.unk_id >= 0) {
      if (unk_pending && !bytes_.fuse_unk) ids.push_back(bytes_.unk_id);
      unk_pending = true;
    }
  }
  if (unk_pending) ids.push_back(bytes_.unk_id);
}

// Short pieces: keep the ids and the rank of each adjacent pair in arrays; merge the lowest
// rank (leftmost on ties), update the two pairs around it, repeat. O(n^2) worst case, but
// tiny n and no allocation.
void BytePairEncoder::merge_linear(int32_t* ids, size_t n, std::vector<int32_t>& out) const {
  RankResult pairs[kHeapThreshold];  // pairs[i]: merge of (ids[i], ids[i + 1])
  for (size_t i = 0; i + 1 < n; ++i) pairs[i] = lookup_merge(ids[i], ids[i + 1]);
  size_t m = n;
  while (m > 1) {
    int32_t best_rank = kNoRank;
    size_t best = 0;
    for (size_t i = 0; i + 1 < m; ++i) {
      if (pairs[i].rank < best_rank) {
        best_rank = pairs[i].rank;
        best = i;
      }
    }
    if (best_rank == kNoRank) break;
    ids[best] = pairs[best].result;
    // Drop ids[best + 1] and pairs[best + 1]; pairs[best] is recomputed below.
    std::memmove(ids + best + 1, ids + best + 2, (m - best - 2) * sizeof(int32_t));
    if (best + 2 < m) {
      std::memmove(pairs + best + 1, pairs + best + 2, (m - best - 2) * sizeof(RankResult));
    }
    --m;
    if (best > 0) pairs[best - 1] = lookup_merge(ids[best - 1], ids[best]);
    if (best + 1 < m) pairs[best] = lookup_merge(ids[best], ids[best + 1]);
  }
  out.insert(out.end(), ids, ids + m);
}

// Long pieces: a doubly linked list of symbols and a min-heap of candidate merges ordered by
// (rank, position); entries made stale by an earlier merge are recognised and skipped, as in
// HF's Word::merge_all. O(n log n).
void BytePairEncoder::merge_heap(const int32_t* ids, size_t n, std::vector<int32_t>& out) const {
  if (n == 0) return;
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t left;
    int32_t right;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Symbol> symbols(n);
  for (size_t i = 0; i < n; ++i) {
    symbols[i] =
        Symbol{ids[i], static_cast<int32_t>(i) - 1, i + 1 < n ? static_cast<int32_t>(i + 1) : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    const RankResult rr = lookup_merge(symbols[pos].id, symbols[next].id);
    if (rr.rank != kNoRank) heap.push(Candidate{rr.rank, pos, symbols[pos].id, symbols[next].id});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  std::vector<bool> removed(n, false);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    if (removed[top.pos]) continue;
    const int32_t next = symbols[top.pos].next;
    if (next < 0 || symbols[top.pos].id != top.left || symbols[next].id != top.right) continue;
    symbols[top.pos].id = lookup_merge(top.left, top.right).result;
    removed[next] = true;
    symbols[top.pos].next = symbols[next].next;
    if (symbols[next].next >= 0) symbols[symbols[next].next].prev = top.pos;
    if (symbols[top.pos].prev >= 0) push(symbols[top.pos].prev);
    push(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace pft
