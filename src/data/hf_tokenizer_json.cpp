// A tokenizer as a Hugging Face tokenizer.json (contract: data/hf_tokenizer_json.h).
#include "data/hf_tokenizer_json.h"

#include <boost/json.hpp>

#include <set>

#include "core/error.h"
#include "core/format.h"
#include "data/bpe.h"
#include "data/pretokenizer.h"

namespace pft {

namespace json = boost::json;

namespace {

json::object byte_level(bool add_prefix_space, bool use_regex) {
  return json::object{{"type", "ByteLevel"},
                      {"add_prefix_space", add_prefix_space},
                      {"trim_offsets", true},
                      {"use_regex", use_regex}};
}

json::value split_step(const PreTokenizerStep& s, const std::string& source) {
  if (s.rule == SplitRule::kDigitsIsolated || s.rule == SplitRule::kDigitsContiguous)
    return json::object{{"type", "Digits"},
                        {"individual_digits", s.rule == SplitRule::kDigitsIsolated}};
  const std::string_view pattern = split_rule_pattern(s.rule);
  if (pattern.empty())
    throw InputError(fmt::format("tokenizer {}: a split rule with no regex", source));
  return json::object{{"type", "Split"},
                      {"pattern", json::object{{"Regex", json::string(pattern)}}},
                      {"behavior", "Isolated"},
                      {"invert", false}};
}

// The steps ending in one ByteLevel, as data/tokenizer_files.cpp reads them back.
json::value pre_tokenizer(const std::vector<PreTokenizerStep>& steps, const std::string& source) {
  using Kind = PreTokenizerStep::Kind;
  size_t n = steps.size();
  bool use_regex = false, prefix_space = false;
  if (n > 0 && steps[n - 1].kind == Kind::kSplit && steps[n - 1].rule == SplitRule::kGpt2) {
    use_regex = true;
    --n;
  }
  if (n > 0 && steps[n - 1].kind == Kind::kPrefixSpace) {
    prefix_space = true;
    --n;
  }
  json::array list;
  for (size_t i = 0; i < n; ++i) {
    if (steps[i].kind == Kind::kPrefixSpace)
      throw InputError(fmt::format(
          "tokenizer {}: a prefix space before other splits has no tokenizer.json form; export "
          "with --tokenizer naming the tokenizer's own tokenizer.json",
          source));
    list.push_back(split_step(steps[i], source));
  }
  if (list.empty()) return byte_level(prefix_space, use_regex);
  list.push_back(byte_level(prefix_space, use_regex));
  return json::object{{"type", "Sequence"}, {"pretokenizers", std::move(list)}};
}

}  // namespace

std::string hf_tokenizer_json(const BpeTokenizerConfig& c, const std::vector<int32_t>& prompt_prefix) {
  json::array added;
  for (const AddedToken& t : c.added_tokens)
    added.push_back(json::object{{"id", t.id},
                                 {"content", t.content},
                                 {"single_word", false},
                                 {"lstrip", t.lstrip},
                                 {"rstrip", t.rstrip},
                                 {"normalized", t.normalized},
                                 {"special", t.special}});
  json::object vocab;
  std::set<std::string> seen;
  for (size_t id = 0; id < c.vocab.size(); ++id)
    if (!c.vocab[id].empty() && seen.insert(c.vocab[id]).second)
      vocab[c.vocab[id]] = static_cast<int64_t>(id);
  json::array merges;
  for (const MergeRule& m : c.merges)
    merges.push_back(json::array{json::string(c.vocab.at(static_cast<size_t>(m.left))),
                                 json::string(c.vocab.at(static_cast<size_t>(m.right)))});
  json::object model{{"type", "BPE"},
                     {"dropout", nullptr},
                     {"unk_token", nullptr},
                     {"continuing_subword_prefix", nullptr},
                     {"end_of_word_suffix", nullptr},
                     {"fuse_unk", c.fuse_unk},
                     {"byte_fallback", c.byte_fallback},
                     {"ignore_merges", c.ignore_merges}};
  if (c.unk_id) model["unk_token"] = c.vocab.at(static_cast<size_t>(*c.unk_id));
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);
  json::object t{{"version", "1.0"},
                 {"truncation", nullptr},
                 {"padding", nullptr},
                 {"added_tokens", std::move(added)},
                 {"normalizer", nullptr},
                 {"pre_tokenizer", pre_tokenizer(c.pre_tokenizer, c.source)},
                 {"post_processor", nullptr},

                 {"decoder", byte_level(true, true)},
                 {"model", std::move(model)}};
  if (!prompt_prefix.empty()) {
    // TemplateProcessing: the prefix's special tokens, then the text ($A; $B for pairs).
    json::array single, pair;
    json::object specials;
    for (const int32_t id : prompt_prefix) {
      const std::string& name = c.vocab.at(static_cast<size_t>(id));
      const json::object piece{{"SpecialToken", json::object{{"id", name}, {"type_id", 0}}}};
      single.push_back(piece);
      pair.push_back(piece);
      specials[name] = json::object{
          {"id", name}, {"ids", json::array{id}}, {"tokens", json::array{json::string(name)}}};
    }
    single.push_back(json::object{{"Sequence", json::object{{"id", "A"}, {"type_id", 0}}}});
    pair.push_back(json::object{{"Sequence", json::object{{"id", "A"}, {"type_id", 0}}}});
    for (const int32_t id : prompt_prefix) {
      const std::string& name = c.vocab.at(static_cast<size_t>(id));
      pair.push_back(json::object{{"SpecialToken", json::object{{"id", name}, {"type_id", 1}}}});
    }
    pair.push_back(json::object{{"Sequence", json::object{{"id", "B"}, {"type_id", 1}}}});
    t["post_processor"] = json::object{{"type", "TemplateProcessing"},
                                       {"single", std::move(single)},
                                       {"pair", std::move(pair)},
                                       {"special_tokens", std::move(specials)}};
  }
  return json::serialize(t) + "\n";
}

BpeTokenizerConfig byte_tokenizer_as_bpe() {
  BpeTokenizerConfig c;
  c.source = "byte";
  for (int b = 0; b < 256; ++b)
    c.vocab.push_back(bytes_to_token_text(std::string(1, static_cast<char>(b))));
  c.vocab.push_back("<|endoftext|>");
  c.vocab.push_back("<|pad|>");
  c.added_tokens.push_back({"<|endoftext|>", 256, /*special=*/true});
  c.added_tokens.push_back({"<|pad|>", 257, /*special=*/true});
  c.eos_id = 256;
  c.pad_id = 257;
  return c;
}

}  // namespace pft
