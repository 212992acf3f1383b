// Reading encoder.json / vocab.bpe / merges.txt and Hugging Face tokenizer.json files.
#include "data/tokenizer_files.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/format.h"

namespace pft {
namespace {

namespace json = boost::json;

// Ids above this are taken for a corrupt file rather than allocated for.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// Note [dense ids]: a tokenizer holds one entry per id from 0 to its largest id, so a file that
// lists a handful of tokens with an id in the millions would make pft allocate and fill
// millions of entries (the fuzzer found one taking 20 s and a GB under ASan). Real vocabularies
// are dense (0..n-1, added tokens right after, a few reserved gaps); refuse ids that leave more
// holes than tokens, beyond this slack.
constexpr size_t kIdGapSlack = 1024;

void check_dense_ids(size_t id_end, size_t tokens, const std::string& path,
                     std::string_view where) {
  if (id_end <= 2 * tokens + kIdGapSlack) return;
  throw InputError(fmt::format(
      "{}: {}: token id {} is far past the {} token(s) listed; a vocab's ids run from 0 with "
      "few gaps, so the file is corrupt (or not a tokenizer file)",
      path, where, id_end - 1, tokens));
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError(
        fmt::format("{}: cannot open the tokenizer {} ({}); check the path given as "
                    "the tokenizer spec",
                    path, what, std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(fmt::format("{}: error reading the tokenizer {}", path, what));
  return std::move(ss).str();
}

json::value parse_json(const std::string& path, const std::string& text) {
  json::parser parser;
  boost::system::error_code ec;
  const size_t consumed = parser.write(text.data(), text.size(), ec);
  if (!ec) {
    return parser.release();
  }
  const size_t at = std::min(consumed, text.size());
  const size_t line = 1 + std::count(text.begin(), text.begin() + at, '\n');
  throw InputError(
      fmt::format("{}:{}: not valid JSON ({}); is the file truncated or of another "
                  "kind?",
                  path, line, ec.message()));
}

const json::object& as_object(const json::value& v, const std::string& path, std::string_view key) {
  if (!v.is_object()) {
    throw InputError(fmt::format("{}: \"{}\" must be a JSON object", path, key));
  }
  return v.as_object();
}

// obj[key] as a string; `fallback` when absent or null, or an error when fallback is null.
std::string get_string(const json::object& obj, std::string_view key, const std::string& path,
                       std::string_view where, const char* fallback = nullptr) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (fallback != nullptr) return fallback;
    throw InputError(fmt::format("{}: {} has no \"{}\"", path, where, key));
  }
  if (!v->is_string()) {
    throw InputError(fmt::format("{}: {}.{} must be a string", path, where, key));
  }
  return std::string(v->as_string());
}

bool get_bool(const json::object& obj, std::string_view key, bool fallback, const std::string& path,
              std::string_view where) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_bool())
    throw InputError(fmt::format("{}: {}.{} must be true or false", path, where, key));
  return v->as_bool();
}

int32_t get_id(const json::value& v, const std::string& path, std::string_view where) {
  if (!v.is_int64() && !v.is_uint64()) {
    throw InputError(fmt::format("{}: {}: the token id must be an integer, got {}", path, where,
                                 json::serialize(v)));
  }
  const int64_t id = v.is_int64() ? v.as_int64() : static_cast<int64_t>(v.as_uint64());
  if (id < 0 || id > kMaxTokenId) {
    throw InputError(
        fmt::format("{}: {}: token id {} is outside [0, {}]", path, where, id, kMaxTokenId));
  }
  return static_cast<int32_t>(id);
}

