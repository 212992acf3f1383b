// Tokenizer unit tests: known GPT-2 encodings, round trips, the byte tokenizer, invalid UTF-8,
// the pre-tokenizer scanners, small hand-written tokenizer.json files, tokenizer.json files pft
// writes (data/hf_tokenizer_json.h) read back, and error reporting.
// Parity with Hugging Face on >= 10,000 strings is tests/reference/tokenizer_parity.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/format.h"
#include "data/bpe.h"
#include "data/bpe_tokenizer.h"
#include "data/hf_tokenizer_json.h"
#include "data/pretokenizer.h"
#include "data/tokenizer.h"
#include "data/tokenizer_files.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

// The bundled GPT-2 files (datasets/tokenizers/gpt2/README.md).
const std::string kGpt2Dir = std::string(PFT_SOURCE_ROOT) + "/datasets/tokenizers/gpt2";

const Tokenizer& gpt2() {
  static const std::unique_ptr<Tokenizer> tok = load_tokenizer(kGpt2Dir);
  return *tok;
}

// A fresh temporary directory per test, removed at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            fmt::format("pft_tokenizer_test_{}_{}_{}", info->name(), ::getpid(), counter_++);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name, const std::string& content) const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// Expects `fn` to throw InputError whose message contains every one of `parts`.
template <class Fn>
void expect_input_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no InputError thrown";
  } catch (const InputError& e) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << part << "\"";
    }
  }
}

std::vector<std::string> pieces_of(SplitRule rule, std::string_view text) {
  std::vector<uint32_t> ends;
  split_pieces(rule, text, ends);
  std::vector<std::string> out;
  uint32_t begin = 0;
  for (uint32_t end : ends) {
    out.emplace_back(text.substr(begin, end - begin));
    begin = end;
  }
  return out;
}

using Pieces = std::vector<std::string>;

// ---- GPT-2 ----------------------------------------------------------------------------------

TEST(TokenizerGpt2, KnownEncodings) {
  const Tokenizer& tok = gpt2();
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok.encode_with_specials("<|endoftext|>"), (std::vector<int32_t>{50256}));
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.eos_id(), 50256);
  EXPECT_EQ(tok.token_to_id("Ġworld"), 995);
  EXPECT_EQ(tok.id_to_token(995), "Ġworld");
  EXPECT_EQ(tok.decode(std::vector<int32_t>{15496, 995}), "Hello world");
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(TokenizerGpt2, SpecialsOnlyWhenAsked) {
  const Tokenizer& tok = gpt2();
  const std::string text = "a<|endoftext|>b";
  const auto plain = tok.encode(text);
  const auto special = tok.encode_with_specials(text);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  ASSERT_EQ(special.size(), 3u);
  EXPECT_EQ(special[1], 50256);
  EXPECT_EQ(tok.decode(plain), text);
  EXPECT_EQ(tok.decode(special), text);
}

TEST(TokenizerGpt2, HuggingFaceFileNames) {
  TempDir dir;
  fs::copy_file(kGpt2Dir + "/encoder.json", dir.path() / "vocab.json");
  fs::copy_file(kGpt2Dir + "/vocab.bpe", dir.path() / "merges.txt");
  const auto tok = load_tokenizer(dir.path().string());
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok->eos_id(), 50256);
}

TEST(TokenizerGpt2, RoundTripAndCacheConsistency) {
  const Tokenizer& tok = gpt2();
  const std::vector<std::string> texts = {
      "The quick brown fox jumps over the lazy dog.",
      "  leading and trailing spaces  ",
      "tabs\tand\nnewlines\r\n\r\n  end",
      "I'm sure they'll say it's what we've done, isn't it? I'd",
      "Numbers 1234567890 and 3.14159, ١٢٣٤ and ⅷ",
      "Ünïcödé: Здравствуй мир, こんにちは世界, 안녕하세요, مرحبا, שלום, नमस्ते",
      "emoji 👍🏽 👨‍👩‍👧‍👦 🇯🇵 ✨",
      std::string(1000, 'a') + " " + std::string(300, ' ') + "x" + std::string(500, '!'),
      std::string("nul\0byte", 8),
  };
  for (const std::string& text : texts) {
    const auto first = tok.encode(text);
    EXPECT_EQ(tok.decode(first), text);
    EXPECT_EQ(tok.encode(text), first) << "second (cached) encoding differs for: " << text;
  }
  // Random bytes, valid or not, always round trip.
  std::mt19937 rng(1234);
  for (int i = 0; i < 200; ++i) {
    std::string text(rng() % 64, '\0');
    for (char& c : text) c = static_cast<char>(rng() & 0xFF);
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
    EXPECT_EQ(tok.decode(tok.encode_with_specials(text)), text);
  }
}

