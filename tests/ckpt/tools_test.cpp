// Config records (architecture changes refused naming the keys, other changes listed), the
// safetensors writer (header layout byte for byte), and the `pft ckpt` tool texts: ls, inspect,
// diff.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <fmt/format.h>
#include <hdf5.h>

#include <cstring>
#include <fstream>

#include "ckpt/config_record.h"
#include "ckpt/format.h"
#include "ckpt/export.h"
#include "ckpt/run_checkpoints.h"
#include "ckpt/safetensors_writer.h"
#include "ckpt/saver.h"
#include "ckpt/tools.h"
#include "ckpt/writer.h"
#include "ckpt_test_util.h"
#include "config/config.h"
#include "core/error.h"
#include "core/hdf5.h"

namespace pft::ckpt {
namespace {

namespace fs = std::filesystem;
using test::sample_contents;
using test::scratch_dir;

const char* kYaml =
    "model: {d_model: 64, n_layers: 2, n_heads: 4, vocab_size: 512, max_seq_len: 64}\n"
    "train: {steps: 10, global_batch_size: 8, lr: 0.001}\n"
    "data: {seq_len: 64}\n";

TEST(CkptConfig, FlattenHasEveryKeyAndArchitectureTheShapeKeys) {
  const Config c = parse_config(kYaml, "test.yaml");
  const FlatConfig flat = flatten_config(c);
  EXPECT_EQ(flat.at("model.d_model"), "64");
  EXPECT_EQ(flat.at("train.lr"), "0.001");
  EXPECT_EQ(flat.at("checkpoint.keep_last"), "3");
  EXPECT_EQ(flat_from_json(flat_to_json(flat), "x"), flat);
  const FlatConfig arch = architecture_keys(c);
  EXPECT_EQ(arch.at("model.n_kv_heads"), "4");  // resolved
  EXPECT_EQ(arch.at("data.tokenizer"), "byte");
  EXPECT_EQ(arch.count("train.lr"), 0u);
  EXPECT_EQ(arch.count("model.init_std"), 0u);
}

TEST(CkptConfig, ArchitectureChangeRefusedNamingKeys) {
  const Config saved = parse_config(kYaml, "a.yaml");
  const Config changed =
      parse_config(kYaml, "b.yaml", {"model.d_model=128", "data.tokenizer=gpt2"});
  try {
    check_resume_config("ck.h5", architecture_keys(saved), flatten_config(saved), changed);
    FAIL() << "an architecture change was accepted";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.d_model 64 -> 128"), std::string::npos) << m;
    EXPECT_NE(m.find("data.tokenizer byte -> gpt2"), std::string::npos) << m;
    EXPECT_NE(m.find("ck.h5"), std::string::npos) << m;
  }
}

// A file written before model.base_dtype existed has no such key in /meta/architecture: it
// resumes as the fp32 base it was, and is refused (naming the key) under a bf16 base.
TEST(CkptConfig, ArchitectureKeyAddedLaterReadsAsItsOldValue) {
  const Config saved = parse_config(kYaml, "a.yaml", {"train.method=lora"});
  FlatConfig old_arch = architecture_keys(saved);
  ASSERT_EQ(old_arch.erase("model.base_dtype"), 1u);
  EXPECT_NO_THROW(check_resume_config("old.h5", old_arch, flatten_config(saved), saved));
  const Config bf16 = parse_config(
      kYaml, "b.yaml", {"train.method=lora", "model.base_dtype=bf16", "train.precision=bf16"});
  try {
    check_resume_config("old.h5", old_arch, flatten_config(saved), bf16);
    FAIL() << "a bf16 base resumed an fp32 base's file";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.base_dtype fp32 -> bf16"), std::string::npos) << m;
  }
}

TEST(CkptConfig, HyperparameterChangesAllowedAndListed) {
  const Config saved = parse_config(kYaml, "a.yaml");
  const Config changed =
      parse_config(kYaml, "b.yaml", {"train.lr=0.01", "train.steps=20", "train.resume=auto"});
  const auto changes =
      check_resume_config("ck.h5", architecture_keys(saved), flatten_config(saved), changed);
  ASSERT_EQ(changes.size(), 2u);  // train.resume is not a change worth listing
  EXPECT_EQ(changes[0].key, "train.lr");
  EXPECT_EQ(changes[0].saved, "0.001");
  EXPECT_EQ(changes[0].current, "0.01");
  EXPECT_EQ(changes[1].key, "train.steps");
}

TEST(CkptSafetensors, HeaderAndDataLayout) {
  const auto dir = scratch_dir("st");
  std::vector<float> a{1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b{0x3f80};
  write_safetensors(
      dir / "m.safetensors",
      {{"x.weight", DType::kFloat32, {2, 3}, std::as_bytes(std::span<const float>(a))},
       {"y", DType::kBFloat16, {1}, std::as_bytes(std::span<const uint16_t>(b))}},
      {{"format", "pt"}});
  std::ifstream in(dir / "m.safetensors", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(all[static_cast<size_t>(i)]);
  EXPECT_EQ(n % 8, 0u);
  const boost::json::object h = boost::json::parse(all.substr(8, n)).as_object();
  EXPECT_EQ(h.at("__metadata__").at("format").as_string(), "pt");
  EXPECT_EQ(h.at("x.weight").at("dtype").as_string(), "F32");
  EXPECT_EQ(h.at("x.weight").at("data_offsets").as_array()[1].to_number<int>(), 24);
  EXPECT_EQ(h.at("y").at("dtype").as_string(), "BF16");
  EXPECT_EQ(h.at("y").at("data_offsets").as_array()[0].to_number<int>(), 24);
  ASSERT_EQ(all.size(), 8 + n + 26);
  EXPECT_EQ(std::memcmp(all.data() + 8 + n, a.data(), 24), 0);
  EXPECT_THROW(write_safetensors(dir / "bad.safetensors", {{"x", DType::kFloat32, {0}, {}},
                                                           {"x", DType::kFloat32, {0}, {}}}),
               InputError);
  fs::remove_all(dir);
}

TEST(CkptTools, ListInspectDiff) {
  const auto run = scratch_dir("tools");
  const fs::path dir = run / "checkpoints";
  {
    SaverOptions o;
    o.dir = dir;
    o.async = false;
    CheckpointSaver saver(o);
    saver.save(1, sample_contents(1), 0.0);
    saver.save(2, sample_contents(2), 0.0);
  }
  fs::resize_file(dir / checkpoint_file_name(1), 10);
  const CheckpointListing listing = list_run_checkpoints(run);
  const std::string& ls = listing.text;
  EXPECT_NE(ls.find("step_00000002.h5"), std::string::npos) << ls;
  EXPECT_NE(ls.find("latest: step_00000002.h5"), std::string::npos) << ls;
  EXPECT_NE(ls.find("INVALID"), std::string::npos) << ls;
  EXPECT_NE(ls.find("loss="), std::string::npos) << ls;
  EXPECT_EQ(listing.problem, "") << "an invalid file `latest` does not name is no problem";

  // `latest` naming the invalid file, a missing one, nothing usable: a problem, the table kept.
  const auto latest_says = [&](const std::string& text) {
    std::ofstream(dir / "latest") << text;
    return list_run_checkpoints(run);
  };
  CheckpointListing bad = latest_says(checkpoint_file_name(1) + "\n");
  EXPECT_NE(bad.problem.find("latest names step_00000001.h5, which is invalid: "),
            std::string::npos)
      << bad.problem;
  EXPECT_NE(bad.text.find("step_00000002.h5"), std::string::npos) << bad.text;
  bad = latest_says("step_00000009.h5\n");
  EXPECT_NE(bad.problem.find("latest names step_00000009.h5, which does not exist"),
            std::string::npos)
      << bad.problem;
  bad = latest_says("../elsewhere.h5\n");
  EXPECT_NE(bad.problem.find("latest: names no checkpoint file"), std::string::npos) << bad.problem;
  EXPECT_EQ(latest_says(checkpoint_file_name(2) + "\n").problem, "");

  const std::string info = inspect_checkpoint(dir / checkpoint_file_name(2));
  EXPECT_NE(info.find("step:        2"), std::string::npos) << info;
  const size_t row = info.find("\n/model/transformer.wte.weight ");
  ASSERT_NE(row, std::string::npos) << info;
  const std::string line = info.substr(row + 1, info.find('\n', row + 1) - row - 1);
  EXPECT_NE(line.find(" float32 "), std::string::npos) << line;
  EXPECT_NE(line.find(" (100, 10) "), std::string::npos) << line;
  EXPECT_NE(info.find("config:"), std::string::npos) << info;
  EXPECT_NE(info.find(fmt::format("format:      {} v{}, ", kFormatName, kFormatVersion)),
            std::string::npos)
      << info;
  {  // The version shown is the file's, not this reader's: mark a copy as written by version 1.
    const fs::path v1 = run / "v1.h5";
    fs::copy_file(dir / checkpoint_file_name(2), v1);
    const hid_t f = H5Fopen(v1.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    const hid_t a = H5Aopen(f, kAttrFormatVersion, H5P_DEFAULT);
    ASSERT_GE(a, 0);
    const int64_t one = 1;
    ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT64, &one), 0);
    H5Aclose(a);
    H5Fclose(f);
    {  // the edit changed the file: clear its user block and seal it again
      std::fstream io(v1, std::ios::in | std::ios::out | std::ios::binary);
      const std::string zeros(h5::kSealBytes, '\0');
      io.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    }
    h5::seal_file(v1);
    const std::string old = inspect_checkpoint(v1);
    EXPECT_NE(old.find(fmt::format("format:      {} v1, ", kFormatName)), std::string::npos) << old;
  }

  write_checkpoint(run / "a.h5", sample_contents(5));
  write_checkpoint(run / "b.h5", sample_contents(5));
  write_checkpoint(run / "c.h5", sample_contents(5, 1000, 0.75f));
  const DiffResult same = diff_checkpoints(run / "a.h5", run / "b.h5");
  EXPECT_TRUE(same.same) << same.text;
  const DiffResult differ = diff_checkpoints(run / "a.h5", run / "c.h5");
  EXPECT_FALSE(differ.same);
  EXPECT_NE(differ.text.find("/model/transformer.wte.weight: values differ (1000 of 1000 elements, "
                             "max |a-b| = 0.25)"),
            std::string::npos)
      << differ.text;
  fs::remove_all(run);
}

TEST(CkptExport, HfConfigKeys) {
  const FlatConfig arch =
      flat_from_json(sample_contents(1).at(kMetaArchitecture).text(), kMetaArchitecture);
  const boost::json::object c = boost::json::parse(hf_config_json(arch)).as_object();
  EXPECT_EQ(c.at("model_type").as_string(), "gpt2");
  EXPECT_EQ(c.at("n_embd").to_number<int>(), 8);
  EXPECT_EQ(c.at("n_inner").to_number<int>(), 32);
  EXPECT_TRUE(c.at("tie_word_embeddings").as_bool());
}

}  // namespace
}  // namespace pft::ckpt
