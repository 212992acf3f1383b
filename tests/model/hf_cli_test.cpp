// `pft generate` end to end on a model directory this test writes (a random GPT-2 exported by
// model/hf_export.h with a byte-level tokenizer.json): plain prompts, JSON lines, batching,
// prompts files, task templates, and bad weight files -> exit 2 naming the tensor or offset.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/format.h"
#include "data/bpe.h"
#include "model/hf_export.h"
#include "model/safetensors.h"
#include "model/transformer.h"
#include "model_test_util.h"
#include "run_command.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

using pft::test::Result;
using pft::test::run;

const std::string kPft = std::string(PFT_BIN) + " generate --device cpu --threads 1";

// tokenizer.json: the 256 byte tokens and <|endoftext|> (256).
std::string byte_tokenizer_json() {
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string token = bytes_to_token_text(std::string(1, static_cast<char>(b))), escaped;
    for (char c : token) {
      if (c == '"' || c == '\\') escaped.push_back('\\');
      escaped.push_back(c);
    }
    vocab += fmt::format("{}\"{}\": {}", b ? ", " : "", escaped, b);
  }
  return fmt::format(
      R"({{"version": "1.0", "added_tokens": [{{"id": 256, "content": "<|endoftext|>",
    "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}],
  "normalizer": null, "pre_tokenizer": {{"type": "ByteLevel", "add_prefix_space": false,
    "trim_offsets": true, "use_regex": true}},
  "post_processor": null, "decoder": {{"type": "ByteLevel"}},
  "model": {{"type": "BPE", "dropout": null, "unk_token": null, "ignore_merges": false,
    "vocab": {{{}}}, "merges": []}}}})",
      vocab);
}

// A random GPT-2 model directory, written once per process.
const fs::path& model_dir() {
  static const fs::path dir = [] {
    const fs::path root = test::fresh_temp_dir("hf-cli");
    std::ofstream(root / "tokenizer.json") << byte_tokenizer_json();
    ModelSpec s;
    s.family = ModelFamily::Gpt2;
    s.vocab_size = 260;
    s.d_model = 32;
    s.n_layers = 2;
    s.n_heads = 4;
    s.n_kv_heads = 4;
    s.head_dim = 8;
    s.d_ff = 128;
    s.max_seq_len = 96;
    s.init_std = 0.2;
    Transformer model(s);
    model->reset_parameters(5);
    HfExportOptions o;
    o.tokenizer = root / "tokenizer.json";
    o.eos_token_ids = {256};
    export_hf_model(*model, root / "model", o);
    return root / "model";
  }();
  return dir;
}

std::vector<std::string> json_lines(const std::string& out) {
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("{\"index\"", 0) == 0) lines.push_back(line);
  return lines;
}

TEST(GenerateCli, PromptsBatchesAndFiles) {
  const std::string m = " --model " + model_dir().string();
  Result r = run(kPft + m + " --prompt hello --max-new-tokens 8");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "tokens/s");
  EXPECT_CONTAINS(r.out, "generated 8 tokens for 1 prompt(s)");

  // Batched greedy generation gives each prompt what it gets alone.
  const std::string prompts =
      " --prompt ab --prompt 'cd e f' --prompt x --max-new-tokens 6 --jsonl";
  const Result batched = run(kPft + m + prompts + " --batch-size 3");
  const Result single = run(kPft + m + prompts + " --batch-size 1");
  ASSERT_EQ(batched.code, 0) << batched.out;
  ASSERT_EQ(single.code, 0) << single.out;
  EXPECT_EQ(json_lines(batched.out).size(), 3u) << batched.out;
  EXPECT_EQ(json_lines(batched.out), json_lines(single.out));
  EXPECT_CONTAINS(batched.out, "\"finish_reason\":\"length\"");

  // A prompts file, JSON lines into --output.
  const fs::path dir = test::fresh_temp_dir("hf-cli-files");
  std::ofstream(dir / "p.jsonl")
      << "{\"prompt\": \"one\", \"id\": \"a\"}\n\n{\"prompt\": \"two\"}\n";
  r = run(kPft + m + " --input " + (dir / "p.jsonl").string() + " --output " +
          (dir / "out.jsonl").string() +
          " --max-new-tokens 4 --temperature 0.8 --top-p 0.9 --seed 3");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(dir / "out.jsonl");
  const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(json_lines(out).size(), 2u) << out;
  EXPECT_CONTAINS(out, "\"id\":\"a\"");
  EXPECT_CONTAINS(out, "\"prompt\":\"two\"");

  // A bad prompts line names file:line.
  std::ofstream(dir / "bad.jsonl") << "{\"prompt\": \"one\"}\n{\"text\": 1}\n";
  r = run(kPft + m + " --input " + (dir / "bad.jsonl").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "bad.jsonl:2");
}