TEST(TokenizerGpt2, LongPiecesUseTheHeapMergeConsistently) {
  // A piece over BytePairEncoder::kHeapThreshold bytes merges with the heap; the same word
  // split in two by a space must give the same tokens as the two halves alone.
  const Tokenizer& tok = gpt2();
  std::string word;
  for (int i = 0; i < 60; ++i) word += "abc";  // 180 bytes, one piece
  const auto ids = tok.encode(word);
  EXPECT_EQ(tok.decode(ids), word);
  EXPECT_LT(ids.size(), word.size() / 2);
}

TEST(TokenizerGpt2, ThreadsShareOneTokenizer) {
  // Each thread has its own piece cache: concurrent encodes must agree with a serial one.
  const Tokenizer& tok = gpt2();
  std::vector<std::string> texts;
  std::mt19937 rng(7);
  for (int i = 0; i < 64; ++i) {
    std::string t;
    for (int w = 0; w < 200; ++w) t += fmt::format("w{}x{} ", rng() % 5000, rng() % 7);
    texts.push_back(t);
  }
  std::vector<std::vector<int32_t>> serial;
  for (const auto& t : texts) serial.push_back(tok.encode(t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (size_t i = 0; i < texts.size(); ++i) {
        const size_t j = (i * 7 + k) % texts.size();
        if (tok.encode(texts[j]) != serial[j]) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TokenizerGpt2, CacheEvictionKeepsResults) {
  // More tokenizers than a thread keeps caches for, and more distinct pieces than one cache
  // holds: results must not change when caches are dropped and refilled.
  std::vector<std::unique_ptr<Tokenizer>> toks;
  for (int i = 0; i < 6; ++i) toks.push_back(load_tokenizer(kGpt2Dir));
  std::string text;
  std::mt19937 rng(99);
  for (int w = 0; w < 300000; ++w) {
    text += ' ';
    for (int c = 0, n = 3 + static_cast<int>(rng() % 5); c < n; ++c)
      text += static_cast<char>('a' + rng() % 26);
  }
  const auto first = toks[0]->encode(text);
  EXPECT_EQ(toks[0]->decode(first), text);
  for (int round = 0; round < 2; ++round) {
    for (const auto& tok : toks)
      EXPECT_EQ(tok->encode(text.substr(0, 2000)), toks[0]->encode(text.substr(0, 2000)));
  }
  EXPECT_EQ(toks[0]->encode(text), first);
}

// ---- Invalid UTF-8 (Note [invalid UTF-8] in data/pretokenizer.h) ----------------------------

TEST(TokenizerInvalidUtf8, EachBadByteIsOneOtherCharacter) {
  // \xff is "other", so it joins the punctuation run and splits the letters.
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "a\xff!b"), (Pieces{"a", "\xff!", "b"}));
  // A truncated 3-byte sequence is two bad bytes; a space before them joins them.
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "x \xe2\x82y"), (Pieces{"x", " \xe2\x82", "y"}));
  // Overlong encodings and surrogates are invalid; a valid sequence after them is kept whole.
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "\xc0\xaf\xed\xa0\x80\xc3\xa9t\xc3\xa9"),
            (Pieces{"\xc0\xaf\xed\xa0\x80", "\xc3\xa9t\xc3\xa9"}));
  EXPECT_EQ(pieces_of(SplitRule::kLlama3, "\xffword 1\xff"),
            (Pieces{"\xffword", " ", "1", "\xff"}));
}

TEST(TokenizerInvalidUtf8, EncodesLikeReplacementCharacterAndRoundTrips) {
  const Tokenizer& tok = gpt2();
  // Same pieces as with U+FFFD in place of the bad byte; the byte itself is its byte token.
  const std::string bad = "caf\xe9 au lait";
  const auto ids = tok.encode(bad);
  EXPECT_EQ(tok.decode(ids), bad);
  // Pieces "caf", "\xe9", " au", " lait": the bad byte is a piece of its own.
  std::vector<int32_t> expected = tok.encode("caf");
  expected.push_back(*tok.token_to_id(bytes_to_token_text("\xe9")));
  for (int32_t id : tok.encode(" au lait")) expected.push_back(id);
  EXPECT_EQ(ids, expected);
}

// ---- Pre-tokenizer scanners -----------------------------------------------------------------

TEST(TokenizerPreTokenize, Gpt2Pattern) {
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "I'm  here's'S"),
            (Pieces{"I", "'m", " ", " here", "'s", "'", "S"}));
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "a \n\tb  "), (Pieces{"a", " \n", "\t", "b", "  "}));
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "x 123abc ?!"), (Pieces{"x", " 123", "abc", " ?!"}));
  EXPECT_EQ(pieces_of(SplitRule::kGpt2, "\u00a0\u3000x"), (Pieces{"\u00a0", "\u3000", "x"}));
}

