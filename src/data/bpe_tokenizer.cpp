// Byte-level BPE tokenizer: added-token matching, the encode loop, decoding.
#include "data/bpe_tokenizer.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/format.h"
#include "data/utf8.h"

namespace pft {

// Note [added tokens]: Hugging Face cuts added tokens out of the text before anything else,
// with an Aho-Corasick automaton in leftmost-longest mode: the match starting earliest wins,
// the longest among those, and the search goes on after it. Tokens with normalized=false are
// matched on the raw text first, then those with normalized=true on what is left (with no
// normalizer the two passes differ only in that order). A match of a special token is dropped
// when specials are not wanted (HF's encode_special_tokens=true), leaving that text to be
// encoded as ordinary text. lstrip widens a match over the whitespace before it (never into
// the previous match), rstrip over the whitespace after it -- but the search goes on from the
// end of the match proper, so another added token inside that whitespace is matched too, and
// the text after it is encoded from its end (HF's AddedVocabulary::find_matches; odd, but the
// parity test pins it).
class BpeTokenizer::AddedTokenSet {
 public:
  explicit AddedTokenSet(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
    // Grouped by first byte, longest first, so the first hit at a position is the longest.
    std::sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
      const auto fa = static_cast<unsigned char>(a.content[0]);
      const auto fb = static_cast<unsigned char>(b.content[0]);
      return fa != fb ? fa < fb : a.content.size() > b.content.size();
    });
    first_.fill(0);
    for (const AddedToken& t : tokens_) ++first_[static_cast<unsigned char>(t.content[0]) + 1];
    for (size_t i = 1; i < first_.size(); ++i) first_[i] += first_[i - 1];
  }

  bool empty() const { return tokens_.empty(); }

  // The leftmost-longest match in text[from, ...): its start and token, or nullptr.
  const AddedToken* find(std::string_view text, size_t from, size_t* start) const {
    for (size_t i = from; i < text.size(); ++i) {
      const auto b = static_cast<unsigned char>(text[i]);
      for (uint32_t k = first_[b]; k < first_[b + 1]; ++k) {
        const std::string& c = tokens_[k].content;
        if (c.size() <= text.size() - i && std::memcmp(text.data() + i, c.data(), c.size()) == 0) {
          *start = i;
          return &tokens_[k];
        }
      }
    }
    return nullptr;
  }

 private:
  std::vector<AddedToken> tokens_;
  std::array<uint32_t, 257> first_;  // tokens_[first_[b], first_[b + 1]) start with byte b
};

namespace {

bool is_space_at(std::string_view s, size_t i, size_t* len) {
  const utf8::Char c =
      utf8::decode_char(reinterpret_cast<const unsigned char*>(s.data()), i, s.size());
  *len = c.len;
  return c.cls == unicode::CharClass::kSpace;
}

// Start of the run of whitespace that ends text[begin, end).
size_t whitespace_run_start(std::string_view text, size_t begin, size_t end) {
  // Walk forward (UTF-8 cannot be decoded backwards safely when it may be invalid).
  size_t run_start = end;
  for (size_t i = begin; i < end;) {
    size_t len;
    const bool space = is_space_at(text, i, &len);
    if (!space) {
      run_start = end;
    } else if (run_start == end) {
      run_start = i;
    }
    i += len;
  }
  return run_start;
}

size_t whitespace_run_end(std::string_view text, size_t begin) {
  size_t i = begin;
  size_t len;
  while (i < text.size() && is_space_at(text, i, &len)) i += len;
  return i;
}

}  // namespace

BpeTokenizer::BpeTokenizer(BpeTokenizerConfig config)
    : source_(std::move(config.source)),
      pre_tokenizer_(std::move(config.pre_tokenizer)),
      eos_id_(config.eos_id),
      pad_id_(config.pad_id) {
  const size_t num_vocab = config.vocab.size();
  int32_t max_id = static_cast<int32_t>(num_vocab) - 1;
  for (const AddedToken& t : config.added_tokens) max_id = std::max(max_id, t.id);
  vocab_size_ = max_id + 1;

  // Model vocab: the mapped form decodes through GPT-2's byte mapping, else (as HF's ByteLevel
  // decoder) as its own UTF-8 text; only the former can come out of merging bytes.
  std::vector<std::string> model_bytes(num_vocab);
  token_text_.assign(vocab_size_, std::string());
  decode_bytes_.assign(vocab_size_, std::string());
  std::string bytes;
  for (size_t id = 0; id < num_vocab; ++id) {
    const std::string& text = config.vocab[id];
    if (text.empty()) continue;
    token_text_[id] = text;
    id_of_text_.emplace(text, static_cast<int32_t>(id));
    if (token_text_to_bytes(text, &bytes)) {
      model_bytes[id] = bytes;
      decode_bytes_[id] = bytes;
    } else {
      decode_bytes_[id] = text;
    }
  }
  // Each byte's symbol, or what stands for it when the vocab has none (Note [missing bytes]).
  ByteSymbols byte_symbols;
  if (config.unk_id) {
    const int32_t unk = *config.unk_id;
    if (unk < 0 || static_cast<size_t>(unk) >= num_vocab || config.vocab[unk].empty()) {
      throw InputError(fmt::format(
          "{}: the unknown token id {} is not a token of the vocab ({} entries); Hugging Face "
          "looks the unk_token up in the model's vocab, so the file is inconsistent",
          source_, unk, num_vocab));
    }
    byte_symbols.unk_id = unk;
    unk_id_ = unk;
  }
  byte_symbols.fuse_unk = config.fuse_unk;
  for (int b = 0; b < 256; ++b) {
    const std::string text = bytes_to_token_text(std::string(1, static_cast<char>(b)));
    auto it = id_of_text_.find(text);
    byte_symbols.id[b] = it == id_of_text_.end() ? -1 : it->second;
    if (byte_symbols.id[b] >= 0) continue;
    ++missing_bytes_;
    if (!config.byte_fallback) continue;
    std::vector<int32_t> fallback;
    for (unsigned char c : text) {
      auto f = id_of_text_.find(fmt::format("<0x{:02X}>", c));
      if (f == id_of_text_.end()) break;
      fallback.push_back(f->second);
    }
    if (fallback.size() == text.size()) byte_symbols.fallback[b] = std::move(fallback);
  }
  encoder_ = std::make_unique<BytePairEncoder>(std::move(model_bytes), std::move(byte_symbols),
                                               config.merges, config.ignore_merges);

  // Added tokens: literal content, looked up before the model vocab (as HF does).
  std::vector<AddedToken> by_pass[2];
  for (AddedToken& t : config.added_tokens) {
    token_text_[t.id] = t.content;
    decode_bytes_[t.id] = t.content;
    id_of_text_[t.content] = t.id;
    if (!t.special) has_nonspecial_added_ = true;
    by_pass[t.normalized ? 1 : 0].push_back(std::move(t));
  }
  for (int pass = 0; pass < 2; ++pass) {
    added_[pass] = std::make_unique<AddedTokenSet>(std::move(by_pass[pass]));
  }
}