// A token -> id JSON object into an id -> token vector ("" for ids no token has).
std::vector<std::string> read_vocab_object(const json::value& v, const std::string& path,
                                           std::string_view where) {
  const json::object& obj = as_object(v, path, where);
  std::vector<std::string> vocab;
  for (const auto& [key, value] : obj) {
    const int32_t id =
        get_id(value, path, fmt::format("{} entry \"{}\"", where, std::string_view(key)));
    if (static_cast<size_t>(id) >= vocab.size()) vocab.resize(static_cast<size_t>(id) + 1);
    if (!vocab[id].empty()) {
      throw InputError(
          fmt::format("{}: {}: tokens \"{}\" and \"{}\" both have id {}; the vocab "
                      "is corrupt",
                      path, where, vocab[id], std::string_view(key), id));
    }
    if (key.empty())
      throw InputError(fmt::format("{}: {}: an empty token (id {})", path, where, id));
    vocab[id] = std::string(key);
  }
  if (vocab.empty()) throw InputError(fmt::format("{}: {} is empty", path, where));
  check_dense_ids(vocab.size(), obj.size(), path, where);
  return vocab;
}

// Resolves merges "left right" to ids; `location(i)` names merge i for error messages.
class MergeResolver {
 public:
  MergeResolver(const std::vector<std::string>& vocab, std::string vocab_path)
      : vocab_path_(std::move(vocab_path)) {
    for (size_t id = 0; id < vocab.size(); ++id) {
      if (!vocab[id].empty()) id_of_.emplace(vocab[id], static_cast<int32_t>(id));
    }
  }

  MergeRule resolve(const std::string& left, const std::string& right,
                    const std::string& location) const {
    return MergeRule{id(left, location), id(right, location), id(left + right, location)};
  }

 private:
  int32_t id(const std::string& token, const std::string& location) const {
    auto it = id_of_.find(token);
    if (it == id_of_.end()) {
      throw InputError(
          fmt::format("{}: the merge uses token \"{}\", which is not in the vocab "
                      "{}; the vocab and merges files do not belong together",
                      location, token, vocab_path_));
    }
    return it->second;
  }

  std::string vocab_path_;
  std::unordered_map<std::string, int32_t> id_of_;
};

std::optional<int32_t> find_token(const BpeTokenizerConfig& config, std::string_view text) {
  for (const AddedToken& t : config.added_tokens) {
    if (t.content == text) return t.id;
  }
  for (size_t id = 0; id < config.vocab.size(); ++id) {
    if (config.vocab[id] == text) return static_cast<int32_t>(id);
  }
  return std::nullopt;
}

std::optional<int32_t> first_token_of(const BpeTokenizerConfig& config,
                                      std::initializer_list<std::string_view> names) {
  for (std::string_view name : names) {
    if (auto id = find_token(config, name)) return id;
  }
  return std::nullopt;
}

// ---- tokenizer.json pieces -------------------------------------------------------------------