TEST(TokenizerPreTokenize, Llama3Pattern) {
  EXPECT_EQ(pieces_of(SplitRule::kLlama3, "  \n  x"), (Pieces{"  \n", " ", " x"}));
  EXPECT_EQ(pieces_of(SplitRule::kLlama3, "12345"), (Pieces{"123", "45"}));
  EXPECT_EQ(pieces_of(SplitRule::kQwen2, "123"), (Pieces{"1", "2", "3"}));
  EXPECT_EQ(pieces_of(SplitRule::kLlama3, "'RE 'ſx"), (Pieces{"'RE", " '", "ſx"}));
  EXPECT_EQ(pieces_of(SplitRule::kLlama3, "x'ſx"), (Pieces{"x", "'ſ", "x"}));
  EXPECT_EQ(pieces_of(SplitRule::kLlama3, "\tword ?!\n\nnext"),
            (Pieces{"\tword", " ?!\n\n", "next"}));
  EXPECT_EQ(pieces_of(SplitRule::kLlama3, "\r\n\r\n x"), (Pieces{"\r\n\r\n", " x"}));
}

TEST(TokenizerPreTokenize, Digits) {
  EXPECT_EQ(pieces_of(SplitRule::kDigitsIsolated, "ab12c3"), (Pieces{"ab", "1", "2", "c", "3"}));
  EXPECT_EQ(pieces_of(SplitRule::kDigitsContiguous, "ab12c3"), (Pieces{"ab", "12", "c", "3"}));
}

// ---- The byte tokenizer ---------------------------------------------------------------------

TEST(TokenizerByte, BytesAndSpecials) {
  const auto tok = load_tokenizer("byte");
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(tok->eos_id(), 256);
  EXPECT_EQ(tok->pad_id(), 257);
  EXPECT_EQ(tok->encode("hi\xff"), (std::vector<int32_t>{104, 105, 255}));
  EXPECT_EQ(tok->encode_with_specials("a<|endoftext|><|pad|>"),
            (std::vector<int32_t>{97, 256, 257}));
  EXPECT_EQ(tok->encode("<|pad|>").size(), 7u);
  EXPECT_EQ(tok->decode(std::vector<int32_t>{97, 256, 257}), "a<|endoftext|><|pad|>");
  EXPECT_EQ(tok->id_to_token(32), "Ġ");
  EXPECT_EQ(tok->token_to_id("Ġ"), 32);
  EXPECT_EQ(tok->token_to_id("<|pad|>"), 257);
  EXPECT_THROW(tok->decode(std::vector<int32_t>{258}), InputError);
  EXPECT_THROW(tok->id_to_token(-1), InputError);
}

// ---- Hand-written tokenizer.json files ------------------------------------------------------

// A byte-level tokenizer.json: the 256 byte tokens, then `extra` tokens made by `merges`.
// Bytes in `missing` get no token.
std::string tokenizer_json(const std::vector<std::pair<std::string, std::string>>& merges,
                           const std::string& pre_tokenizer, const std::string& added_tokens,
                           bool ignore_merges, const std::vector<std::string>& extra_vocab = {},
                           const std::vector<int>& missing = {}) {
  std::string vocab;
  int id = 0;
  auto add = [&](const std::string& token) {
    std::string escaped;
    for (char c : token) {
      if (c == '"' || c == '\\') escaped.push_back('\\');
      escaped.push_back(c);
    }
    vocab += fmt::format("{}\"{}\": {}", id ? ", " : "", escaped, id);
    ++id;
  };
  for (int b = 0; b < 256; ++b) {
    if (std::find(missing.begin(), missing.end(), b) != missing.end()) continue;
    add(bytes_to_token_text(std::string(1, static_cast<char>(b))));
  }
  std::string merge_list;
  for (const auto& [l, r] : merges) {
    add(l + r);
    merge_list += fmt::format("{}[\"{}\", \"{}\"]", merge_list.empty() ? "" : ", ", l, r);
  }
  for (const std::string& t : extra_vocab) add(t);
  return fmt::format(R"({{"version": "1.0", "added_tokens": [{}], "normalizer": null,
  "pre_tokenizer": {}, "post_processor": null, "decoder": {{"type": "ByteLevel"}},
  "model": {{"type": "BPE", "dropout": null, "unk_token": null, "ignore_merges": {},
    "vocab": {{{}}}, "merges": [{}]}}}})",
                     added_tokens, pre_tokenizer, ignore_merges ? "true" : "false", vocab,
                     merge_list);
}

const std::string kByteLevelPre =
    R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})";