TEST(GenerateCli, TaskTemplates) {
  const std::string m = " --model " + model_dir().string();
  const fs::path dir = test::fresh_temp_dir("hf-cli-task");
  std::ofstream(dir / "add.jsonl")
      << "{\"a\": \"12\", \"b\": \"30\"}\n{\"a\": \"1\", \"b\": \"2\", \"answer\": \"3\"}\n";
  Result r = run(kPft + m + " --task datasets/tasks/add.yaml --template equation --input " +
                 (dir / "add.jsonl").string() + " --max-new-tokens 3");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "\"prompt\":\"Add the two numbers.\\n\\n12 + 30 =\"");
  // Few-shot demonstrations come from the task's own data.
  r = run(kPft + m + " --task datasets/tasks/add.yaml --template question_few_shot --input " +
          (dir / "add.jsonl").string() + " --max-new-tokens 3");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "Answer:");
  r = run(kPft + m + " --task datasets/tasks/add.yaml --template nope --prompt 1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "has no template `nope`");
  r = run(kPft + m + " --task datasets/tasks/add.yaml --template equation --prompt 1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "reads 2 input fields");
}

// A copy of the model directory with model.safetensors replaced by `bytes`.
fs::path with_weights(const std::string& tag, const std::string& bytes) {
  const fs::path dir = test::fresh_temp_dir(tag);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(model_dir() / f, dir / f);
  std::ofstream(dir / "model.safetensors", std::ios::binary) << bytes;
  return dir;
}

std::string rewritten(
    const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  const SafetensorsFile f(model_dir() / "model.safetensors");
  for (const auto& e : f.entries()) tensors.emplace_back(e.name, f.tensor(e.name).clone());
  edit(tensors);
  const fs::path tmp = test::fresh_temp_dir("hf-cli-rewrite") / "w.safetensors";
  write_safetensors(tmp, tensors);
  std::ifstream in(tmp, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(GenerateCli, BadWeightFilesExitTwoNamingTheTensorOrOffset) {
  const auto generate = [](const fs::path& dir) {
    return run(kPft + " --model " + dir.string() + " --prompt hi --max-new-tokens 2");
  };
  Result r = generate(with_weights("hf-cli-shape", rewritten([](auto& t) {
                                     for (auto& [n, v] : t)
                                       if (n == "transformer.h.0.attn.c_attn.weight")
                                         v = v.narrow(1, 0, 64).contiguous();
                                   })));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "tensor `transformer.h.0.attn.c_attn.weight` has shape [32, 64]");

  r = generate(with_weights("hf-cli-missing", rewritten([](auto& t) {
                              std::erase_if(t, [](const auto& kv) {
                                return kv.first == "transformer.wpe.weight";
                              });
                            })));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "missing tensor `transformer.wpe.weight`");

  std::string bytes = rewritten([](auto&) {});
  r = generate(with_weights("hf-cli-header", bytes.substr(0, 100)));  // header cut short
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "truncated header");
  EXPECT_CONTAINS(r.out, "offset");

  r = generate(with_weights("hf-cli-data", bytes.substr(0, bytes.size() - 100)));  // data cut short
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "tensor `");
  EXPECT_CONTAINS(r.out, "truncated");
}

