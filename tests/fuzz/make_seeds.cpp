// Writes the binary seed files of tests/fuzz/corpus/ with pft's own writers, so the corpora start
// from files pft really produces (tests/fuzz/make_seeds.sh runs it; the output is committed):
//   checkpoint/   a small checkpoint (ckpt/writer.h): /meta with config text, /model tensors of
//                 two dtypes, /data with int64s
//   token_store/  a small token store (data/token_store.h) with train and validation splits
//   gguf/         a GGUF v3 file (model/gguf_writer.h) with a tiny byte-level BPE tokenizer and
//                 F32 / F16 / Q8_0 tensors
//   safetensors/  a safetensors file (format in model/safetensors.h) and a sharded index
// Every file is read back with pft's reader before it is kept.
//   fuzz_make_seeds OUT_DIR
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ckpt/reader.h"
#include "ckpt/writer.h"
#include "core/gguf.h"
#include "data/bpe.h"
#include "data/gguf_tokenizer.h"
#include "data/token_store.h"
#include "model/gguf_writer.h"

namespace fs = std::filesystem;
using namespace pft;

namespace {

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

void write_checkpoints(const fs::path& dir) {
  ckpt::Contents c;
  c.group("/meta") = {{"step", int64_t{3}}, {"tokens_seen", int64_t{96}}, {"world_size", int64_t{1}},
                      {"pft_version", std::string("0.1.0")}, {"metric.loss", 1.25}};
  c.add_text("/meta/config", "run: {dir: runs/x}\ntrain: {steps: 3}\n");
  c.add_text("/meta/architecture", R"({"family": "gpt2", "d_model": 4})");
  const std::vector<float> w = {0.5f, -1.0f, 2.0f, 0.25f, 1.5f, -0.75f};
  c.add_copy("/model/wte", ckpt::DType::kFloat32, {2, 3}, bytes_of(w));
  const std::vector<uint16_t> h = {0x3c00, 0xbc00, 0x4000, 0x0000};
  c.add_copy("/model/ln.bias", ckpt::DType::kBFloat16, {4}, bytes_of(h));
  c.group("/data") = {{"version", int64_t{1}}, {"next_step", int64_t{3}}};
  const std::vector<int64_t> next = {5, 7};
  c.add_vector("/data/next_sample", ckpt::DType::kInt64, next);
  // Unsealed (the layout before the whole-file seal, Note [file seal] in core/hdf5.cpp): a
  // mutation of a sealed seed only reaches the seal check, while an unsealed one reaches HDF5,
  // as a crafted file does. The sealed seed covers the seal check itself.
  ckpt::WriteOptions unsealed;
  unsealed.seal = false;
  ckpt::write_checkpoint(dir / "step_00000003.h5", c, unsealed);
  ckpt::write_checkpoint(dir / "sealed_step_00000003.h5", c);
  for (const char* name : {"step_00000003.h5", "sealed_step_00000003.h5"}) {
    const ckpt::Verification v = ckpt::verify_checkpoint(dir / name);
    if (!v.ok) throw RuntimeFailure(std::string(name) + " does not verify: " + v.reason);
  }
}

void write_token_store(const fs::path& dir) {
  StoreInfo info;
  info.task = "add";
  info.tokenizer = "byte (258 ids)";
  info.seq_len = 32;
  const fs::path path = dir / "store.h5";
  TokenStoreWriter w(path, info, /*chunk_tokens=*/16);
  w.begin_split(Split::kTrain, {0, 1}, 3);
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> tokens(static_cast<size_t>(3 + i), 65 + i);
    std::vector<uint8_t> mask(tokens.size(), 0);
    mask.back() = 1;
    w.append(tokens, mask);
  }
  w.end_split();
  w.begin_split(Split::kValidation, {0}, 1);
  const std::vector<int32_t> tokens = {10, 20, 30, 256};
  const std::vector<uint8_t> mask = {0, 0, 1, 1};
  w.append(tokens, mask);
  w.end_split();
  w.commit();
  (void)TokenStore::open(path, std::nullopt)->split(Split::kTrain).num_tokens();
}

void write_gguf(const fs::path& dir) {
  GgufWriter g;
  g.add_string("general.architecture", "gpt2");
  g.add_string("general.name", "fuzz-seed");
  g.add_u32("gpt2.context_length", 64);
  g.add_string("tokenizer.ggml.model", "gpt2");
  g.add_string("tokenizer.ggml.pre", "default");
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(bytes_to_token_text(std::string(1, char(b))));
  tokens.push_back("Ġt");
  tokens.push_back("he");
  tokens.push_back("<|endoftext|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  g.add_strings("tokenizer.ggml.tokens", tokens);
  g.add_i32s("tokenizer.ggml.token_type", types);
  g.add_strings("tokenizer.ggml.merges", {"Ġ t", "h e"});
  g.add_u32("tokenizer.ggml.eos_token_id", 258);
  g.add_bool("tokenizer.ggml.add_bos_token", false);
  std::vector<float> f32 = {1.0f, -2.0f, 0.5f, 4.0f};
  std::vector<std::byte> f32b(sizeof(float) * f32.size());
  std::memcpy(f32b.data(), f32.data(), f32b.size());
  g.add_tensor("token_embd.weight", {2, 2}, GgmlType::F32, f32b);
  std::vector<std::byte> f16b(2 * 4);
  const uint16_t halves[4] = {0x3c00, 0xc000, 0x3800, 0x4400};
  std::memcpy(f16b.data(), halves, sizeof halves);
  g.add_tensor("output_norm.weight", {4}, GgmlType::F16, f16b);
  std::vector<std::byte> q8(kQ8_0BlockBytes, std::byte{1});
  q8[0] = std::byte{0x00};
  q8[1] = std::byte{0x3c};  // d = 1.0
  g.add_tensor("blk.0.attn_q.weight", {1, 32}, GgmlType::Q8_0, q8);
  const fs::path path = dir / "tiny.gguf";
  g.write(path);
  const gguf::File f(path);
  (void)read_gguf_tokenizer(f);
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void write_safetensors(const fs::path& dir) {
  // 8-byte header length, JSON header (padded to 8 bytes), data: F32 [2,2] then BF16 [3], I64 [1].
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b.bias":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("c.step":{"dtype":"I64","shape":[],"data_offsets":[24,32]}})";
  std::string header = json;
  while ((8 + header.size()) % 8 != 0) header += ' ';
  std::string file(8, '\0');
  uint64_t n = header.size();
  std::memcpy(file.data(), &n, 8);
  file += header;
  const float a[4] = {1.0f, 2.0f, -3.0f, 0.5f};
  file.append(reinterpret_cast<const char*>(a), sizeof a);
  const uint16_t b[4] = {0x3f80, 0x4000, 0xbf80, 0};
  file.append(reinterpret_cast<const char*>(b), sizeof b);
  const int64_t c = 42;
  file.append(reinterpret_cast<const char*>(&c), sizeof c);
  write_text(dir / "tiny.safetensors", file);
  // A sharded set in one input: the file, the separator, its index (fuzz_util.h).
  write_text(dir / "sharded.safetensors",
             file + "\n%%%%\n" +
                 R"({"metadata": {"total_size": 30}, "weight_map": {"a.weight": "model.safetensors", "b.bias": "model.safetensors"}})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR (writes OUT_DIR/<target>/...)\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  try {
    for (const char* t : {"checkpoint", "token_store", "gguf", "safetensors"})
      fs::create_directories(out / t);
    write_checkpoints(out / "checkpoint");
    write_token_store(out / "token_store");
    write_gguf(out / "gguf");
    write_safetensors(out / "safetensors");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