TEST(TokenizerJson, MergesAndIgnoreMerges) {
  TempDir dir;
  // "ab" is a vocab token reachable only without merges when ignore_merges is set.
  const auto merges = std::vector<std::pair<std::string, std::string>>{{"b", "c"}, {"a", "bc"}};
  const auto without = load_tokenizer(
      dir.file("plain.json", tokenizer_json(merges, kByteLevelPre, "", false, {"ab"})));
  const auto with = load_tokenizer(
      dir.file("ignore.json", tokenizer_json(merges, kByteLevelPre, "", true, {"ab"})));
  EXPECT_EQ(without->encode("abc"), (std::vector<int32_t>{257}));  // a + bc
  EXPECT_EQ(without->encode("ab"), (std::vector<int32_t>{'a', 'b'}));
  EXPECT_EQ(with->encode("ab"), (std::vector<int32_t>{258}));
  EXPECT_EQ(with->vocab_size(), 259);
  EXPECT_EQ(with->eos_id(), -1);
}

TEST(TokenizerJson, AddedTokensLstripRstripAndNonSpecial) {
  TempDir dir;
  const std::string added =
      R"({"id": 256, "content": "<mask>", "single_word": false, "lstrip": true, "rstrip": true,
          "normalized": false, "special": true},
         {"id": 257, "content": "<|tool|>", "single_word": false, "lstrip": false,
          "rstrip": false, "normalized": true, "special": false})";
  const auto tok =
      load_tokenizer(dir.file("t.json", tokenizer_json({}, kByteLevelPre, added, false)));
  EXPECT_EQ(tok->encode_with_specials("a  <mask>  b"), (std::vector<int32_t>{'a', 256, 'b'}));
  // Non-special added tokens are matched by plain encode too; special ones are not.
  EXPECT_EQ(tok->encode("x<|tool|>"), (std::vector<int32_t>{'x', 257}));
  EXPECT_EQ(tok->encode("<mask>").size(), 6u);
  EXPECT_EQ(tok->decode(std::vector<int32_t>{256, 257}), "<mask><|tool|>");
}

TEST(TokenizerJson, SequenceWithLlama3SplitAndDigits) {
  TempDir dir;
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)";
  const std::string pre = fmt::format(
      R"({{"type": "Sequence", "pretokenizers": [
           {{"type": "Split", "pattern": {{"Regex": "{}"}}, "behavior": "Isolated", "invert": false}},
           {{"type": "Digits", "individual_digits": true}},
           {{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}}]}})",
      llama3);
  const auto merges = std::vector<std::pair<std::string, std::string>>{{"1", "2"}};
  const auto tok = load_tokenizer(dir.file("t.json", tokenizer_json(merges, pre, "", false)));
  // The Llama-3 split keeps "123" together, Digits then isolates each digit: no "12" merge.
  EXPECT_EQ(tok->encode("123"), (std::vector<int32_t>{'1', '2', '3'}));
}

TEST(TokenizerJson, AddPrefixSpace) {
  TempDir dir;
  const std::string pre = R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})";
  const auto tok = load_tokenizer(dir.file("t.json", tokenizer_json({}, pre, "", false)));
  EXPECT_EQ(tok->encode("a"), (std::vector<int32_t>{' ', 'a'}));
  EXPECT_EQ(tok->encode(" a"), (std::vector<int32_t>{' ', 'a'}));
}

// ---- Vocabularies without some byte symbols (Note [missing bytes] in data/bpe.h) -------------

// A byte-level config whose vocab lacks the symbols of `missing` (the others numbered in byte
// order, then `extra`), with the merges `merges`.
BpeTokenizerConfig config_missing(const std::vector<int>& missing,
                                  const std::vector<std::string>& extra,
                                  const std::vector<std::pair<std::string, std::string>>& merges) {
  BpeTokenizerConfig config;
  config.source = "test config";
  for (int b = 0; b < 256; ++b) {
    if (std::find(missing.begin(), missing.end(), b) == missing.end()) {
      config.vocab.push_back(bytes_to_token_text(std::string(1, static_cast<char>(b))));
    }
  }
  for (const std::string& t : extra) config.vocab.push_back(t);
  auto id = [&](const std::string& t) {
    return static_cast<int32_t>(std::find(config.vocab.begin(), config.vocab.end(), t) -
                                config.vocab.begin());
  };
  for (const auto& [l, r] : merges) config.merges.push_back({id(l), id(r), id(l + r)});
  config.pre_tokenizer = {{PreTokenizerStep::Kind::kSplit, SplitRule::kGpt2}};
  return config;
}

// ---- tokenizer.json written by pft (data/hf_tokenizer_json.h), read back ----------------------
// Hugging Face reading them is tests/model/hf_export_load_test.cpp; here pft's own reader must
// rebuild the same tokenizer (the same ids on every sample, specials included).

