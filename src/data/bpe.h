// Byte-level byte-pair encoding of one pre-tokenized piece, as Hugging Face's BPE model does it.
//
// A piece's bytes start as one token each (the vocab entry of the byte's GPT-2 character,
// byte_to_unicode below); then, repeatedly, the adjacent pair with the lowest merge rank is
// replaced by its merged token (the leftmost one when the same pair occurs twice), until no
// adjacent pair has a merge. With `ignore_merges` (Llama-3 files), a piece that is itself a
// vocab entry is emitted whole first. Duplicate merge lines keep the last rank, as HF does.
// A byte the vocab has no symbol for starts as HF's BPE model makes it: byte-fallback tokens,
// the unknown token, or nothing (Note [missing bytes]).
//
// Speed: merge ranks live in an open-addressing table keyed by the id pair; short pieces merge
// by linear scan, long ones (> kHeapThreshold symbols) with a heap, so no piece is quadratic;
// results are memoised per thread in a piece cache (Note [piece cache]).
//
// Thread-safety: const member functions may be called from any number of threads at once;
// each thread has its own cache.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pft {

// GPT-2's byte <-> printable character mapping: the printable Latin-1 bytes ('!'..'~',
// '¡'..'¬', '®'..'ÿ') stand for themselves, the other 68 bytes for U+0100.. in byte order.
char32_t byte_to_unicode(uint8_t byte);
// The byte a mapped character stands for, or -1 for a character outside the mapping.
int byte_from_unicode(char32_t c);
// UTF-8 text of a token as vocab files write it ("Ġworld") for raw bytes (" world").
std::string bytes_to_token_text(std::string_view bytes);
// The raw bytes a vocab string stands for; false if some character is not in the mapping.
bool token_text_to_bytes(std::string_view token_text, std::string* bytes);

// A merge rule resolved to ids: left + right -> result, rank = line order in the merges list.
struct MergeRule {
  int32_t left;
  int32_t right;
  int32_t result;
};

// Note [missing bytes]: a byte-level vocab need not have a symbol for each of the 256 bytes
// (SmolLM/SmolLM2 lack 21: some control characters and bytes rare in UTF-8). Hugging Face's
// BPE::merge_word builds a word's symbols character by character -- here byte by byte, each
// byte being one mapped character -- and for a character without a vocab entry:
//   1. with byte_fallback, if the vocab has "<0xXY>" for every UTF-8 byte of the *mapped*
//      character (e.g. "<0xC4>" "<0x80>" for U+0100, the mapping of byte 0x00), those tokens;
//   2. else with an unk_token, the unknown token; with fuse_unk, unknowns with no known
//      character between them (byte-fallback tokens do not separate them) become one;
//   3. else nothing: the byte is dropped, and its neighbours become adjacent.
// A pending unknown token is emitted before the next known character or at the end of the
// piece, so byte-fallback tokens can come before an unknown token that preceded them in the
// text -- HF's order, kept. The merges then run over these symbols as over any others.
struct ByteSymbols {
  std::array<int32_t, 256> id;                     // the byte's symbol, or -1 if the vocab has none
  std::array<std::vector<int32_t>, 256> fallback;  // step 1's tokens for a byte without a symbol
  int32_t unk_id = -1;                             // step 2's token; -1: none
  bool fuse_unk = false;
};

class BytePairEncoder {
 public:
  static constexpr size_t kHeapThreshold = 128;
  // Pieces longer than this are encoded every time rather than cached.
  static constexpr size_t kMaxCachedPieceBytes = 256;

  // `token_bytes[id]` is the raw bytes of token id (empty for ids with no token);
  // `bytes` what each byte starts as; `merges` in rank order.
  BytePairEncoder(std::vector<std::string> token_bytes, ByteSymbols bytes,
                  const std::vector<MergeRule>& merges, bool ignore_merges);
  ~BytePairEncoder();
  BytePairEncoder(const BytePairEncoder&) = delete;
  BytePairEncoder& operator=(const BytePairEncoder&) = delete;

  // This thread's memo of piece -> ids for this encoder (Note [piece cache]). Fetch it once
  // per text, not per piece; use it only on the thread that fetched it.
  class PieceCache;
  PieceCache& thread_cache() const;

  // Appends the ids of `piece` (raw bytes, non-empty) to `out`.
  void encode_piece(std::string_view piece, PieceCache& cache, std::vector<int32_t>& out) const;

  // The same without the cache (tests compare the two).
  void encode_piece_uncached(std::string_view piece, std::vector<int32_t>& out) const;

  const std::string& token_bytes(int32_t id) const { return token_bytes_[id]; }
  int32_t num_ids() const { return static_cast<int32_t>(token_bytes_.size()); }

 private:
  static constexpr int32_t kNoRank = INT32_MAX;

  // (rank, result) of the merge of (left, right), or rank kNoRank.
  struct RankResult {
    int32_t rank;
    int32_t result;
  };
  RankResult lookup_merge(int32_t left, int32_t right) const;
  // The symbols `piece` starts as when some byte has no symbol (Note [missing bytes]).
  void initial_symbols(std::string_view piece, std::vector<int32_t>& ids) const;
  // Merge the n symbols in `ids` (overwritten) and append the result to `out`.
  void merge_linear(int32_t* ids, size_t n, std::vector<int32_t>& out) const;
  void merge_heap(const int32_t* ids, size_t n, std::vector<int32_t>& out) const;

  std::vector<std::string> token_bytes_;
  ByteSymbols bytes_;
  bool all_bytes_;  // every byte has a symbol: the fast path
  bool ignore_merges_;
  std::unordered_map<std::string, int32_t> id_of_bytes_;  // for ignore_merges

  // Open addressing, linear probing; key (left << 32 | right), kEmptyKey where free.
  struct MergeSlot {
    uint64_t key;
    int32_t rank;
    int32_t result;
  };
  std::vector<MergeSlot> merge_slots_;
  uint32_t merge_shift_ = 64;

  uint64_t cache_owner_;  // unique per encoder: tells a thread's cache whose results it holds
};

}  // namespace pft