void read_pre_tokenizer(const json::value& v, const std::string& path, std::string_view where,
                        std::vector<PreTokenizerStep>& steps, int* byte_level_steps) {
  const json::object& obj = as_object(v, path, where);
  const std::string type = get_string(obj, "type", path, where);
  const std::string here = fmt::format("{} ({})", where, type);
  if (type == "Sequence") {
    const json::value* list = obj.if_contains("pretokenizers");
    if (list == nullptr || !list->is_array()) {
      throw InputError(fmt::format("{}: {} needs a \"pretokenizers\" list", path, here));
    }
    int i = 0;
    for (const json::value& item : list->as_array()) {
      read_pre_tokenizer(item, path, fmt::format("{}.pretokenizers[{}]", where, i++), steps,
                         byte_level_steps);
    }
    return;
  }
  if (*byte_level_steps > 0) {
    throw InputError(
        fmt::format("{}: {} comes after the ByteLevel pre-tokenizer; pft supports "
                    "ByteLevel only as the last step",
                    path, here));
  }
  if (type == "ByteLevel") {
    ++*byte_level_steps;
    if (get_bool(obj, "add_prefix_space", false, path, here)) {
      steps.push_back({PreTokenizerStep::Kind::kPrefixSpace, SplitRule::kGpt2});
    }
    if (get_bool(obj, "use_regex", true, path, here)) {
      steps.push_back({PreTokenizerStep::Kind::kSplit, SplitRule::kGpt2});
    }
  } else if (type == "Split") {
    const json::value* pattern = obj.if_contains("pattern");
    const json::value* regex = pattern != nullptr && pattern->is_object()
                                   ? pattern->as_object().if_contains("Regex")
                                   : nullptr;
    if (regex == nullptr || !regex->is_string()) {
      throw InputError(
          fmt::format("{}: {}: only {{\"Regex\": ...}} patterns are supported, got "
                      "{}",
                      path, here, pattern ? json::serialize(*pattern) : "nothing"));
    }
    const std::string behavior = get_string(obj, "behavior", path, here, "Isolated");
    if (behavior != "Isolated" || get_bool(obj, "invert", false, path, here)) {
      throw InputError(
          fmt::format("{}: {}: only behavior \"Isolated\" without invert is "
                      "supported, got behavior \"{}\"",
                      path, here, behavior));
    }
    SplitRule rule;
    if (!split_rule_for_pattern(std::string(regex->as_string()), &rule)) {
      throw InputError(fmt::format(
          "{}: {}: unknown split regex {}; pft scans only the GPT-2, Llama-3 and Qwen2 "
          "patterns (see src/data/pretokenizer.h). Support for a new pattern needs a scanner "
          "written for it",
          path, here, json::serialize(*regex)));
    }
    steps.push_back({PreTokenizerStep::Kind::kSplit, rule});
  } else if (type == "Digits") {
    const bool individual = get_bool(obj, "individual_digits", false, path, here);
    steps.push_back({PreTokenizerStep::Kind::kSplit,
                     individual ? SplitRule::kDigitsIsolated : SplitRule::kDigitsContiguous});
  } else {
    throw InputError(
        fmt::format("{}: {}: pre-tokenizer type \"{}\" is not supported (pft "
                    "supports ByteLevel, Split, Digits and Sequence)",
                    path, where, type));
  }
}

// Note [no-op normalizers and decoders]: files converted by transformers (SmolLM2's from its
// GGUF, for one) carry normalizer and decoder steps written for SentencePiece vocabularies. pft
// accepts a step only where it cannot change the result for *this* vocab and added tokens:
//   normalizer  Sequence of no-ops (empty included), Strip without left/right, Replace of a
//               string by itself (not Prepend "": HF panics on it);
//   decoder     ByteFallback when no token is spelt "<0xXY>" (the only tokens it rewrites);
//               Replace of a string none of whose characters occurs in a token; Strip of 0
//               characters; Fuse -- before ByteLevel only when every token is in GPT-2's
//               byte mapping, since HF's ByteLevel decoder keeps a string with any unmapped
//               character as it is, and Fuse makes one string of them all; ByteLevel, once,
//               with nothing but Fuse / Strip 0 after it.
// Anything else changes the text and is refused, naming the key. Without a ByteLevel decoder
// (none, or an empty Sequence) HF's decode returns the mapped token strings ("Ġworld"); pft
// decodes bytes all the same.

bool is_noop_normalizer(const json::value& v, const std::string& path, const std::string& where,
                        std::string* refused) {
  const json::object& obj = as_object(v, path, where);
  const std::string type = get_string(obj, "type", path, where);
  const std::string here = fmt::format("{} ({})", where, type);
  if (type == "Sequence") {
    const json::value* list = obj.if_contains("normalizers");
    if (list == nullptr || !list->is_array()) {
      throw InputError(fmt::format("{}: {} needs a \"normalizers\" list", path, here));
    }
    int i = 0;
    for (const json::value& item : list->as_array()) {
      if (!is_noop_normalizer(item, path, fmt::format("{}.normalizers[{}]", where, i++), refused)) {
        return false;
      }
    }
    return true;
  }
  bool noop = false;
  if (type == "Strip") {
    noop = !get_bool(obj, "strip_left", false, path, here) &&
           !get_bool(obj, "strip_right", false, path, here);
  } else if (type == "Replace") {
    const json::value* pattern = obj.if_contains("pattern");
    const json::value* literal = pattern != nullptr && pattern->is_object()
                                     ? pattern->as_object().if_contains("String")
                                     : nullptr;
    noop = literal != nullptr && literal->is_string() &&
           literal->as_string() == get_string(obj, "content", path, here, "");
  }
  if (!noop) *refused = fmt::format("{} {}", here, json::serialize(v));
  return noop;
}