const std::vector<std::string> kRoundTripSamples = {
    "", "Add the two numbers: 12 + 30 = 42.", "  spaces   and\ttabs\nnewlines\r\n",
    "caf\303\251 na\303\257ve \342\234\223 \360\237\230\200", "x<|endoftext|>y<|pad|>",
    "1234567 \302\262\302\263 don't I'll", "<|endoftext|>"};

void expect_same_encoding(const Tokenizer& a, const Tokenizer& b) {
  for (const std::string& s : kRoundTripSamples) {
    EXPECT_EQ(a.encode(s), b.encode(s)) << s;
    EXPECT_EQ(a.encode_with_specials(s), b.encode_with_specials(s)) << s;
  }
}

TEST(TokenizerJsonWritten, ByteTokenizerEncodesAsBytes) {
  TempDir dir;
  const auto written = load_tokenizer(dir.file("byte.json", hf_tokenizer_json(byte_tokenizer_as_bpe())));
  const auto byte = load_tokenizer("byte");
  expect_same_encoding(*written, *byte);
  EXPECT_EQ(written->eos_id(), 256);
  EXPECT_EQ(written->encode("\303\251"), (std::vector<int32_t>{0xC3, 0xA9}));
}

TEST(TokenizerJsonWritten, Gpt2FilesRoundTrip) {
  TempDir dir;
  const BpeTokenizerConfig c = read_gpt2_files(kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
  const auto written = load_tokenizer(dir.file("gpt2.json", hf_tokenizer_json(c)));
  expect_same_encoding(*written, gpt2());
}

TEST(TokenizerJsonWritten, PreTokenizerStepsUnkAndPrefixRoundTrip) {
  TempDir dir;
  BpeTokenizerConfig c = config_missing({0xA9}, {"12", "<unk>", "<s>"}, {{"1", "2"}});
  c.pre_tokenizer = {{PreTokenizerStep::Kind::kSplit, SplitRule::kLlama3},
                     {PreTokenizerStep::Kind::kSplit, SplitRule::kDigitsIsolated},
                     {PreTokenizerStep::Kind::kPrefixSpace, SplitRule::kGpt2},
                     {PreTokenizerStep::Kind::kSplit, SplitRule::kGpt2}};
  c.unk_id = static_cast<int32_t>(c.vocab.size()) - 2;
  c.fuse_unk = true;
  c.added_tokens.push_back({"<s>", static_cast<int32_t>(c.vocab.size()) - 1, /*special=*/true});
  const std::string path = dir.file("t.json", hf_tokenizer_json(c, {c.unk_id.value() + 1}));
  const BpeTokenizerConfig back = read_tokenizer_json(path);
  ASSERT_EQ(back.pre_tokenizer.size(), c.pre_tokenizer.size());
  for (size_t i = 0; i < c.pre_tokenizer.size(); ++i) {
    EXPECT_EQ(back.pre_tokenizer[i].kind, c.pre_tokenizer[i].kind) << i;
    EXPECT_EQ(back.pre_tokenizer[i].rule, c.pre_tokenizer[i].rule) << i;
  }
  EXPECT_EQ(back.unk_id, c.unk_id);
  EXPECT_TRUE(back.fuse_unk);
  const BpeTokenizer original(c), reread(back);
  expect_same_encoding(original, reread);
  // "12" stays apart (Digits after Llama-3), the missing byte of "é" is the unknown token.
  EXPECT_EQ(reread.encode("12"), original.encode("12"));
  const std::vector<int32_t> e_acute = reread.encode("\303\251");
  EXPECT_NE(std::find(e_acute.begin(), e_acute.end(), *c.unk_id), e_acute.end());
}

// The expected ids were computed by `tokenizers` 0.22.1 on the equivalent tokenizer.json
// (vocab: the bytes but 0xC3 and 0xA9, then "ab" 254, "<unk>" 255, "<0xC3>" 256, "<0x83>" 257;
// merge a + b). "é" is C3 A9 ("\303\251"); byte 0xC3 is the mapped character U+00C3, UTF-8
// C3 83.
TEST(TokenizerMissingBytes, EncodeAsHuggingFace) {
  const std::vector<std::string> extra = {"ab", "<unk>", "<0xC3>", "<0x83>"};
  const std::vector<std::pair<std::string, std::string>> merges = {{"a", "b"}};
  struct Case {
    bool unk, fuse, fallback;
    std::vector<int32_t> aeb, ee;
  };
  const std::vector<Case> cases = {
      // Without unk_token the bytes are dropped, and their neighbours merge.
      {false, false, false, {254}, {}},
      {true, false, false, {97, 255, 255, 98}, {255, 255, 255, 255}},
      {true, true, false, {97, 255, 98}, {255}},
      // byte_fallback: C3 -> <0xC3> <0x83>; A9 has no "<0xC2>" "<0xA9>" -> unk, emitted after
      // the fallback tokens that follow it (HF's order), fused across them with fuse_unk.
      {true, false, true, {97, 256, 257, 255, 98}, {256, 257, 256, 257, 255, 255}},
      {true, true, true, {97, 256, 257, 255, 98}, {256, 257, 256, 257, 255}},
  };
  for (const Case& c : cases) {
    BpeTokenizerConfig config = config_missing({0xC3, 0xA9}, extra, merges);
    if (c.unk) config.unk_id = 255;
    config.fuse_unk = c.fuse;
    config.byte_fallback = c.fallback;
    const BpeTokenizer tok(std::move(config));
    const std::string label = fmt::format("unk {} fuse {} fallback {}", c.unk, c.fuse, c.fallback);
    EXPECT_EQ(tok.encode("a\303\251b"), c.aeb) << label;
    EXPECT_EQ(tok.encode("\xc3\xa9\xc3\xa9"), c.ee) << label;
    EXPECT_EQ(tok.encode("a\004b"), (std::vector<int32_t>{97, 4, 98})) << label;
    // One 400-byte piece: the heap merge (over kHeapThreshold symbols) gives the same.
    std::string long_piece;
    std::vector<int32_t> expected;
    for (int i = 0; i < 100; ++i) {
      long_piece += "a\303\251b";
      expected.insert(expected.end(), c.aeb.begin(), c.aeb.end());
    }
    EXPECT_EQ(tok.encode(long_piece), expected) << label;
    EXPECT_EQ(tok.encode("a\303\251b"), c.aeb) << label << " (from the piece cache)";
  }
}

TEST(TokenizerMissingBytes, DecodeAndDescribe) {
  BpeTokenizerConfig config = config_missing({0x04, 0xC3, 0xA9}, {"<unk>"}, {});
  config.unk_id = static_cast<int32_t>(config.vocab.size()) - 1;
  config.fuse_unk = true;
  const BpeTokenizer tok(std::move(config));
  const std::vector<int32_t> ids = tok.encode("x\x04y caf\xc3\xa9");
  const int32_t unk = tok.vocab_size() - 1;
  EXPECT_EQ(std::count(ids.begin(), ids.end(), unk), 2);
  // An unknown token decodes as its text, as HF's ByteLevel decoder does.
  EXPECT_EQ(tok.decode(ids), "x<unk>y caf<unk>");
  EXPECT_NE(tok.describe().find("3 of 256 bytes have no symbol and encode to unk"),
            std::string::npos)
      << tok.describe();
  BpeTokenizerConfig bad = config_missing({0x04}, {}, {});
  bad.unk_id = 9999;
  expect_input_error([&] { BpeTokenizer t(std::move(bad)); }, {"test config", "9999"});
}

// ---- tokenizer.json forms written by transformers (Note [no-op normalizers and decoders]) ----

// `json` with the first occurrence of `from` replaced by `to` (which must exist).
std::string with(std::string json, const std::string& from, const std::string& to) {
  const size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) json.replace(at, from.size(), to);
  return json;
}

