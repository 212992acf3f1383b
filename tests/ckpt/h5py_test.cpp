// The h5py example of docs/checkpoint-format.md runs verbatim on a checkpoint pft wrote
// (tests/ckpt/h5py_read_test.py, with PFT_PYTHON: h5py is pinned in tests/reference/
// requirements.txt).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>

#include "ckpt/writer.h"
#include "ckpt_test_util.h"

namespace pft::ckpt {
namespace {

TEST(CkptH5py, DocumentedExampleReadsPftCheckpoint) {
  const auto dir = test::scratch_dir("h5py");
  Contents c = test::sample_contents(1);
  const std::vector<uint16_t> bf16{0x3f80, 0xc040, 0x3f00};  // 1, -3, 0.5
  c.add_vector("/model/bf16", DType::kBFloat16, bf16);
  write_checkpoint(dir / "step_00000001.h5", c);
  const std::string cmd = std::string(PFT_PYTHON) + " " + PFT_SOURCE_ROOT +
                          "/tests/ckpt/h5py_read_test.py " + PFT_SOURCE_ROOT +
                          "/docs/checkpoint-format.md " + (dir / "step_00000001.h5").string() +
                          " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("h5py example OK"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pft::ckpt