// The tokens a decoder step sees: the vocab and the added tokens, as HF's decode gives them.
struct TokenTexts {
  const std::vector<std::string>& vocab;
  const std::vector<AddedToken>& added;
  template <class Pred>
  const std::string* find_if(Pred pred) const {
    for (const std::string& t : vocab) {
      if (!t.empty() && pred(t)) return &t;
    }
    for (const AddedToken& t : added) {
      if (pred(t.content)) return &t.content;
    }
    return nullptr;
  }
};

// HF's ByteFallback decoder rewrites a token of 6 bytes "<0x" + u8::from_str_radix(2 chars, 16)
// + ">" (which takes a leading '+').
bool is_byte_fallback_token(std::string_view t) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  return t.size() == 6 && t.starts_with("<0x") && t.back() == '>' &&
         ((hex(t[3]) && hex(t[4])) || (t[3] == '+' && hex(t[4])));
}

void flatten_decoder(const json::value& v, const std::string& path, const std::string& where,
                     std::vector<std::pair<std::string, const json::object*>>& steps) {
  const json::object& obj = as_object(v, path, where);
  const std::string type = get_string(obj, "type", path, where);
  if (type != "Sequence") {
    steps.emplace_back(where, &obj);
    return;
  }
  const json::value* list = obj.if_contains("decoders");
  if (list == nullptr || !list->is_array()) {
    throw InputError(fmt::format("{}: {} (Sequence) needs a \"decoders\" list", path, where));
  }
  int i = 0;
  for (const json::value& item : list->as_array()) {
    flatten_decoder(item, path, fmt::format("{}.decoders[{}]", where, i++), steps);
  }
}

// Refuses a decoder that would decode this vocab otherwise than pft does (Note [no-op
// normalizers and decoders]).
void check_decoder(const json::value* v, const std::string& path, const TokenTexts& tokens) {
  if (v == nullptr || v->is_null()) return;
  std::vector<std::pair<std::string, const json::object*>> steps;
  flatten_decoder(*v, path, "decoder", steps);
  bool after_byte_level = false;
  bool byte_level_follows = false;
  for (const auto& [where, obj] : steps) {
    byte_level_follows |= get_string(*obj, "type", path, where) == "ByteLevel";
  }
  for (const auto& step : steps) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda (the fuzz build).
    const std::string& where = step.first;
    const json::object* obj = step.second;
    const std::string type = get_string(*obj, "type", path, where);
    const std::string here = fmt::format("{} ({})", where, type);
    auto refuse = [&](const std::string& why) {
      throw InputError(fmt::format(
          "{}: {}: {}; pft decodes byte-level tokens only (a ByteLevel decoder, and steps that "
          "change nothing for this vocab)",
          path, here, why));
    };
    if (type == "ByteLevel") {
      if (after_byte_level) refuse("a second ByteLevel decoder would map the text again");
      after_byte_level = true;
      byte_level_follows = false;
      continue;
    }
    if (type == "Fuse") {
      if (!byte_level_follows) continue;
      std::string bytes;
      if (const std::string* t = tokens.find_if(
              [&](const std::string& t) { return !token_text_to_bytes(t, &bytes); })) {
        refuse(fmt::format(
            "before ByteLevel it makes HF decode every sequence holding the token \"{}\" "
            "(a character outside GPT-2's byte mapping) as unmapped text",
            *t));
      }
      continue;
    }
    if (type == "Strip") {
      auto zero = [&](std::string_view key) {
        const json::value* n = obj->if_contains(key);
        return n != nullptr && n->is_number() && n->to_number<double>() == 0;
      };
      if (zero("start") && zero("stop")) continue;
      refuse("only a Strip of 0 characters (start 0, stop 0) is supported");
    }
    if (after_byte_level) refuse("only Fuse may come after ByteLevel");
    if (type == "ByteFallback") {
      if (const std::string* t = tokens.find_if(is_byte_fallback_token)) {
        refuse(fmt::format("it would decode the token \"{}\" as a byte", *t));
      }
      continue;
    }
    if (type == "Replace") {
      const json::value* pattern = obj->if_contains("pattern");
      const json::value* literal = pattern != nullptr && pattern->is_object()
                                       ? pattern->as_object().if_contains("String")
                                       : nullptr;
      if (literal == nullptr || !literal->is_string()) {
        refuse(fmt::format("only string patterns are supported, got {}",
                           pattern ? json::serialize(*pattern) : "nothing"));
      }
      const std::string pat(literal->as_string());
      std::vector<std::string> chars;  // the pattern's UTF-8 characters
      for (size_t i = 0; i < pat.size();) {
        size_t len = 1;
        while (i + len < pat.size() && (static_cast<unsigned char>(pat[i + len]) & 0xC0) == 0x80)
          ++len;
        chars.push_back(pat.substr(i, len));
        i += len;
      }
      if (const std::string* t = tokens.find_if([&](const std::string& t) {
            return std::any_of(chars.begin(), chars.end(), [&](const std::string& c) {
              return t.find(c) != std::string::npos;
            });
          })) {
        refuse(fmt::format("the token \"{}\" holds a character of the pattern {}", *t,
                           json::serialize(*literal)));
      }
      continue;
    }
    refuse(fmt::format("decoder type \"{}\" is not supported", type));
  }
}