const std::string kSmolLM2Decoder =
    R"({"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}]})";

// The form transformers writes for SmolLM2 from its GGUF file, on a vocab lacking 0x04, 0xC3,
// 0xA9 ("é" is C3 A9); the ids are checked against `tokenizers` by tokenizer_forms_parity.py.
std::string smollm2_form(const std::string& unk_token, bool fuse_unk) {
  std::string json = tokenizer_json({}, kByteLevelPre, "", false, {"<unk>"}, {0x04, 0xC3, 0xA9});
  json = with(json, "\"normalizer\": null",
              R"("normalizer": {"type": "Sequence", "normalizers": []})");
  json = with(json, "\"decoder\": {\"type\": \"ByteLevel\"}", "\"decoder\": " + kSmolLM2Decoder);
  return with(json, "\"unk_token\": null",
              fmt::format(R"("unk_token": {}, "fuse_unk": {}, "byte_fallback": true)", unk_token,
                          fuse_unk ? "true" : "false"));
}

TEST(TokenizerJson, SmolLM2FormFromGguf) {
  TempDir dir;
  const auto fused = load_tokenizer(dir.file("fused.json", smollm2_form("\"<unk>\"", true)));
  const int32_t unk = *fused->token_to_id("<unk>");
  auto id = [&](char c) { return *fused->token_to_id(bytes_to_token_text(std::string(1, c))); };
  EXPECT_EQ(fused->encode("caf\303\251 x\004y"),
            (std::vector<int32_t>{id('c'), id('a'), id('f'), unk, id(' '), id('x'), unk, id('y')}));
  EXPECT_EQ(fused->decode(fused->encode("caf\303\251")), "caf<unk>");
  EXPECT_NE(fused->describe().find("3 of 256 bytes have no symbol"), std::string::npos);
  const auto separate = load_tokenizer(dir.file("separate.json", smollm2_form("\"<unk>\"", false)));
  EXPECT_EQ(separate->encode("caf\303\251"),
            (std::vector<int32_t>{id('c'), id('a'), id('f'), unk, unk}));
  const auto dropped = load_tokenizer(dir.file("dropped.json", smollm2_form("null", true)));
  EXPECT_EQ(dropped->encode("caf\303\251"), (std::vector<int32_t>{id('c'), id('a'), id('f')}));
  // An unk_token the vocab lacks: HF would fail on the bytes without a symbol.
  expect_input_error(
      [&] { load_tokenizer(dir.file("bad_unk.json", smollm2_form("\"<missing>\"", true))); },
      {"bad_unk.json", "model.unk_token", "<missing>", "0x04 0xa9 0xc3"});
  // ... but never looks it up when every byte has a symbol.
  const std::string complete = with(tokenizer_json({}, kByteLevelPre, "", false),
                                    "\"unk_token\": null", "\"unk_token\": \"<missing>\"");
  EXPECT_EQ(load_tokenizer(dir.file("complete.json", complete))->encode("\004"),
            (std::vector<int32_t>{4}));
}

