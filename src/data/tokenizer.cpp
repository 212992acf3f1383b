// load_tokenizer and the byte tokenizer (contract: data/tokenizer.h).
#include "data/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "core/format.h"
#include "data/bpe.h"
#include "data/bpe_tokenizer.h"
#include "data/gguf_tokenizer.h"
#include "data/tokenizer_files.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

// Ids 0..255 are the bytes; two special tokens follow.
class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kEndOfText = 256;
  static constexpr int32_t kPad = 257;

  void encode_append(std::string_view text, bool with_specials,
                     std::vector<int32_t>& out) const override {
    out.reserve(out.size() + text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      if (with_specials && text[i] == '<') {
        if (text.substr(i).starts_with(kSpecials[0])) {
          out.push_back(kEndOfText);
          i += kSpecials[0].size() - 1;
          continue;
        }
        if (text.substr(i).starts_with(kSpecials[1])) {
          out.push_back(kPad);
          i += kSpecials[1].size() - 1;
          continue;
        }
      }
      out.push_back(static_cast<unsigned char>(text[i]));
    }
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string text;
    text.reserve(ids.size());
    for (int32_t id : ids) {
      check_id(id, "decode");
      if (id < 256) {
        text.push_back(static_cast<char>(id));
      } else {
        text += kSpecials[id - 256];
      }
    }
    return text;
  }

  int32_t vocab_size() const override { return 258; }
  int32_t eos_id() const override { return kEndOfText; }
  std::optional<int32_t> pad_id() const override { return kPad; }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (token == kSpecials[0]) return kEndOfText;
    if (token == kSpecials[1]) return kPad;
    std::string bytes;
    if (token_text_to_bytes(token, &bytes) && bytes.size() == 1) {
      return static_cast<unsigned char>(bytes[0]);
    }
    return std::nullopt;
  }

  std::string id_to_token(int32_t id) const override {
    check_id(id, "id_to_token");
    if (id >= 256) return std::string(kSpecials[id - 256]);
    return bytes_to_token_text(std::string(1, static_cast<char>(id)));
  }

  std::string describe() const override {
    return "byte (258 ids: bytes, <|endoftext|> = 256, <|pad|> = 257)";
  }

 private:
  static constexpr std::string_view kSpecials[2] = {"<|endoftext|>", "<|pad|>"};

  static void check_id(int32_t id, const char* what) {
    if (id < 0 || id >= 258) {
      throw InputError(
          fmt::format("{}: token id {} is outside the byte tokenizer's vocab "
                      "[0, 258); were the ids made by another tokenizer?",
                      what, id));
    }
  }
};

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  const fs::path path(spec);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (is_file(path / "tokenizer.json")) {
      return std::make_unique<BpeTokenizer>(
          read_tokenizer_json((path / "tokenizer.json").string()));
    }
    for (const auto& [vocab, merges] :
         {std::pair{"encoder.json", "vocab.bpe"}, std::pair{"vocab.json", "merges.txt"}}) {
      if (is_file(path / vocab) || is_file(path / merges)) {
        return std::make_unique<BpeTokenizer>(
            read_gpt2_files((path / vocab).string(), (path / merges).string()));
      }
    }
    throw InputError(
        fmt::format("tokenizer directory {} holds none of tokenizer.json, "
                    "encoder.json + vocab.bpe, vocab.json + merges.txt; point the "
                    "tokenizer spec at a directory with one of them",
                    spec));
  }
  if (is_file(path)) {
    if (gguf::is_gguf_file(path)) return std::make_unique<BpeTokenizer>(read_gguf_tokenizer(spec));
    if (path.extension() == ".json") {
      return std::make_unique<BpeTokenizer>(read_tokenizer_json(spec));
    }
    throw InputError(
        fmt::format("tokenizer spec {} is a file but not a .json or GGUF file; give a "
                    "Hugging Face tokenizer.json, a .gguf model, a directory with GPT-2's "
                    "encoder.json + vocab.bpe, or \"byte\"",
                    spec));
  }
  throw InputError(
      fmt::format("tokenizer spec \"{}\" is not \"byte\" and no such file or "
                  "directory exists; give \"byte\", a directory with encoder.json + "
                  "vocab.bpe (or vocab.json + merges.txt), or a tokenizer.json",
                  spec));
}

}  // namespace pft
