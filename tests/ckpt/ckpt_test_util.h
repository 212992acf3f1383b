// Helpers of the checkpoint tests: a unique scratch directory, a small Contents shaped like a
// real checkpoint, and raw HDF5 surgery (flip a bit of a dataset, delete a link) to corrupt files.
#pragma once

#include <hdf5.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ckpt/contents.h"
#include "ckpt/format.h"
#include "core/hdf5.h"

namespace pft::ckpt::test {

namespace fs = std::filesystem;

inline fs::path scratch_dir(const std::string& tag) {
  static int counter = 0;
  const fs::path d =
      fs::temp_directory_path() /
      ("pft-ckpt-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A checkpoint-shaped Contents of about `numel` float32 model values (owning its bytes).
inline Contents sample_contents(int64_t step, int64_t numel = 1000, float base = 0.5f) {
  Contents c;
  Attrs& meta = c.group(kMeta);
  meta[kAttrStep] = step;
  meta[kAttrTokensSeen] = step * 1024;
  meta[kAttrWorldSize] = int64_t{2};
  meta[kAttrTimeUtc] = std::string("2025-01-01T00:00:00Z");
  meta["metric.loss"] = 10.0 / static_cast<double>(step + 1);
  c.add_text(kMetaConfig, "model:\n  d_model: 8\n");
  c.add_text(kMetaConfigFlat, R"({"model.d_model":"8","train.lr":"0.001"})");
  c.add_text(kMetaArchitecture,
             R"({"model.family":"gpt2","model.d_model":"8","model.n_layers":"1",)"
             R"("model.n_heads":"2","model.vocab_size":"16","model.d_ff":"32",)"
             R"("model.max_seq_len":"8","model.norm_eps":"1e-05","model.n_kv_heads":"2",)"
             R"("model.rope_theta":"10000","model.tie_embeddings":"true"})");
  std::vector<float> w(static_cast<size_t>(numel));
  for (size_t i = 0; i < w.size(); ++i) w[i] = base + 0.001f * static_cast<float>(i) + step;
  const int64_t rows = numel / 10;
  c.add_copy("/model/transformer.wte.weight", DType::kFloat32, {rows, 10},
             std::as_bytes(std::span<const float>(w.data(), static_cast<size_t>(rows * 10))));
  std::vector<float> b(10, 0.25f);
  c.add_vector("/model/transformer.ln_f.bias", DType::kFloat32, b);
  c.group(kOptimizer)["kind"] = std::string("adamw");
  std::vector<float> m(w.size(), 0.125f);
  c.add_copy("/optimizer/exp_avg/transformer.wte.weight", DType::kFloat32, {rows, 10},
             std::as_bytes(std::span<const float>(m.data(), static_cast<size_t>(rows * 10))))
      .attrs["step"] = step;
  std::vector<int64_t> cursors{3, 5, step};
  c.add_vector("/data/next_sample", DType::kInt64, cursors);
  c.group(kController)["version"] = int64_t{1};
  return c;
}

// Opens `file` read-write with raw HDF5 (the test's own surgery; pft never writes in place).
inline hid_t open_rw(const fs::path& file) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_file_locking(fapl, false, true);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, fapl);
  H5Pclose(fapl);
  return f;
}

// File offset of a contiguous dataset's data.
inline uint64_t data_offset(const fs::path& file, const std::string& dataset) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_file_locking(fapl, false, true);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  const hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  const haddr_t off = H5Dget_offset(d);
  H5Dclose(d);
  H5Fclose(f);
  return static_cast<uint64_t>(off);
}

inline void flip_bit(const fs::path& file, uint64_t offset, int bit = 3) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ (1 << bit));
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Recomputes the whole-file seal of a checkpoint altered by a test (Note [file seal], core/hdf5.cpp),
// as a crafted file would carry one: pft's checks after the seal are then what must refuse it.
// Files without HDF5's signature after the user block (emptied, garbage) are left alone.
inline void reseal(const fs::path& file) {
  std::string head(h5::kSealBytes + 8, '\0');
  {
    std::ifstream in(file, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    if (in.gcount() != static_cast<std::streamsize>(head.size())) return;
  }
  if (head.substr(h5::kSealBytes, 4) != "\x89HDF") return;
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    const std::string zeros(h5::kSealBytes, '\0');
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  h5::seal_file(file);
}

}  // namespace pft::ckpt::test