// eos/pad named by a tokenizer_config.json beside the tokenizer.json, if any.
void read_tokenizer_config(const std::string& tokenizer_json_path, BpeTokenizerConfig& config) {
  const std::filesystem::path path =
      std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return;
  const std::string p = path.string();
  const json::value root = parse_json(p, read_file(p, "config"));
  if (!root.is_object()) return;
  auto token_named = [&](std::string_view key) -> std::optional<int32_t> {
    const json::value* v = root.as_object().if_contains(key);
    if (v == nullptr || v->is_null()) return std::nullopt;
    std::string content;
    if (v->is_string()) {
      content = std::string(v->as_string());
    } else if (v->is_object() && v->as_object().if_contains("content") &&
               v->as_object().at("content").is_string()) {
      content = std::string(v->as_object().at("content").as_string());
    } else {
      return std::nullopt;
    }
    auto id = find_token(config, content);
    if (!id) {
      throw InputError(fmt::format("{}: \"{}\" is \"{}\", which is not a token of {}", p, key,
                                   content, tokenizer_json_path));
    }
    return id;
  };
  if (auto id = token_named("eos_token")) config.eos_id = *id;
  if (auto id = token_named("pad_token")) config.pad_id = id;
}

}  // namespace

BpeTokenizerConfig read_gpt2_files(const std::string& vocab_path, const std::string& merges_path) {
  BpeTokenizerConfig config;
  config.source = fmt::format("{} + {}", vocab_path, merges_path);
  config.vocab = read_vocab_object(parse_json(vocab_path, read_file(vocab_path, "vocab")),
                                   vocab_path, "the vocab");
  const MergeResolver resolver(config.vocab, vocab_path);

  const std::string text = read_file(merges_path, "merges file");
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      throw InputError(
          fmt::format("{}:{}: a merge line must be two tokens separated by one "
                      "space, got \"{}\"; is this a merges file (vocab.bpe / "
                      "merges.txt)?",
                      merges_path, line_no, line));
    }
    config.merges.push_back(resolver.resolve(std::string(line.substr(0, space)),
                                             std::string(line.substr(space + 1)),
                                             fmt::format("{}:{}", merges_path, line_no)));
  }
  config.pre_tokenizer = {{PreTokenizerStep::Kind::kSplit, SplitRule::kGpt2}};
  if (auto id = find_token(config, "<|endoftext|>")) {
    config.added_tokens.push_back(AddedToken{"<|endoftext|>", *id, /*special=*/true,
                                             /*normalized=*/false, false, false});
    config.eos_id = *id;
  }
  return config;
}

