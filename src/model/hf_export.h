// pft -> a Hugging Face model directory that transformers loads (AutoModelForCausalLM,
// AutoTokenizer) with the same logits:
//   config.json                  GPT2LMHeadModel / LlamaForCausalLM config from the ModelSpec
//   model.safetensors            the parameters under their HF names (pft's own names), in the
//                                chosen dtype; with tied embeddings no lm_head.weight (as HF
//                                saves it); or model-0000x-of-0000y.safetensors + index when a
//                                shard size is given
//   generation_config.json       bos / eos / pad ids (copied from the source model when it has one)
//   tokenizer files              copied from the tokenizer source (tokenizer.json,
//                                tokenizer_config.json, special_tokens_map.json, vocab.json,
//                                merges.txt, chat_template.jinja, ...; GPT-2's encoder.json /
//                                vocab.bpe are written as vocab.json / merges.txt); a
//                                tokenizer_config.json (class, eos / pad tokens) is added when
//                                the source has none, so AutoTokenizer loads it. pft's `byte`
//                                tokenizer and a GGUF file's embedded tokenizer have no file to
//                                copy: tokenizer.json and tokenizer_config.json (special tokens,
//                                add_bos_token, chat template) are written for them
//                                (data/hf_tokenizer_json.h), encoding as pft does.
//
// Files are written atomically one by one (temporary file + rename). Weight files a previous
// export left in the directory (model*.safetensors, the index) are removed first so a stale
// shard never mixes in; nothing else there is touched.
//
// Used by `pft ckpt export --format hf` (tensors read from a pft checkpoint) and by tests /
// tools that hold a live model. Rank 0 only; not collective.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/transformer.h"

namespace pft {

struct HfExportOptions {
  at::ScalarType dtype = at::kFloat;  // stored dtype: kFloat, kBFloat16 or kHalf
  // Where tokenizer files come from: a model / tokenizer directory, a tokenizer.json file, a
  // GGUF file or "byte" (pft's byte tokenizer); empty = no tokenizer files.
  std::filesystem::path tokenizer;
  // A source model directory whose generation_config.json is copied (optional).
  std::filesystem::path source_model;
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> bos_token_id, pad_token_id;
  // 0 = one model.safetensors; else shards of at most this many bytes (a tensor larger than it
  // gets a shard of its own).
  uint64_t max_shard_bytes = 0;
};

// Writes `params` -- pft parameter names (= HF names) and tensors on any device -- as a model
// directory at `out_dir` (created if needed). `params` must be exactly the parameters of a
// model of `spec` (hf_parameter_layout), in any order. Throws InputError naming the tensor on a
// missing / unexpected name or a wrong shape, or an unsupported dtype; RuntimeFailure when a
// file cannot be written.
void export_hf_model(const ModelSpec& spec,
                     const std::vector<std::pair<std::string, at::Tensor>>& params,
                     const std::filesystem::path& out_dir, const HfExportOptions& options);

// The same for a live model.
void export_hf_model(const TransformerImpl& model, const std::filesystem::path& out_dir,
                     const HfExportOptions& options);

// config.json text for `spec` (what export_hf_model writes).
std::string hf_config_json(const ModelSpec& spec, const HfExportOptions& options);

}  // namespace pft
