// GGUF metadata -> BpeTokenizerConfig (contract: data/gguf_tokenizer.h).
#include "data/gguf_tokenizer.h"

#include <unordered_map>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

constexpr int64_t kControl = 3, kUserDefined = 4, kByte = 6;

std::vector<PreTokenizerStep> pre_tokenizer_for(const gguf::File& f, const std::string& pre) {
  const auto split = [](SplitRule rule) {
    return std::vector<PreTokenizerStep>{{PreTokenizerStep::Kind::kSplit, rule}};
  };
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2" || pre == "smollm")
    return split(SplitRule::kGpt2);
  if (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe") return split(SplitRule::kLlama3);
  if (pre == "qwen2") return split(SplitRule::kQwen2);
  f.fail(fmt::format(
      "tokenizer.ggml.pre `{}` is a pre-tokenizer pft does not know (it knows default, gpt-2, "
      "smollm, llama-bpe, llama3, smaug-bpe, qwen2). HINT: pass data.tokenizer / --tokenizer "
      "with the model's Hugging Face tokenizer.json",
      pre));
}

std::optional<int32_t> token_id(const gguf::File& f, const char* key, size_t vocab) {
  const auto v = f.get_int_opt(key);
  if (!v) return std::nullopt;
  if (*v < 0 || static_cast<uint64_t>(*v) >= vocab)
    f.fail(fmt::format("metadata key `{}` = {} is not a token id (the vocab has {} tokens)", key,
                       *v, vocab));
  return static_cast<int32_t>(*v);
}

}  // namespace

bool gguf_has_tokenizer(const gguf::File& file) {
  return file.find("tokenizer.ggml.model") != nullptr;
}

BpeTokenizerConfig read_gguf_tokenizer(const gguf::File& f, GgufTokenizerInfo* info) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    f.fail(fmt::format(
        "tokenizer.ggml.model `{}` is not supported; pft reads byte-level BPE tokenizers "
        "(`gpt2`). HINT: pass data.tokenizer / --tokenizer with a byte-level tokenizer.json",
        model));
  BpeTokenizerConfig config;
  config.source = f.path().string();
  config.vocab = f.get_strings("tokenizer.ggml.tokens");
  const size_t n = config.vocab.size();
  if (n == 0 || n > (size_t{1} << 24))
    f.fail(fmt::format("tokenizer.ggml.tokens has {} tokens (expected 1 to 2^24)", n));
  std::unordered_map<std::string, int32_t> id_of;
  id_of.reserve(n);
  for (size_t i = 0; i < n; ++i) id_of.emplace(config.vocab[i], static_cast<int32_t>(i));

  std::vector<int64_t> types;
  if (f.find("tokenizer.ggml.token_type") != nullptr) {
    types = f.get_ints("tokenizer.ggml.token_type");
    if (types.size() != n)
      f.fail(fmt::format("tokenizer.ggml.token_type has {} entries for {} tokens", types.size(),
                         n));
  }
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i] == kByte)
      f.fail(fmt::format("tokenizer.ggml.token_type[{}] (`{}`) is a byte token (type 6), which "
                         "a byte-level BPE vocab does not have",
                         i, config.vocab[i]));
    if (types[i] == kControl || types[i] == kUserDefined) {
      if (config.vocab[i].empty())
        f.fail(fmt::format("tokenizer.ggml.tokens[{}] is an empty added token", i));
      AddedToken t;
      t.content = config.vocab[i];
      t.id = static_cast<int32_t>(i);
      t.special = types[i] == kControl;
      t.normalized = false;
      config.added_tokens.push_back(std::move(t));
    }
  }

  const std::vector<std::string> merges = f.get_strings("tokenizer.ggml.merges");
  config.merges.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
    const size_t space = m.find(' ');
    if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos)
      f.fail(fmt::format("tokenizer.ggml.merges[{}] `{}` is not two tokens separated by one space",
                         r, m));
    const std::string left = m.substr(0, space), right = m.substr(space + 1);
    const auto id = [&](const std::string& token) {
      const auto it = id_of.find(token);
      if (it == id_of.end())
        f.fail(fmt::format("tokenizer.ggml.merges[{}] `{}` uses `{}`, which is not in "
                           "tokenizer.ggml.tokens",
                           r, m, token));
      return it->second;
    };
    config.merges.push_back(MergeRule{id(left), id(right), id(left + right)});
  }

  const std::string pre = f.get_string_opt("tokenizer.ggml.pre").value_or("default");
  config.pre_tokenizer = pre_tokenizer_for(f, pre);
  config.eos_id = token_id(f, "tokenizer.ggml.eos_token_id", n).value_or(-1);
  config.pad_id = token_id(f, "tokenizer.ggml.padding_token_id", n);
  // Bytes without a vocab symbol, as transformers' GGUF tokenizer encodes them: its `llama`
  // converter makes a BPE with the unknown token, fuse_unk and byte_fallback; the gpt2 / qwen2
  // converters a BPE without an unknown token (such bytes are dropped).
  if (f.get_string_opt("general.architecture").value_or("") == "llama") {
    config.unk_id = token_id(f, "tokenizer.ggml.unknown_token_id", n);
    config.fuse_unk = true;
    config.byte_fallback = true;
  }
  if (info != nullptr) {
    info->pre = pre;
    info->bos_id = token_id(f, "tokenizer.ggml.bos_token_id", n);
    info->prompt_prefix_ids.clear();
    if (f.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(false) && info->bos_id)
      info->prompt_prefix_ids.push_back(*info->bos_id);
    info->chat_template = f.get_string_opt("tokenizer.chat_template").value_or("");
  }
  return config;
}

BpeTokenizerConfig read_gguf_tokenizer(const std::string& path, GgufTokenizerInfo* info) {
  const gguf::File f(path);
  return read_gguf_tokenizer(f, info);
}

}  // namespace pft