BpeTokenizerConfig read_tokenizer_json(const std::string& path) {
  const json::value root_value = parse_json(path, read_file(path, "file"));
  const json::object& root = as_object(root_value, path, "the top level");
  BpeTokenizerConfig config;
  config.source = path;

  // Model.
  const json::value* model_value = root.if_contains("model");
  if (model_value == nullptr)
    throw InputError(fmt::format("{}: no \"model\"; is this a Hugging Face tokenizer.json?", path));
  const json::object& model = as_object(*model_value, path, "model");
  const std::string type = get_string(model, "type", path, "model", "BPE");
  if (type != "BPE") {
    throw InputError(
        fmt::format("{}: model type \"{}\" is not supported; pft supports "
                    "byte-level BPE only",
                    path, type));
  }
  if (const json::value* d = model.if_contains("dropout"); d != nullptr && !d->is_null()) {
    throw InputError(
        fmt::format("{}: model.dropout is set; BPE dropout is for training only and "
                    "pft does not support it: set it to null",
                    path));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!get_string(model, key, path, "model", "").empty()) {
      throw InputError(
          fmt::format("{}: model.{} is set; byte-level BPE files do not use it and "
                      "pft does not support it",
                      path, key));
    }
  }
  // byte_fallback, unk_token and fuse_unk matter only for bytes without a symbol (Note
  // [missing bytes] in data/bpe.h).
  config.byte_fallback = get_bool(model, "byte_fallback", false, path, "model");
  config.fuse_unk = get_bool(model, "fuse_unk", false, path, "model");
  config.ignore_merges = get_bool(model, "ignore_merges", false, path, "model");
  const json::value* vocab_value = model.if_contains("vocab");
  if (vocab_value == nullptr) throw InputError(fmt::format("{}: model has no \"vocab\"", path));
  config.vocab = read_vocab_object(*vocab_value, path, "model.vocab");
  if (const std::string unk = get_string(model, "unk_token", path, "model", ""); !unk.empty()) {
    auto it = std::find(config.vocab.begin(), config.vocab.end(), unk);
    if (it != config.vocab.end()) {
      config.unk_id = static_cast<int32_t>(it - config.vocab.begin());
    } else {
      std::vector<std::string> missing;
      for (int b = 0; b < 256; ++b) {
        const std::string text = bytes_to_token_text(std::string(1, static_cast<char>(b)));
        if (std::find(config.vocab.begin(), config.vocab.end(), text) == config.vocab.end()) {
          missing.push_back(fmt::format("0x{:02x}", b));
        }
      }
      // HF looks the unknown token up only when a byte needs it, and then fails.
      if (!missing.empty()) {
        throw InputError(fmt::format(
            "{}: model.unk_token \"{}\" is not in model.vocab, and the vocab has no symbol for "
            "the bytes {}; Hugging Face fails to encode text holding them. Set "
            "model.unk_token to a token of the vocab, or to null to drop such bytes",
            path, unk, fmt::join(missing, " ")));
      }
    }
  }

  const json::value* merges_value = model.if_contains("merges");
  if (merges_value == nullptr || !merges_value->is_array()) {
    throw InputError(fmt::format("{}: model.merges must be a list", path));
  }
  const MergeResolver resolver(config.vocab, path);
  size_t rank = 0;
  for (const json::value& m : merges_value->as_array()) {
    const std::string where = fmt::format("{}: model.merges[{}]", path, rank++);
    std::string left, right;
    if (m.is_string()) {  // "left right" (files before tokenizers 0.20)
      const std::string_view s = m.as_string();
      const size_t space = s.find(' ');
      if (space == std::string_view::npos || s.find(' ', space + 1) != std::string_view::npos) {
        throw InputError(fmt::format("{}: \"{}\" is not two tokens separated by one space", where,
                                     std::string(s)));
      }
      left = std::string(s.substr(0, space));
      right = std::string(s.substr(space + 1));
    } else if (m.is_array() && m.as_array().size() == 2 && m.as_array()[0].is_string() &&
               m.as_array()[1].is_string()) {  // ["left", "right"]
      left = std::string(m.as_array()[0].as_string());
      right = std::string(m.as_array()[1].as_string());
    } else {
      throw InputError(
          fmt::format("{}: a merge must be \"left right\" or [\"left\", \"right\"], "
                      "got {}",
                      where, json::serialize(m)));
    }
    config.merges.push_back(resolver.resolve(left, right, where));
  }

  // Normalizer: none, or steps that change nothing (NFC and friends would need Unicode
  // composition tables).
  if (const json::value* n = root.if_contains("normalizer"); n != nullptr && !n->is_null()) {
    std::string refused;
    if (!is_noop_normalizer(*n, path, "normalizer", &refused)) {
      throw InputError(
          fmt::format("{}: {} changes the text; pft supports tokenizers without a normalizer "
                      "(GPT-2, Llama-3, SmolLM style) or with steps that change nothing (an "
                      "empty Sequence, Strip without left/right, Replace of a string by itself)",
                      path, refused));
    }
  }

  // Pre-tokenizer: must end in ByteLevel (the byte mapping the vocab is written in).
  const json::value* pre = root.if_contains("pre_tokenizer");
  if (pre == nullptr || pre->is_null()) {
    throw InputError(
        fmt::format("{}: no pre_tokenizer; pft supports byte-level BPE, which needs "
                    "a ByteLevel pre-tokenizer",
                    path));
  }
  int byte_level_steps = 0;
  read_pre_tokenizer(*pre, path, "pre_tokenizer", config.pre_tokenizer, &byte_level_steps);
  if (byte_level_steps != 1) {
    throw InputError(
        fmt::format("{}: the pre_tokenizer has no ByteLevel step; pft supports "
                    "byte-level BPE only",
                    path));
  }
  // Added tokens.
  if (const json::value* added = root.if_contains("added_tokens");
      added != nullptr && !added->is_null()) {
    if (!added->is_array()) throw InputError(fmt::format("{}: added_tokens must be a list", path));
    size_t i = 0;
    for (const json::value& item : added->as_array()) {
      const std::string where = fmt::format("added_tokens[{}]", i++);
      const json::object& obj = as_object(item, path, where);
      AddedToken t;
      t.content = get_string(obj, "content", path, where);
      const json::value* id = obj.if_contains("id");
      if (id == nullptr) throw InputError(fmt::format("{}: {} has no \"id\"", path, where));
      t.id = get_id(*id, path, where);
      t.special = get_bool(obj, "special", false, path, where);
      t.normalized = get_bool(obj, "normalized", !t.special, path, where);
      t.lstrip = get_bool(obj, "lstrip", false, path, where);
      t.rstrip = get_bool(obj, "rstrip", false, path, where);
      if (t.content.empty()) throw InputError(fmt::format("{}: {} has empty content", path, where));
      if (get_bool(obj, "single_word", false, path, where)) {
        throw InputError(
            fmt::format("{}: {} (\"{}\") has single_word=true, which pft does not "
                        "support",
                        path, where, t.content));
      }
      config.added_tokens.push_back(std::move(t));
    }
    size_t id_end = config.vocab.size();
    for (const AddedToken& t : config.added_tokens)
      id_end = std::max(id_end, static_cast<size_t>(t.id) + 1);
    check_dense_ids(id_end, config.vocab.size() + config.added_tokens.size(), path,
                    "added_tokens");
  }

  check_decoder(root.if_contains("decoder"), path, TokenTexts{config.vocab, config.added_tokens});

  config.eos_id =
      first_token_of(config, {"<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>"})
          .value_or(-1);
  config.pad_id = first_token_of(config, {"<|pad|>", "<pad>", "[PAD]"});
  read_tokenizer_config(path, config);
  return config;
}

}  // namespace pft