TEST(TokenizerJson, NoOpNormalizerAndDecoderSteps) {
  TempDir dir;
  std::string json = tokenizer_json({}, kByteLevelPre, "", false);
  json = with(json, "\"normalizer\": null",
              R"("normalizer": {"type": "Sequence", "normalizers": [
                   {"type": "Strip", "strip_left": false, "strip_right": false},
                   {"type": "Replace", "pattern": {"String": "a"}, "content": "a"},
                   {"type": "Sequence", "normalizers": []}]})");
  json = with(json, "\"decoder\": {\"type\": \"ByteLevel\"}",
              R"("decoder": {"type": "Sequence", "decoders": [{"type": "Sequence", "decoders": []},
                   {"type": "Strip", "content": " ", "start": 0, "stop": 0},
                   {"type": "ByteLevel"}, {"type": "Fuse"}]})");
  const auto tok = load_tokenizer(dir.file("noop.json", json));
  EXPECT_EQ(tok->encode(" a"), (std::vector<int32_t>{' ', 'a'}));
  // An empty decoder Sequence is accepted too (pft decodes bytes; HF gives "Ġa").
  const std::string empty =
      with(tokenizer_json({}, kByteLevelPre, "", false), "\"decoder\": {\"type\": \"ByteLevel\"}",
           R"("decoder": {"type": "Sequence", "decoders": []})");
  EXPECT_EQ(load_tokenizer(dir.file("empty.json", empty))->decode(std::vector<int32_t>{' ', 'a'}),
            " a");
}

TEST(TokenizerErrors, NormalizerAndDecoderStepsThatChangeTheText) {
  TempDir dir;
  const std::string base = tokenizer_json({}, kByteLevelPre, "", false);
  auto normalizer = [&](const std::string& n) {
    return with(base, "\"normalizer\": null", "\"normalizer\": " + n);
  };
  auto decoder = [&](const std::string& d, const std::string& json) {
    return with(json, "\"decoder\": {\"type\": \"ByteLevel\"}", "\"decoder\": " + d);
  };
  expect_input_error(
      [&] {
        load_tokenizer(dir.file(
            "lower.json",
            normalizer(R"({"type": "Sequence", "normalizers": [{"type": "Lowercase"}]})")));
      },
      {"lower.json", "normalizer.normalizers[0] (Lowercase)", "changes the text"});
  expect_input_error(
      [&] {
        load_tokenizer(
            dir.file("prepend.json", normalizer(R"({"type": "Prepend", "prepend": ""})")));
      },
      {"prepend.json", "normalizer (Prepend)"});
  // Replace "a" by " " would change every token holding an "a".
  const std::string replace_a =
      R"({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "a"},
          "content": " "}, {"type": "ByteLevel"}]})";
  expect_input_error([&] { load_tokenizer(dir.file("replace.json", decoder(replace_a, base))); },
                     {"replace.json", "decoder.decoders[0] (Replace)", "\"a\""});
  // ByteFallback rewrites a token spelt "<0x41>".
  const std::string with_byte_token = tokenizer_json({}, kByteLevelPre, "", false, {"<0x41>"});
  expect_input_error(
      [&] { load_tokenizer(dir.file("fallback.json", decoder(kSmolLM2Decoder, with_byte_token))); },
      {"fallback.json", "decoder.decoders[0] (ByteFallback)", "<0x41>"});
  // Fuse before ByteLevel with a token outside the byte mapping (an added token with a space).
  const std::string spaced = tokenizer_json(
      {}, kByteLevelPre,
      R"({"id": 256, "content": "a b", "lstrip": false, "rstrip": false, "normalized": false,
          "special": true})",
      false);
  expect_input_error(
      [&] { load_tokenizer(dir.file("fuse.json", decoder(kSmolLM2Decoder, spaced))); },
      {"fuse.json", "decoder.decoders[1] (Fuse)", "a b"});
  for (
      const auto& [name, d, part] : std::vector<std::tuple<std::string, std::string, std::string>>{
          {"metaspace.json", R"({"type": "Metaspace"})", "\"Metaspace\" is not supported"},
          {"strip.json", R"({"type": "Strip", "content": " ", "start": 1, "stop": 0})",
           "Strip of 0"},
          {"after.json",
           R"({"type": "Sequence", "decoders": [{"type": "ByteLevel"}, {"type": "ByteFallback"}]})",
           "only Fuse"}}) {
    expect_input_error([&] { load_tokenizer(dir.file(name, decoder(d, base))); }, {name, part});
  }
}

