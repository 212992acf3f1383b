// pft generate --model DIR|FILE.gguf|NAME (--prompt TEXT ... | --input prompts.jsonl) [--task FILE --template K
//     [--run-seed S]] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
//     [--repetition-penalty R] [--stop STR ...] [--seed S] [--batch-size B] [--output FILE]
//     [--jsonl] [--device D] [--dtype fp32|bf16|fp16] [--tokenizer SPEC] [--ignore-eos]
//     [--threads N] [--checkpoint FILE] [--adapter FILE [--adapter-task NAME]]
//
// Parses the flags into a GenerateRequest; train/generate_run.h does the rest (what each flag
// means, output formats).
#include "cli/commands.h"
#include "train/generate_run.h"

namespace pft::cli {

Command add_generate_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "generate",
      "Generate text from a Hugging Face model directory, a GGUF file or a known model name "
      "(greedy or sampled, KV cache)");
  auto a = std::make_shared<GenerateRequest>();
  sub->add_option("--model", a->model,
                  "Hugging Face model directory, .gguf file, or a known name "
                  "(smollm2-135m-instruct)");
  sub->add_option("--checkpoint", a->checkpoint, "pft checkpoint file (.h5); needs --tokenizer");
  sub->add_option("--adapter", a->adapter, "Adapter checkpoint (.h5) of a PEFT run on --model");
  sub->add_option("--adapter-task", a->adapter_task,
                  "Task whose prompt/prefix block to use (adapters with one block per task)");
  sub->add_option("--prompt", a->prompts, "Prompt text (repeat for a batch)");
  sub->add_option("--input", a->input,
                  "JSONL file: {\"prompt\": ...} per line, or records of --task");
  sub->add_option("--task", a->task, "Task file (YAML) whose template renders the prompts");
  sub->add_option("--template", a->template_name, "Template id (or index) of --task");
  sub->add_option("--run-seed", a->run_seed,
                  "--task: run.seed of the training run; few-shot demonstrations are picked as "
                  "its evaluation picked them")
      ->capture_default_str();
  sub->add_option("--tokenizer", a->tokenizer, "Tokenizer spec (default: the model directory)");
  sub->add_option("--max-new-tokens", a->sampling.max_new_tokens, "Most tokens to generate")
      ->capture_default_str();
  sub->add_option("--temperature", a->sampling.temperature, "0 = greedy; > 0 samples")
      ->capture_default_str();
  sub->add_option("--top-k", a->sampling.top_k, "Sample from the k most likely (0 = off)")
      ->capture_default_str();
  sub->add_option("--top-p", a->sampling.top_p, "Nucleus sampling mass (1 = off)")
      ->capture_default_str();
  sub->add_option("--repetition-penalty", a->sampling.repetition_penalty,
                  "Penalty on tokens already present (1 = off)")
      ->capture_default_str();
  sub->add_option("--stop", a->sampling.stop, "Stop string (repeatable); cut from the text");
  sub->add_option("--seed", a->sampling.seed, "Sampling seed")->capture_default_str();
  sub->add_option("--batch-size", a->batch_size, "Prompts per batch")->capture_default_str();
  sub->add_option("--output", a->output, "Write JSON lines to this file instead of stdout");
  sub->add_flag("--jsonl", a->jsonl, "JSON lines on stdout even for --prompt");
  sub->add_flag("--ignore-eos", a->ignore_eos, "Do not stop at the end-of-text token");
  sub->add_option("--device", a->device, "auto, cpu or cuda")->capture_default_str();
  sub->add_option("--dtype", a->dtype, "Weights and compute: fp32, bf16 or fp16")
      ->capture_default_str();
  sub->add_option("--threads", a->threads, "Torch threads (0 = the machine's cores)");
  Command c;
  c.app = sub;
  c.run = [a]() -> int { return run_generate(*a); };
  return c;
}

}  // namespace pft::cli
