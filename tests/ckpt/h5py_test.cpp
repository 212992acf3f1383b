// The h5py example of docs/checkpoint-format.md runs verbatim on a checkpoint pft wrote
// (tests/ckpt/h5py_read_test.py, with PFT_PYTHON: h5py is pinned in tests/reference/
// requirements.txt).
#include <gtest/gtest.h>

#include "ckpt/writer.h"
#include "ckpt_test_util.h"
#include "run_command.h"

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
                          "/docs/checkpoint-format.md " + (dir / "step_00000001.h5").string();
  const pft::test::Result r = pft::test::run(cmd);  // stderr merged; a time limit
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("h5py example OK"), std::string::npos) << r.out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pft::ckpt