// ---- Errors ---------------------------------------------------------------------------------

TEST(TokenizerErrors, MissingPaths) {
  expect_input_error([] { load_tokenizer("/nonexistent/tokenizer/dir"); },
                     {"/nonexistent/tokenizer/dir", "byte"});
  TempDir dir;
  expect_input_error([&] { load_tokenizer(dir.path().string()); },
                     {dir.path().string(), "encoder.json"});
  fs::copy_file(kGpt2Dir + "/encoder.json", dir.path() / "encoder.json");
  expect_input_error([&] { load_tokenizer(dir.path().string()); }, {"vocab.bpe", "cannot open"});
}

TEST(TokenizerErrors, CorruptMergesNameTheLine) {
  TempDir dir;
  fs::copy_file(kGpt2Dir + "/encoder.json", dir.path() / "encoder.json");
  dir.file("vocab.bpe", "#version: 0.2\nĠ t\nh e l\n");
  expect_input_error([&] { load_tokenizer(dir.path().string()); }, {"vocab.bpe:3", "h e l"});
  dir.file("vocab.bpe", "#version: 0.2\nĠ t\nzzzq xxyy\n");
  expect_input_error([&] { load_tokenizer(dir.path().string()); },
                     {"vocab.bpe:3", "zzzq", "not in the vocab"});
}

TEST(TokenizerErrors, CorruptVocabNamesTheFileAndLine) {
  TempDir dir;
  dir.file("encoder.json", "{\"a\": 0,\n \"b\": 1,\n \"c\": }\n");
  dir.file("vocab.bpe", "#version: 0.2\n");
  expect_input_error([&] { load_tokenizer(dir.path().string()); },
                     {"encoder.json:3", "not valid JSON"});
  dir.file("encoder.json", "{\"a\": 0, \"b\": \"x\"}");
  expect_input_error([&] { load_tokenizer(dir.path().string()); },
                     {"encoder.json", "\"b\"", "integer"});
  // Ids far past the tokens listed are refused before anything is allocated for them (the
  // fuzzer's 8-million-entry vocab of two tokens); a few gaps are fine.
  dir.file("encoder.json", "{\"a\": 0, \"b\": 8111111}");
  expect_input_error([&] { load_tokenizer(dir.path().string()); },
                     {"encoder.json", "token id 8111111 is far past the 2 token(s)", "corrupt"});
  dir.file("encoder.json", "{\"a\": 0, \"b\": 900}");
  EXPECT_NO_THROW(load_tokenizer(dir.path().string()));
}

TEST(TokenizerErrors, UnsupportedTokenizerJson) {
  TempDir dir;
  const std::string pre =
      R"({"type": "Split", "pattern": {"Regex": "\\w+|\\d"}, "behavior": "Isolated", "invert": false})";
  const std::string bad_regex = tokenizer_json({}, pre, "", false);
  expect_input_error([&] { load_tokenizer(dir.file("regex.json", bad_regex)); },
                     {"regex.json", "unknown split regex", "\\\\w+|\\\\d"});
  std::string with_normalizer = tokenizer_json({}, kByteLevelPre, "", false);
  with_normalizer.replace(with_normalizer.find("\"normalizer\": null"), 18,
                          "\"normalizer\": {\"type\": \"NFC\"}");
  expect_input_error([&] { load_tokenizer(dir.file("nfc.json", with_normalizer)); },
                     {"nfc.json", "normalizer", "NFC"});
  expect_input_error([&] { load_tokenizer(dir.file("trunc.json", "{\"model\": {")); },
                     {"trunc.json:1", "not valid JSON"});
  expect_input_error(
      [&] {
        load_tokenizer(
            dir.file("merge.json", tokenizer_json({{"q", "zz"}}, kByteLevelPre, "", false)));
      },
      {"merge.json", "model.merges[0]", "zz"});
}

}  // namespace
}  // namespace pft
