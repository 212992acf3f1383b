// Pretrained Hugging Face models in pft, checked against transformers itself.
//
// tests/reference/hf_fixtures.py (run once per process) saves tiny random GPT-2 and Llama models
// with save_pretrained -- single file, sharded with an index, fp16 / bf16 on disk, GPT2Model
// names, GQA, head_dim != hidden/heads, tied SmolLM-style -- and transformers' own outputs on
// them. For each, pft loads the directory and must give:
//   * logits within 1e-4 (fp32) of transformers', by the full forward and by the KV cache;
//   * greedy generation of 32 tokens identical token for token (also with repetition penalty
//     1.3, and for a left-padded batch of two prompts);
//   * the tokenizer's ids for a text (BOS included where the tokenizer adds one).
// Export round trip: pft writes the model it loaded back as a Hugging Face directory;
// transformers loads that (AutoModelForCausalLM, AutoTokenizer) and must give the same logits,
// generation and token ids (hf_fixtures.py check-export).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/format.h"
#include "data/tokenizer.h"
#include "model/hf_export.h"
#include "model/hf_import.h"
#include "model/kv_cache.h"
#include "model_test_util.h"
#include "train/generate.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
constexpr double kLogitsAtol = 1e-4;
constexpr int64_t kNewTokens = 32;
const char* kText = "Hello world! The quick brown fox jumps over the lazy dog 12345.";

// CTest's fixture test `hf_fixtures_make` writes them to PFT_HF_FIXTURES before these tests run;
// a binary run by hand makes them itself when they are not there.
const fs::path& fixtures() {
  static const fs::path dir = [] {
    const fs::path d = PFT_HF_FIXTURES;
    if (!fs::exists(d / "manifest.json")) {
      const int rc = test::run_reference_script("hf_fixtures.py", {"make", "--out", d.string()});
      if (rc != 0) ADD_FAILURE() << "hf_fixtures.py make failed (exit " << rc << ")";
    }
    return d;
  }();
  return dir;
}

std::map<std::string, at::Tensor> reference(const std::string& variant) {
  std::map<std::string, at::Tensor> out;
  for (auto& [k, v] : test::load_tensors(fixtures() / variant / "reference.pt")) out[k] = v;
  return out;
}

std::vector<int32_t> row(const at::Tensor& t, int64_t r) {
  const auto x = t[r].to(at::kLong).contiguous();
  return std::vector<int32_t>(x.data_ptr<int64_t>(), x.data_ptr<int64_t>() + x.numel());
}

SamplingOptions greedy() {
  SamplingOptions o;
  o.max_new_tokens = kNewTokens;
  return o;  // no eos ids: always 32 tokens, as the reference
}

class HfParity : public ::testing::TestWithParam<std::string> {};

TEST_P(HfParity, LogitsGenerationAndTokenizer) {
  const std::string variant = GetParam();
  const fs::path dir = fixtures() / variant;
  auto ref = reference(variant);
  HfModelInfo info;
  HfLoadReport report;
  Transformer model = load_hf_model(dir, &info, &report);
  std::cout << variant << ": " << report.tensors << " tensors from " << report.files << " file(s), "
            << report.dtypes << "\n";

  torch::NoGradGuard no_grad;
  const at::Tensor ids = ref["input_ids"];
  const int64_t b = ids.size(0), t = ids.size(1);
  const at::Tensor pos = at::arange(t, at::kLong).expand({b, t}).contiguous();
  const at::Tensor logits = model->forward(ids, pos, at::Tensor());
  const double diff = (logits - ref["logits"]).abs().max().item<double>();
  EXPECT_LE(diff, kLogitsAtol) << variant;
  std::cout << "  logits max abs diff " << diff << "\n";
  KvCache cache(info.spec.n_layers, b, t);
  const at::Tensor cached = model->forward_cached(ids, pos, cache, /*last_only=*/false);
  EXPECT_LE((cached - ref["logits"]).abs().max().item<double>(), kLogitsAtol) << variant;

  const auto tokenizer = load_tokenizer(dir.string());
  Generator gen(*model, tokenizer.get());
  const auto g = gen.generate({row(ref["greedy_prompt"], 0)}, greedy());
  EXPECT_EQ(g[0].tokens, row(ref["greedy_tokens"], 0)) << variant;

  SamplingOptions penalized = greedy();
  penalized.repetition_penalty = 1.3;
  EXPECT_EQ(gen.generate({row(ref["greedy_prompt"], 0)}, penalized)[0].tokens,
            row(ref["penalized_tokens"], 0))
      << variant;

  // The left-padded batch: prompts are the unmasked tokens of each row.
  std::vector<std::vector<int32_t>> prompts;
  for (int64_t r = 0; r < ref["batch_ids"].size(0); ++r) {
    const auto mask = ref["batch_mask"][r].to(at::kBool);
    prompts.push_back(row(ref["batch_ids"][r].masked_select(mask).unsqueeze(0), 0));
  }
  const auto batched = gen.generate(prompts, greedy());
  for (size_t r = 0; r < prompts.size(); ++r)
    EXPECT_EQ(batched[r].tokens, row(ref["batch_tokens"], static_cast<int64_t>(r)))
        << variant << " batch row " << r;

  std::vector<int32_t> text_ids = info.prompt_prefix_ids;
  tokenizer->encode_append(kText, /*with_specials=*/true, text_ids);
  EXPECT_EQ(text_ids, row(ref["text_ids"], 0)) << variant;
}

INSTANTIATE_TEST_SUITE_P(Variants, HfParity,
                         ::testing::Values("gpt2", "gpt2_sharded", "gpt2_fp16", "gpt2_base",
                                           "llama_gqa", "llama_gqa_sharded", "smollm_bf16"));

class HfExport : public ::testing::TestWithParam<std::string> {};

TEST_P(HfExport, TransformersLoadsTheExportWithIdenticalLogits) {
  const std::string variant = GetParam();
  const fs::path src = fixtures() / variant;
  HfModelInfo info;
  Transformer model = load_hf_model(src, &info);
  const fs::path out = test::fresh_temp_dir("hf-export-" + variant);
  HfExportOptions o;
  o.tokenizer = src;
  o.source_model = src;
  o.eos_token_ids = info.eos_token_ids;
  o.bos_token_id = info.bos_token_id;
  o.pad_token_id = info.pad_token_id;
  export_hf_model(*model, out, o);
  EXPECT_EQ(test::run_reference_script(
                "hf_fixtures.py", {"check-export", "--dir", out.string(), "--ref", src.string()}),
            0)
      << variant;
  // And pft reads its own export back exactly.
  Transformer back = load_hf_model(out);
  const auto a = model->named_parameters(), b = back->named_parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].value(), b[i].value()));
}

INSTANTIATE_TEST_SUITE_P(Variants, HfExport, ::testing::Values("gpt2", "llama_gqa", "smollm_bf16"));

}  // namespace
}  // namespace pft
