// The GGUF writer and exporter without Python (model/gguf_writer.h, model/gguf_export.h):
//   - the byte layout of a written file, read back field by field here: magic, version, counts,
//     typed metadata, tensor infos with reversed dims and aligned offsets, data at its offset;
//   - Q8_0 blocks: fp16 scale max|x| / 127, values round(x / d) half away from zero, so each
//     dequantized value is within d / 2 of the input; all-zero blocks stay zero;
//   - a Llama model exported with its tokenizer: the tensor names, types per dtype and the
//     q_proj / k_proj row permutation (undone here, the weights come back exactly);
//   - refusals: GPT-2, pft's `byte` tokenizer, a prompt-tuning adapter, a bad --dtype.
// Reading the files with the `gguf` package and transformers: gguf_export_cli_test.cpp.
#include <gtest/gtest.h>

#include <c10/util/Half.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <map>

#include "core/error.h"
#include "core/format.h"
#include "data/bpe.h"
#include "model/adapters.h"
#include "model/gguf_export.h"
#include "model/gguf_writer.h"
#include "model/transformer.h"
#include "model_test_util.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

// A minimal GGUF reader over a byte string: just enough to check what the writer laid out.
struct Cursor {
  std::string bytes;
  size_t at = 0;
  template <class T>
  T get() {
    T v;
    EXPECT_LE(at + sizeof(T), bytes.size());
    std::memcpy(&v, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  std::string str() {
    const auto n = get<uint64_t>();
    std::string s = bytes.substr(at, n);
    at += n;
    return s;
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct ParsedTensor {
  std::vector<uint64_t> ne;
  uint32_t type;
  uint64_t offset;
};

// Parses header, metadata (keys -> a printable value) and tensor infos; returns the data start.
size_t parse(Cursor& c, std::map<std::string, std::string>& meta,
             std::map<std::string, ParsedTensor>& tensors) {
  EXPECT_EQ(c.get<uint32_t>(), 0x46554747u);  // "GGUF"
  EXPECT_EQ(c.get<uint32_t>(), 3u);
  const auto n_tensors = c.get<uint64_t>();
  const auto n_kv = c.get<uint64_t>();
  const auto scalar = [&](uint32_t type) -> std::string {
    switch (type) {
      case 4: return std::to_string(c.get<uint32_t>());
      case 5: return std::to_string(c.get<int32_t>());
      case 6: return fmt::format("{}", c.get<float>());
      case 7: return c.get<uint8_t>() ? "true" : "false";
      case 8: return c.str();
    }
    ADD_FAILURE() << "unexpected value type " << type;
    return "";
  };
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str();
    const auto type = c.get<uint32_t>();
    if (type == 9) {
      const auto et = c.get<uint32_t>();
      const auto n = c.get<uint64_t>();
      std::string joined;
      for (uint64_t k = 0; k < n; ++k) joined += (k ? "|" : "") + scalar(et);
      meta[key] = joined;
    } else {
      meta[key] = scalar(type);
    }
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = c.str();
    ParsedTensor t;
    const auto dims = c.get<uint32_t>();
    for (uint32_t d = 0; d < dims; ++d) t.ne.push_back(c.get<uint64_t>());
    t.type = c.get<uint32_t>();
    t.offset = c.get<uint64_t>();
    EXPECT_EQ(t.offset % kGgufAlignment, 0u) << name;
    tensors[name] = t;
  }
  return (c.at + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment;
}

TEST(GgufWriter, LaysOutHeaderMetadataTensorInfosAndAlignedData) {
  const fs::path dir = test::fresh_temp_dir("gguf-writer");
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.rope.freq_base", 100000.0f);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_strings("tokenizer.ggml.tokens", {"a", "bc", ""});
  w.add_i32s("tokenizer.ggml.token_type", {1, 3, 5});
  std::vector<std::byte> a(3 * 5 * 4), b(7 * 4);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::byte>(i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>(200 - i);
  w.add_tensor("m", {3, 5}, GgmlType::F32, a);
  w.add_tensor("v", {7}, GgmlType::F32, b);
  EXPECT_THROW(w.add_tensor("m", {1}, GgmlType::F32, std::vector<std::byte>(4)), InputError);
  EXPECT_THROW(w.add_tensor("bad", {2, 2}, GgmlType::F32, std::vector<std::byte>(15)), InputError);
  EXPECT_THROW(w.add_tensor("q", {2, 40}, GgmlType::Q8_0, std::vector<std::byte>(80)), InputError);
  EXPECT_THROW(w.add_u32("llama.block_count", 3), InputError);
  w.write(dir / "t.gguf");

  Cursor c{read_file(dir / "t.gguf")};
  std::map<std::string, std::string> meta;
  std::map<std::string, ParsedTensor> tensors;
  const size_t data = parse(c, meta, tensors);
  EXPECT_EQ(meta["general.architecture"], "llama");
  EXPECT_EQ(meta["llama.block_count"], "2");
  EXPECT_EQ(meta["llama.rope.freq_base"], "100000");
  EXPECT_EQ(meta["tokenizer.ggml.add_bos_token"], "true");
  EXPECT_EQ(meta["tokenizer.ggml.tokens"], "a|bc|");
  EXPECT_EQ(meta["tokenizer.ggml.token_type"], "1|3|5");
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_EQ(tensors["m"].ne, (std::vector<uint64_t>{5, 3}));  // ggml order: innermost first
  EXPECT_EQ(tensors["v"].ne, (std::vector<uint64_t>{7}));
  EXPECT_EQ(tensors["m"].offset, 0u);
  EXPECT_EQ(tensors["v"].offset, 64u);  // 60 bytes padded to 32
  EXPECT_EQ(std::memcmp(c.bytes.data() + data, a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp(c.bytes.data() + data + 64, b.data(), b.size()), 0);
  EXPECT_EQ(c.bytes.size(), data + 64 + 32);
}

TEST(GgufExport, Q8_0BlocksAreScaledRoundedInt8) {
  // Seeded, and below 3.0 so that the value set below is its block's largest on every run.
  at::Tensor x = at::randn({2, 64}, init_generator(7, "q8_0"), at::TensorOptions().dtype(at::kFloat))
                     .clamp(-2.5, 2.5);
  x[1].slice(0, 32, 64).zero_();  // an all-zero block
  x[0][5] = 3.0f;                 // the largest of block 0
  const std::vector<std::byte> q = quantize_q8_0(x.contiguous());
  ASSERT_EQ(q.size(), 4u * kQ8_0BlockBytes);
  for (int64_t b = 0; b < 4; ++b) {
    const std::byte* block = q.data() + b * kQ8_0BlockBytes;
    c10::Half d;
    std::memcpy(&d.x, block, 2);
    const at::Tensor v = x.view({4, 32})[b];
    const float amax = v.abs().max().item<float>();
    EXPECT_EQ(static_cast<float>(d), static_cast<float>(c10::Half(amax / 127.0f))) << b;
    for (int64_t j = 0; j < 32; ++j) {
      const auto qi = static_cast<int8_t>(block[2 + j]);
      const float want = amax == 0.0f ? 0.0f : std::round(v[j].item<float>() / (amax / 127.0f));
      EXPECT_EQ(qi, static_cast<int8_t>(want)) << b << " " << j;
      EXPECT_NEAR(static_cast<float>(d) * qi, v[j].item<float>(), amax / 127.0f * 0.51f + 1e-3f * amax);
    }
  }
  EXPECT_EQ(static_cast<int8_t>(q[2 + 5]), 127);  // block 0's largest, 3.0 -> +127
}

ModelSpec tiny_llama() {
  ModelSpec s;
  s.family = ModelFamily::Llama;
  s.vocab_size = 260;
  s.d_model = 64;
  s.n_layers = 2;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 16;
  s.d_ff = 96;
  s.max_seq_len = 64;
  s.rope_theta = 10000.0;
  s.norm_eps = 1e-5;
  s.tie_embeddings = true;
  return s;
}

// A byte-level tokenizer.json: the 256 byte symbols, one merge, <|endoftext|> (special) and a
// non-special added token; with a tokenizer_config.json naming eos and a chat template.
fs::path write_tokenizer(const fs::path& dir) {
  fs::create_directories(dir);
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string token = bytes_to_token_text(std::string(1, static_cast<char>(b))), escaped;
    for (char ch : token) {
      if (ch == '"' || ch == '\\') escaped.push_back('\\');
      escaped.push_back(ch);
    }
    vocab += fmt::format("\"{}\": {}, ", escaped, b);
  }
  vocab += "\"ab\": 256";
  test::write_text_file(dir / "tokenizer.json", fmt::format(R"({{"version": "1.0",
  "added_tokens": [
    {{"id": 257, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false,
      "normalized": false, "special": true}},
    {{"id": 258, "content": "<tool>", "single_word": false, "lstrip": false, "rstrip": false,
      "normalized": false, "special": false}}],
  "normalizer": null, "pre_tokenizer": {{"type": "ByteLevel", "add_prefix_space": false,
    "trim_offsets": true, "use_regex": true}},
  "post_processor": null, "decoder": {{"type": "ByteLevel"}},
  "model": {{"type": "BPE", "dropout": null, "unk_token": null, "ignore_merges": false,
    "vocab": {{{}}}, "merges": ["a b"]}}}})", vocab));
  test::write_text_file(dir / "tokenizer_config.json",
                        R"({"eos_token": "<|endoftext|>", "chat_template": "{{ messages }}"})");
  return dir;
}

TEST(GgufExport, LlamaTensorsTokenizerAndRopePermutation) {
  const fs::path dir = test::fresh_temp_dir("gguf-export");
  Transformer model(tiny_llama());
  model->reset_parameters(7);
  GgufExportOptions o;
  o.tokenizer = write_tokenizer(dir / "tok");
  for (const GgufDtype dtype : {GgufDtype::kF32, GgufDtype::kF16, GgufDtype::kQ8_0}) {
    o.dtype = dtype;
    const fs::path file = dir / fmt::format("m-{}.gguf", gguf_dtype_name(dtype));
    const GgufExportReport r = export_gguf_model(*model, file, o);
    EXPECT_EQ(r.tensors, 2 + 2 * 9);  // token_embd, output_norm, 9 per block; tied: no output
    EXPECT_EQ(r.pre, "gpt-2");
    Cursor c{read_file(file)};
    std::map<std::string, std::string> meta;
    std::map<std::string, ParsedTensor> tensors;
    const size_t data = parse(c, meta, tensors);
    EXPECT_EQ(meta["general.file_type"], dtype == GgufDtype::kF32 ? "0" : dtype == GgufDtype::kF16 ? "1" : "7");
    EXPECT_EQ(meta["llama.attention.head_count_kv"], "2");
    EXPECT_EQ(meta["llama.rope.dimension_count"], "16");
    EXPECT_EQ(meta["llama.vocab_size"], "260");
    EXPECT_EQ(meta["tokenizer.ggml.model"], "gpt2");
    EXPECT_EQ(meta["tokenizer.ggml.merges"], "a b");
    EXPECT_EQ(meta["tokenizer.ggml.eos_token_id"], "257");
    EXPECT_EQ(meta["tokenizer.ggml.add_bos_token"], "false");
    EXPECT_EQ(meta["tokenizer.chat_template"], "{{ messages }}");
    const std::string tokens = meta["tokenizer.ggml.tokens"];
    EXPECT_NE(tokens.find("|ab|<|endoftext|>|<tool>|[PAD259]"), std::string::npos);
    const std::string types = meta["tokenizer.ggml.token_type"];
    EXPECT_EQ(types.substr(types.size() - 7), "1|3|4|5");  // ab, special, added, hole
    EXPECT_EQ(tensors.count("output.weight"), 0u);
    const uint32_t matrix_type = dtype == GgufDtype::kF32 ? 0 : dtype == GgufDtype::kF16 ? 1 : 8;
    EXPECT_EQ(tensors["blk.1.ffn_down.weight"].type, matrix_type);
    EXPECT_EQ(tensors["blk.1.ffn_down.weight"].ne, (std::vector<uint64_t>{96, 64}));
    EXPECT_EQ(tensors["blk.0.attn_norm.weight"].type, 0u);
    if (dtype != GgufDtype::kF32) continue;
    // f32: q_proj and k_proj come back exactly through the inverse permutation (transformers'
    // reverse_permute); the others byte for byte.
    const auto tensor_at = [&](const std::string& name, std::vector<int64_t> shape) {
      at::Tensor t = at::empty(shape, at::kFloat);
      std::memcpy(t.data_ptr(), c.bytes.data() + data + tensors.at(name).offset, t.nbytes());
      return t;
    };
    const auto unpermute = [](const at::Tensor& w, int64_t heads) {
      return w.reshape({heads, w.size(0) / heads / 2, 2, w.size(1)}).transpose(1, 2).reshape(w.sizes());
    };
    auto params = model->named_parameters();
    EXPECT_TRUE(at::equal(unpermute(tensor_at("blk.1.attn_q.weight", {64, 64}), 4),
                          params["model.layers.1.self_attn.q_proj.weight"]));
    EXPECT_TRUE(at::equal(unpermute(tensor_at("blk.1.attn_k.weight", {32, 64}), 2),
                          params["model.layers.1.self_attn.k_proj.weight"]));
    EXPECT_FALSE(at::equal(tensor_at("blk.1.attn_k.weight", {32, 64}),
                           params["model.layers.1.self_attn.k_proj.weight"]));
    EXPECT_TRUE(at::equal(tensor_at("blk.0.attn_v.weight", {32, 64}),
                          params["model.layers.0.self_attn.v_proj.weight"]));
    EXPECT_TRUE(at::equal(tensor_at("token_embd.weight", {260, 64}),
                          params["model.embed_tokens.weight"]));
  }
}

TEST(GgufExport, RefusesGpt2ByteTokenizerPromptAdaptersAndBadDtype) {
  const fs::path dir = test::fresh_temp_dir("gguf-refuse");
  GgufExportOptions o;
  o.tokenizer = write_tokenizer(dir / "tok");
  const auto message = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ModelSpec gpt2 = test::parity_spec("gpt2", 64);
  Transformer g(gpt2);
  EXPECT_NE(message([&] { export_gguf_model(*g, dir / "g.gguf", o); }).find("use --format hf"),
            std::string::npos);
  Transformer model(tiny_llama());
  GgufExportOptions byte = o;
  byte.tokenizer = "byte";
  EXPECT_NE(message([&] { export_gguf_model(*model, dir / "b.gguf", byte); }).find("--tokenizer"),
            std::string::npos);
  AdapterSpec a;
  a.prompt = true;
  a.prompt_tokens = 4;
  model->attach_adapters(std::make_shared<Adapters>(model->spec(), a, model->lora_candidates()));
  const std::string m = message([&] { export_gguf_model(*model, dir / "p.gguf", o); });
  EXPECT_NE(m.find("prompt or prefix tuning adapter"), std::string::npos) << m;
  EXPECT_NE(m.find("--format hf"), std::string::npos) << m;
  EXPECT_NE(m.find("pft generate"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(dir / "p.gguf"));
  EXPECT_NE(message([] { parse_gguf_dtype("q4_0"); }).find("f32, f16 or q8_0"), std::string::npos);
}

}  // namespace
}  // namespace pft
