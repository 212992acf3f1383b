// `pft ckpt export --format gguf` end to end, read back by the `gguf` package and transformers
// (tests/reference/gguf_export_check.py) on the tiny SmolLM-style model hf_fixtures.py saves
// (tied embeddings, 6 heads over 2 key/value heads, a byte-level BPE tokenizer):
//   - full fine-tuning (`pft train` from the fixture, 3 steps) and LoRA on it (3 steps), each
//     exported with --dtype f32, f16 and q8_0 beside --format hf (pft's weights, the reference):
//     metadata, tensor names / shapes / types, tokens, merges and chat template as the tokenizer
//     has them; transformers' logits from the file within 1e-4 of those of pft's weights rounded
//     as the dtype stores them, and within 1e-4 (f32), 1e-2 (f16), 1e-1 (q8_0) times
//     max |logit| of pft's; for f32, `pft generate`'s greedy ids (LoRA: base + --adapter,
//     unmerged) are transformers' from the file (up to exact ties); the tokenizer transformers rebuilds gives
//     tokenizers' ids;
//   - prompt tuning is refused (exit 2) naming what to export instead, and writes nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/format.h"
#include "model_test_util.h"
#include "run_command.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

using pft::test::Result;
using pft::test::run;

const std::string kPft = PFT_BIN;
const fs::path kBase = fs::path(PFT_HF_FIXTURES) / "smollm_bf16";
const std::string kPrompt = "12 + 30 =";

// Trains `method` for 3 steps from the fixture at `lr`; returns the last checkpoint.
fs::path train(const fs::path& dir, const std::string& method, const std::string& lr) {
  std::ofstream(dir / "train.yaml") << fmt::format(
      "run: {{dir: {}, seed: 1, threads: 1}}\n"
      "model: {{from_pretrained: {}}}\n"
      "data: {{seq_len: 32, source: tasks, tasks: [{}/datasets/tasks/add.yaml]}}\n"
      "train: {{method: {}, steps: 3, global_batch_size: 2, micro_batch_size: 1, lr: {}}}\n",
      (dir / "run").string(), kBase.string(), PFT_SOURCE_ROOT, method, lr);
  const Result r = run(kPft + " train " + (dir / "train.yaml").string());
  EXPECT_EQ(r.code, 0) << r.out;
  return dir / "run" / "checkpoints" / "step_00000003.h5";
}

// Exports `ckpt` as hf and as GGUF in each dtype, and checks every file with the reference
// script. `generate` is the pft generate model argument giving the checkpoint's greedy ids.
void export_and_check(const fs::path& dir, const fs::path& ckpt, const std::string& generate) {
  Result r = run(kPft + " ckpt export " + ckpt.string() + " --format hf --out " + (dir / "hf").string());
  ASSERT_EQ(r.code, 0) << r.out;
  // A LoRA checkpoint exports as hf/merged/ (+ hf/adapter/); a full one as hf/ itself.
  const fs::path hf = fs::exists(dir / "hf" / "merged") ? dir / "hf" / "merged" : dir / "hf";
  const fs::path jsonl = dir / "generated.jsonl";
  r = run(kPft + " generate " + generate + " --prompt '" + kPrompt +
          "' --max-new-tokens 8 --ignore-eos --threads 1 --output " + jsonl.string());
  ASSERT_EQ(r.code, 0) << r.out;
  for (const auto& [dtype, rtol] : {std::pair<std::string, std::string>{"f32", "1e-4"},
                                    {"f16", "1e-2"},
                                    {"q8_0", "1e-1"}}) {
    r = run(kPft + " ckpt export " + ckpt.string() + " --format gguf --dtype " + dtype +
            " --out " + (dir / "gguf").string());
    ASSERT_EQ(r.code, 0) << r.out;
    const fs::path file = dir / "gguf" / ("model-" + dtype + ".gguf");
    EXPECT_CONTAINS(r.out, "wrote " + file.string() + " (29 tensors");
    EXPECT_EQ(test::run_reference_script(
                  "gguf_export_check.py",
                  {"--gguf", file.string(), "--hf", hf.string(), "--tokenizer",
                   kBase.string(), "--dtype", dtype, "--rtol", rtol, "--pft-jsonl", jsonl.string(),
                   "--prompt", kPrompt}),
              0)
        << dtype;
  }
}

TEST(GgufExportCli, FullFineTuningF32F16Q8_0) {
  const fs::path dir = test::fresh_temp_dir("gguf-cli-full");
  const fs::path ckpt = train(dir, "full", "1.0e-3");  // moves the weights, keeps the model far from degenerate
  ASSERT_TRUE(fs::exists(ckpt));
  export_and_check(dir, ckpt, "--checkpoint " + ckpt.string() + " --tokenizer " + kBase.string());
}

TEST(GgufExportCli, LoraMergedF32F16Q8_0) {
  const fs::path dir = test::fresh_temp_dir("gguf-cli-lora");
  const fs::path ckpt = train(dir, "lora", "1.0e-2");
  ASSERT_TRUE(fs::exists(ckpt));
  export_and_check(dir, ckpt, "--model " + kBase.string() + " --adapter " + ckpt.string());
}

TEST(GgufExportCli, PromptTuningIsRefusedNamingWhatToExport) {
  const fs::path dir = test::fresh_temp_dir("gguf-cli-prompt");
  const fs::path ckpt = train(dir, "prompt_tuning", "1.0e-2");
  ASSERT_TRUE(fs::exists(ckpt));
  const Result r = run(kPft + " ckpt export " + ckpt.string() + " --format gguf --dtype q8_0 --out " +
                       (dir / "gguf").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "a prompt_tuning adapter cannot be exported to GGUF");
  EXPECT_CONTAINS(r.out, "--format hf");
  EXPECT_CONTAINS(r.out, "pft generate --model BASE --adapter");
  EXPECT_FALSE(fs::exists(dir / "gguf" / "model-q8_0.gguf"));
  // --dtype belongs to gguf.
  const Result d = run(kPft + " ckpt export " + ckpt.string() + " --format hf --dtype f16 --out " +
                       (dir / "hf").string());
  EXPECT_EQ(d.code, 2) << d.out;
  EXPECT_CONTAINS(d.out, "--dtype goes with --format gguf only");
}

}  // namespace
}  // namespace pft
