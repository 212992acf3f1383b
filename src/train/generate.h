// Text generation with a KV cache: greedy decoding or sampling (temperature, top-k, top-p),
// repetition penalty, stop tokens and stop strings, batched prompts.
//
// One call generates for a batch of prompts together. Prompts of different lengths are
// left-padded; each keeps its own positions (0, 1, ... from its first real token) and never
// attends to padding (model/kv_cache.h), so a prompt's tokens do not depend on the batch it is in
// (up to float rounding of the batched matmuls). The prompt goes through the model once
// (prefill); then one token per step through TransformerImpl::forward_cached.
//
// Per step, on the last position's logits (fp32, on the CPU -- so sampling is the same on every
// device), in Hugging Face's order (ids the tokenizer has no token for -- padding rows of a
// vocabulary rounded up -- are never chosen):
//   1. repetition penalty p (CTRL / HF): the logit of every token already in the prompt or
//      generated is divided by p when positive, multiplied by p when negative;
//   2. greedy (temperature 0): argmax. Otherwise: logits / temperature, keep the top_k largest
//      (0 = all), keep the smallest set whose probability reaches top_p (1 = all; HF's rule:
//      drop the tokens whose cumulative probability, in ascending order, is <= 1 - top_p; the
//      most likely token always stays), then sample from the softmax with a generator seeded by
//      `seed` (the same seed gives the same text).
// A sequence stops at an eos id (not included in `tokens` or `text`), when its decoded text
// contains a stop string (the text is cut before it; `tokens` keep the token that completed it),
// or after max_new_tokens (or when it reaches the model's max_seq_len).
//
// Note [dropping finished rows]
// A row that finished (eos, a stop string) stops costing anything: once the finished rows are an
// eighth of the rows still in the KV cache, they are dropped from it (KvCache::keep_rows), from
// the logits and from the repetition-penalty state; the others keep their slots and positions.
// Before that they ride along and their tokens are ignored.
//
// Note [length-sorted batches]
// Left padding costs a prompt's batch the longest prompt's prefill for every row, and padded
// slots in every later step. generate_all sorts the prompts by length before cutting them into
// batches, so padding is small. A row's tokens do not depend on its neighbours (see above), so
// the results are those of any other batching, up to float rounding.
//
// Thread-safety: one Generator per thread (the model's forward is not reentrant).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "model/transformer.h"

namespace pft {

struct SamplingOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;         // 0 = greedy
  int64_t top_k = 0;                // 0 = off
  double top_p = 1.0;               // 1 = off
  double repetition_penalty = 1.0;  // 1 = off
  std::vector<std::string> stop;    // stop strings (need a tokenizer)
  std::vector<int32_t> eos_ids;     // stop tokens
  uint64_t seed = 0;                // sampling only
};

// Throws InputError naming the option (as the CLI spells it: "--top-p") when out of range.
void validate_sampling(const SamplingOptions& options);

// `bytes` with every byte that is not part of well-formed UTF-8 replaced by U+FFFD: generated
// text cut between the bytes of a character, made fit for JSON.
std::string to_valid_utf8(std::string_view bytes);

struct Generation {
  std::vector<int32_t> tokens;  // generated ids (no eos)
  std::string text;             // decoded tokens, cut before a stop string ("" without tokenizer)
  std::string finish_reason;    // "eos", "stop" or "length"
};

struct GenerationStats {
  int64_t prompts = 0;
  int64_t prompt_tokens = 0;  // real (unpadded) prompt tokens
  int64_t new_tokens = 0;     // tokens generated (incl. eos)
  double prefill_s = 0.0;     // first forward over the prompts
  double decode_s = 0.0;      // every later step
  double seconds() const { return prefill_s + decode_s; }
  double tokens_per_s() const {
    return seconds() > 0 ? static_cast<double>(new_tokens) / seconds() : 0.0;
  }
  void add(const GenerationStats& other);
};

class Generator {
 public:
  // `model` (any device and dtype; forward under no-grad) and `tokenizer` (for text and stop
  // strings; may be null) must outlive the Generator.
  Generator(TransformerImpl& model, const Tokenizer* tokenizer);

  // Generates for `prompts` (each non-empty, ids < vocab) as one batch. `stats`, when given,
  // receives this call's numbers (assigned, not added). Throws InputError for an empty prompt, an
  // id outside the vocabulary, a prompt that leaves no room below max_seq_len, stop strings
  // without a tokenizer, or invalid options.
  std::vector<Generation> generate(const std::vector<std::vector<int32_t>>& prompts,
                                   const SamplingOptions& options,
                                   GenerationStats* stats = nullptr);

  // Generates for any number of prompts, `batch_size` per generate() call, the prompts sorted by
  // length (longest first) so that a batch holds prompts of about one length (Note
  // [length-sorted batches]). Returns one Generation per prompt, in the order of `prompts`;
  // `stats` receives the sums over the batches. Throws as generate(), and InputError for a
  // batch_size below 1. With sampling, which random draws a prompt gets depends on the batches
  // (still the same for the same prompts, options and batch_size).
  std::vector<Generation> generate_all(const std::vector<std::vector<int32_t>>& prompts,
                                       const SamplingOptions& options, int64_t batch_size,
                                       GenerationStats* stats = nullptr);

  // With a prefix-tuning adapter attached to the model: the block (task) whose prefix every
  // generation starts from (TransformerImpl::prefill_prefix). -1 = none.
  void set_prefix_block(int64_t block) { prefix_block_ = block; }

 private:
  TransformerImpl& model_;
  const Tokenizer* tokenizer_;
  int64_t prefix_block_ = -1;
};

}  // namespace pft
