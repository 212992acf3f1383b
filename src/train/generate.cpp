// Batched generation over the KV cache: prefill, then one token per step. See generate.h.
#include "train/generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/format.h"
#include "data/utf8.h"
#include "model/adapters.h"
#include "model/kv_cache.h"

namespace pft {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Steps 1-2 of generate.h on logits (B, V) fp32 CPU: the chosen ids (B) int64.
class TokenChooser {
 public:
  // Ids >= `allowed` (model rows the tokenizer has no token for) are never chosen.
  TokenChooser(const SamplingOptions& o, int64_t batch, int64_t vocab, int64_t allowed)
      : o_(o), gen_(at::make_generator<at::CPUGeneratorImpl>(o.seed)), allowed_(allowed) {
    if (o.repetition_penalty != 1.0) seen_ = at::zeros({batch, vocab}, at::kFloat);
  }

  // Marks `ids` (B, T) int64 as seen (prompt tokens, then each chosen token). `valid` (B, T)
  // bool excludes padding; undefined = all.
  void observe(const at::Tensor& ids, const at::Tensor& valid) {
    if (!seen_.defined()) return;
    // Counts, so a padding slot holding the same id as a real token cannot clear its mark.
    seen_.scatter_add_(1, ids, valid.defined() ? valid.to(at::kFloat) : at::ones(ids.sizes()));
  }

  // Keeps the rows `rows` (int64 (B') indexes) of the repetition-penalty state.
  void keep_rows(const at::Tensor& rows) {
    if (seen_.defined()) seen_ = seen_.index_select(0, rows);
  }

  at::Tensor choose(at::Tensor logits) {
    const int64_t vocab = logits.size(-1);
    if (allowed_ < vocab)
      logits.narrow(-1, allowed_, vocab - allowed_).fill_(-std::numeric_limits<float>::infinity());
    if (seen_.defined()) {
      const double p = o_.repetition_penalty;
      logits = at::where(seen_ > 0, at::where(logits < 0, logits * p, logits / p), logits);
    }
    if (o_.temperature <= 0.0) return logits.argmax(-1);
    logits = logits / o_.temperature;
    const double neg_inf = -std::numeric_limits<double>::infinity();
    if (o_.top_k > 0 && o_.top_k < vocab) {
      const auto kth = std::get<0>(logits.topk(o_.top_k, -1)).narrow(-1, o_.top_k - 1, 1);
      logits = logits.masked_fill(logits < kth, neg_inf);
    }
    if (o_.top_p < 1.0) {
      const auto [sorted, order] = logits.sort(-1, /*descending=*/false);
      auto remove = sorted.softmax(-1).cumsum(-1) <= (1.0 - o_.top_p);
      remove.narrow(-1, vocab - 1, 1).fill_(false);  // the most likely token stays
      logits = logits.masked_fill(remove.scatter(-1, order, remove), neg_inf);
    }
    return at::multinomial(logits.softmax(-1), 1, /*replacement=*/false, gen_).squeeze(-1);
  }

 private:
  const SamplingOptions& o_;
  at::Generator gen_;
  int64_t allowed_;
  at::Tensor seen_;  // (B, V) fp32 counts: tokens the repetition penalty applies to (> 0)
};

}  // namespace

void validate_sampling(const SamplingOptions& o) {
  const auto bad = [](const char* flag, const std::string& what) {
    throw InputError(fmt::format("{}: {}", flag, what));
  };
  if (o.max_new_tokens < 1) bad("--max-new-tokens", "must be at least 1");
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature))
    bad("--temperature", "must be >= 0 (0 = greedy)");
  if (o.top_k < 0) bad("--top-k", "must be >= 0 (0 = off)");
  if (!(o.top_p > 0.0 && o.top_p <= 1.0)) bad("--top-p", "must be in (0, 1] (1 = off)");
  if (!(o.repetition_penalty > 0.0) || !std::isfinite(o.repetition_penalty))
    bad("--repetition-penalty", "must be > 0 (1 = off)");
  for (const auto& s : o.stop)
    if (s.empty()) bad("--stop", "stop strings must not be empty");
}

std::string to_valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t i = 0; i < bytes.size();) {
    const utf8::Char c = utf8::decode_char(s, i, bytes.size());
    if (c.cp == utf8::kInvalidCodePoint)
      out += "\xEF\xBF\xBD";
    else
      out.append(bytes.substr(i, c.len));
    i += c.len;
  }
  return out;
}

void GenerationStats::add(const GenerationStats& o) {
  prompts += o.prompts;
  prompt_tokens += o.prompt_tokens;
  new_tokens += o.new_tokens;
  prefill_s += o.prefill_s;
  decode_s += o.decode_s;
}