// README's path: a Hugging Face directory -> pft train (model.from_pretrained) -> checkpoint ->
// pft ckpt export --format hf -> pft generate. lr is tiny, so the trained weights must stay within
// 1e-5 of the pretrained ones: the run really started from them.
TEST(GenerateCli, TrainFromPretrainedExportAndGenerate) {
  const fs::path dir = test::fresh_temp_dir("hf-cli-train");
  const std::string root = PFT_SOURCE_ROOT;
  const std::string bin = PFT_BIN;
  std::ofstream(dir / "ft.yaml") << fmt::format(
      "run: {{dir: {}, seed: 1, threads: 1}}\n"
      "model: {{from_pretrained: {}}}\n"
      "data: {{seq_len: 32, source: tasks, tasks: [{}/datasets/tasks/add.yaml]}}\n"
      "train: {{steps: 2, global_batch_size: 2, micro_batch_size: 1, lr: 1.0e-7}}\n",
      (dir / "run").string(), model_dir().string(), root);
  Result r = run(bin + " train " + (dir / "ft.yaml").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "model.from_pretrained: 28 tensors");
  const fs::path ckpt = dir / "run" / "checkpoints" / "step_00000002.h5";
  ASSERT_TRUE(fs::exists(ckpt)) << r.out;
  r = run(bin + " ckpt export " + ckpt.string() + " --format hf --out " + (dir / "hf").string());
  ASSERT_EQ(r.code, 0) << r.out;
  const SafetensorsFile before(model_dir() / "model.safetensors"),
      after(dir / "hf" / "model.safetensors");
  for (const auto& e : before.entries()) {
    ASSERT_NE(after.find(e.name), nullptr) << e.name;
    EXPECT_LE(
        (after.tensor(e.name).to(at::kFloat) - before.tensor(e.name)).abs().max().item<double>(),
        1e-5)
        << e.name;
  }
  r = run(kPft + " --model " + (dir / "hf").string() + " --tokenizer " + model_dir().string() +
          " --prompt '12 + 30 =' --max-new-tokens 3 --jsonl");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "generated 3 tokens");
  // Straight from the checkpoint: the same greedy completion as from its export.
  const Result direct = run(kPft + " --checkpoint " + ckpt.string() + " --tokenizer " +
                            model_dir().string() + " --prompt '12 + 30 =' --max-new-tokens 3 --jsonl");
  EXPECT_EQ(direct.code, 0) << direct.out;
  const auto completion = [](const std::string& out) {
    const size_t at = out.find("\"completion\"");
    if (at == std::string::npos) return std::string();
    const size_t open = out.find('"', out.find(':', at));
    size_t close = open + 1;
    while (close < out.size() && (out[close] != '"' || out[close - 1] == '\\')) ++close;
    return out.substr(open, close - open + 1);  // the JSON string, quotes included
  };
  EXPECT_FALSE(completion(r.out).empty()) << r.out;
  EXPECT_EQ(completion(direct.out), completion(r.out)) << direct.out;
  // Without --tokenizer a checkpoint is refused, naming what to pass.
  const Result no_tok = run(kPft + " --checkpoint " + ckpt.string() + " --prompt a");
  EXPECT_EQ(no_tok.code, 2) << no_tok.out;
  EXPECT_CONTAINS(no_tok.out, "pass --tokenizer");

  // A model.* key the config sets itself must agree with config.json.
  std::ofstream(dir / "bad.yaml") << fmt::format(
      "model: {{from_pretrained: {}, d_model: 64}}\n"
      "train: {{steps: 1, global_batch_size: 1, lr: 1.0e-3}}\n",
      model_dir().string());
  r = run(bin + " train " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "model.d_model: 64 conflicts with model.from_pretrained");
  std::ofstream(dir / "missing.yaml") << "model: {from_pretrained: /nonexistent}\ntrain: {steps: "
                                         "1, global_batch_size: 1, lr: 1.0e-3}\n";
  r = run(bin + " train " + (dir / "missing.yaml").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "model.from_pretrained: /nonexistent: not a directory");
}

// `pft config show` and `pft data *` resolve model.from_pretrained as `pft train` does: the
// architecture from its config.json, data.tokenizer from its tokenizer.json; the store `pft data
// prepare` builds is the one training then finds cached.
TEST(GenerateCli, ConfigShowAndDataCommandsResolveFromPretrained) {
  const fs::path dir = test::fresh_temp_dir("hf-cli-resolve");
  const std::string bin = PFT_BIN;
  const fs::path cfg = dir / "ft.yaml";
  std::ofstream(cfg) << fmt::format(
      "run: {{dir: {}, seed: 1, threads: 1}}\n"
      "model: {{from_pretrained: {}}}\n"
      "data: {{seq_len: 32, source: tasks, tasks: [{}/datasets/tasks/add.yaml], cache_dir: {}}}\n"
      "train: {{steps: 1, global_batch_size: 1, micro_batch_size: 1, lr: 1.0e-7}}\n"
      "eval: {{every_steps: 0, max_batches: 1}}\ncheckpoint: {{every_steps: 0}}\n",
      (dir / "run").string(), model_dir().string(), PFT_SOURCE_ROOT, (dir / "cache").string());
  Result r = run(bin + " config show " + cfg.string());
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* key : {"d_model: 32", "vocab_size: 260", "max_seq_len: 96", "d_ff: 128"})
    EXPECT_CONTAINS(r.out, key);
  EXPECT_CONTAINS(r.out, "tokenizer: " + model_dir().string());

  r = run(bin + " data show " + cfg.string() + " --task add -n 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "tokenizer byte-level BPE (257 ids, eos 256) from " +
                             (model_dir() / "tokenizer.json").string());
  r = run(bin + " data validate " + cfg.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "data: 1 task(s) valid");

  r = run(bin + " data prepare " + cfg.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "built");
  r = run(bin + " train " + cfg.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "data: task 'add': cached store");
  fs::remove_all(dir);
}

TEST(GenerateCli, BadFlagsExitTwo) {
  const std::string m = " --model " + model_dir().string();
  for (const std::string& flags :
       {std::string(" --prompt a --checkpoint x.h5"), m + " --prompt a --adapter a.h5",
        m + " --prompt a --top-p 0", m + " --prompt a --input f.jsonl", m,
        m + " --prompt a --dtype fp8", std::string(" --model /nonexistent --prompt a")}) {
    const Result r = run(kPft + flags);
    EXPECT_EQ(r.code, 2) << flags << "\n" << r.out;
  }
}

}  // namespace
}  // namespace pft