BpeTokenizer::~BpeTokenizer() = default;

void BpeTokenizer::encode_append(std::string_view text, bool with_specials,
                                 std::vector<int32_t>& out) const {
  if (with_specials || has_nonspecial_added_) {
    encode_added(text, 0, with_specials, out);
  } else {
    encode_segment(text, out);
  }
}

void BpeTokenizer::encode_added(std::string_view text, int pass, bool with_specials,
                                std::vector<int32_t>& out) const {
  auto encode_gap = [&](std::string_view gap) {
    if (pass == 0) {
      encode_added(gap, 1, with_specials, out);
    } else {
      encode_segment(gap, out);
    }
  };
  const AddedTokenSet& set = *added_[pass];
  if (set.empty()) {
    encode_gap(text);
    return;
  }
  size_t done = 0;    // end of the last emitted match, rstrip included
  size_t search = 0;  // where the automaton goes on: the end of its last match, rstrip excluded
  size_t start;
  while (const AddedToken* token = set.find(text, search, &start)) {
    size_t stop = start + token->content.size();
    search = stop;
    if (token->special && !with_specials) continue;
    if (token->lstrip) start = std::max(whitespace_run_start(text, done, start), done);
    if (token->rstrip) stop = whitespace_run_end(text, stop);
    if (done < start) encode_gap(text.substr(done, start - done));
    out.push_back(token->id);
    // A match inside the whitespace an rstrip took is still emitted, and text after it is
    // encoded again from its end: exactly what HF does (see the note above).
    done = stop;
  }
  if (done < text.size()) encode_gap(text.substr(done));
}

void BpeTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  BytePairEncoder::PieceCache& cache = encoder_->thread_cache();
  SplitRule rule;
  if (pre_tokenizer_.is_single_split(&rule)) {
    thread_local std::vector<uint32_t> ends;
    ends.clear();
    split_pieces(rule, text, ends);
    uint32_t begin = 0;
    for (uint32_t end : ends) {
      encoder_->encode_piece(text.substr(begin, end - begin), cache, out);
      begin = end;
    }
    return;
  }
  thread_local PreTokenizerScratch scratch;
  thread_local std::vector<std::string_view> pieces;
  pre_tokenizer_.run(text, scratch, pieces);
  for (std::string_view piece : pieces) encoder_->encode_piece(piece, cache, out);
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string text;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) {
      throw InputError(
          fmt::format("decode: token id {} is outside this tokenizer's vocab "
                      "[0, {}) ({}); were the ids made by another tokenizer?",
                      id, vocab_size_, source_));
    }
    text += decode_bytes_[id];
  }
  return text;
}

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view token) const {
  auto it = id_of_text_.find(std::string(token));
  if (it == id_of_text_.end()) return std::nullopt;
  return it->second;
}

std::string BpeTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size_) {
    throw InputError(
        fmt::format("id_to_token: token id {} is outside this tokenizer's vocab "
                    "[0, {}) ({})",
                    id, vocab_size_, source_));
  }
  return token_text_[id];
}

std::string BpeTokenizer::describe() const {
  std::string missing;
  if (missing_bytes_ > 0) {
    missing = fmt::format("; {} of 256 bytes have no symbol and encode to {}", missing_bytes_,
                          unk_id_ ? fmt::format("unk {} ({})", *unk_id_, token_text_[*unk_id_])
                                  : std::string("nothing"));
  }
  return fmt::format("byte-level BPE ({} ids, eos {}{}) from {}", vocab_size_, eos_id_, missing,
                     source_);
}

}  // namespace pft