Generator::Generator(TransformerImpl& model, const Tokenizer* tokenizer)
    : model_(model), tokenizer_(tokenizer) {}

std::vector<Generation> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                            const SamplingOptions& o, GenerationStats* stats) {
  validate_sampling(o);
  if (!o.stop.empty() && tokenizer_ == nullptr)
    throw InputError("--stop: stop strings need a tokenizer");
  const ModelSpec& spec = model_.spec();
  const auto b = static_cast<int64_t>(prompts.size());
  std::vector<Generation> out(prompts.size());
  if (b == 0) return out;

  // Prompt tuning's virtual tokens (model/adapters.h) are ids past the vocabulary.
  const auto& adapters = model_.adapters();
  const int64_t ids_end = adapters && adapters->prompt().defined()
                              ? spec.vocab_size + adapters->prompt().size(0)
                              : spec.vocab_size;
  int64_t longest = 0, prompt_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw InputError(fmt::format("prompt {} is empty (no tokens)", i));
    for (int32_t id : prompts[i])
      if (id < 0 || id >= ids_end)
        throw InputError(
            fmt::format("prompt {} holds token id {}, outside the model's "
                        "vocabulary of {}",
                        i, id, spec.vocab_size));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[i].size()));
    prompt_tokens += static_cast<int64_t>(prompts[i].size());
  }
  // Prefix tuning: n prefix slots first; positions are shifted by n (TransformerImpl).
  const int64_t pre = prefix_block_ >= 0 ? model_.adapters()->spec().prefix_tokens : 0;
  if (longest + pre >= spec.max_seq_len)
    throw InputError(
        fmt::format("a prompt of {} tokens{} leaves no room to generate: the model's "
                    "max_seq_len is {}",
                    longest, pre > 0 ? fmt::format(" after a prefix of {}", pre) : "",
                    spec.max_seq_len));
  const int64_t capacity = std::min(spec.max_seq_len - pre, longest + o.max_new_tokens);
  const int64_t steps = capacity - longest;  // new tokens per row at most

  // Left-padded prompt ids, per-row positions, valid slots.
  std::vector<int64_t> ids(static_cast<size_t>(b * longest), 0), pos(ids.size(), 0);
  auto valid = at::ones({b, pre + capacity}, at::kBool);
  std::vector<int64_t> pad(static_cast<size_t>(b));
  bool padded = false;
  for (int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    const int64_t n = static_cast<int64_t>(p.size()), left = longest - n;
    pad[static_cast<size_t>(r)] = left;
    padded = padded || left > 0;
    if (left > 0) valid[r].narrow(0, pre, left).fill_(false);
    for (int64_t j = 0; j < n; ++j) {
      ids[static_cast<size_t>(r * longest + left + j)] = p[static_cast<size_t>(j)];
      pos[static_cast<size_t>(r * longest + left + j)] = j;
    }
  }
  const auto device = model_.parameters().front().device();
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  const at::Tensor prompt_ids = at::from_blob(ids.data(), {b, longest}, long_opts).clone();
  const at::Tensor prompt_pos = at::from_blob(pos.data(), {b, longest}, long_opts);

  c10::InferenceMode inference;
  KvCache cache(spec.n_layers, b, pre + capacity);
  if (padded) cache.set_key_valid(valid.to(device));
  if (pre > 0) model_.prefill_prefix(cache, prefix_block_);
  const int64_t allowed = tokenizer_ != nullptr
                              ? std::min<int64_t>(spec.vocab_size, tokenizer_->vocab_size())
                              : spec.vocab_size;
  TokenChooser chooser(o, b, spec.vocab_size, allowed);
  // Prompt tuning's virtual tokens (ids >= V) are not text: the penalties never see them.
  at::Tensor seen = prompt_ids.lt(spec.vocab_size);
  if (padded) seen.logical_and_(valid.narrow(1, pre, longest));
  chooser.observe(prompt_ids.clamp_max(spec.vocab_size - 1), seen);

  GenerationStats st;
  st.prompts = b;
  st.prompt_tokens = prompt_tokens;
  auto t0 = Clock::now();
  at::Tensor logits = model_.forward_cached(prompt_ids.to(device), prompt_pos.to(device), cache)
                          .select(1, 0)
                          .to(at::kCPU, at::kFloat);  // (B, V)
  st.prefill_s = seconds_since(t0);
  t0 = Clock::now();

  size_t longest_stop = 0;
  for (const auto& s : o.stop) longest_stop = std::max(longest_stop, s.size());
  std::vector<bool> live(static_cast<size_t>(b), true);
  std::vector<size_t> checked(static_cast<size_t>(b), 0);  // text length already searched
  int64_t remaining = b;
  // The batch rows still in the cache (and in `logits`, the chooser), in cache order. Finished
  // rows are dropped from all three once they are an eighth of them (Note [dropping finished
  // rows]); until then they ride along and their tokens are ignored.
  std::vector<int64_t> active(static_cast<size_t>(b));
  std::iota(active.begin(), active.end(), int64_t{0});
  std::vector<int64_t> step_pos, keep;
  for (int64_t n = 0; n < steps && remaining > 0; ++n) {
    const at::Tensor next = chooser.choose(logits).contiguous();  // (A) int64
    const int64_t* next_ids = next.data_ptr<int64_t>();
    int64_t dead = 0;
    for (size_t i = 0; i < active.size(); ++i) {
      const auto ri = static_cast<size_t>(active[i]);
      if (!live[ri]) {
        ++dead;
        continue;
      }
      Generation& g = out[ri];
      const auto id = static_cast<int32_t>(next_ids[i]);
      ++st.new_tokens;
      if (std::find(o.eos_ids.begin(), o.eos_ids.end(), id) != o.eos_ids.end()) {
        g.finish_reason = "eos";
      } else {
        g.tokens.push_back(id);
        if (!o.stop.empty()) {
          g.text = tokenizer_->decode(g.tokens);
          const size_t from = checked[ri] > longest_stop ? checked[ri] - longest_stop : 0;
          size_t cut = std::string::npos;
          for (const auto& s : o.stop) cut = std::min(cut, g.text.find(s, from));
          if (cut != std::string::npos) {
            g.text.resize(cut);
            g.finish_reason = "stop";
          }
          checked[ri] = g.text.size();
        }
        if (g.finish_reason.empty() && n + 1 == steps) g.finish_reason = "length";
      }
      if (!g.finish_reason.empty()) {
        live[ri] = false;
        --remaining;
        ++dead;
      }
    }
    if (remaining == 0 || n + 1 == steps) break;
    at::Tensor chosen = next;
    if (dead * 8 >= static_cast<int64_t>(active.size())) {
      keep.clear();
      for (size_t i = 0; i < active.size(); ++i)
        if (live[static_cast<size_t>(active[i])]) keep.push_back(static_cast<int64_t>(i));
      const at::Tensor rows =
          at::from_blob(keep.data(), {static_cast<int64_t>(keep.size())}, long_opts).clone();
      cache.keep_rows(rows.to(device));
      chooser.keep_rows(rows);
      chosen = next.index_select(0, rows);
      for (size_t i = 0; i < keep.size(); ++i) active[i] = active[static_cast<size_t>(keep[i])];
      active.resize(keep.size());
    }
    const auto a = static_cast<int64_t>(active.size());
    step_pos.resize(active.size());
    for (size_t i = 0; i < active.size(); ++i) {
      const auto ri = static_cast<size_t>(active[i]);
      step_pos[i] = longest - pad[ri] + n;
    }
    const at::Tensor step = chosen.view({a, 1});
    chooser.observe(step, at::Tensor());
    logits = model_
                 .forward_cached(step.to(device),
                                 at::from_blob(step_pos.data(), {a, 1}, long_opts).to(device),
                                 cache)
                 .select(1, 0)
                 .to(at::kCPU, at::kFloat);
  }
  st.decode_s = seconds_since(t0);
  if (tokenizer_ != nullptr)
    for (auto& g : out)
      if (g.finish_reason != "stop") g.text = tokenizer_->decode(g.tokens);
  if (stats != nullptr) *stats = st;
  return out;
}

std::vector<Generation> Generator::generate_all(const std::vector<std::vector<int32_t>>& prompts,
                                                const SamplingOptions& o, int64_t batch_size,
                                                GenerationStats* stats) {
  if (batch_size < 1) throw InputError("generation batch size must be at least 1");
  // Longest first (Note [length-sorted batches]); ties keep their order.
  std::vector<size_t> order(prompts.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return prompts[a].size() > prompts[b].size();
  });
  std::vector<Generation> out(prompts.size());
  GenerationStats total;
  std::vector<std::vector<int32_t>> batch;
  for (size_t first = 0; first < order.size(); first += static_cast<size_t>(batch_size)) {
    const size_t last = std::min(order.size(), first + static_cast<size_t>(batch_size));
    batch.clear();
    for (size_t i = first; i < last; ++i) batch.push_back(prompts[order[i]]);
    GenerationStats st;
    std::vector<Generation> part = generate(batch, o, &st);
    total.add(st);
    for (size_t i = first; i < last; ++i) out[order[i]] = std::move(part[i - first]);
  }
  if (stats != nullptr) *stats = total;
  return out;
}

}  // namespace pft
