// One `pft generate` run: load a model (a Hugging Face directory, or a pft checkpoint exported on
// the way), optionally a PEFT adapter, build the prompts (train/generate_prompts.h), generate in
// batches (train/generate.h) and write the completions. cli/cmd_generate.cpp parses the flags
// into a GenerateRequest and hands it here.
//
//   --model DIR         Hugging Face model directory, GGUF file or known model name
//                       (model/hf_import.h, docs/models.md).
//   --checkpoint FILE   a pft checkpoint: verified and exported (ckpt/export.h, the code of
//                       `pft ckpt export --format hf`) into a private temporary directory that is
//                       loaded like --model and removed; it stores no tokenizer, so `tokenizer`
//                       is required with it.
//   --adapter FILE      a PEFT adapter checkpoint (train/adapter_checkpoint.h) on the base given
//                       by --model (its hash must be the one the adapter was trained on): LoRA is
//                       merged into the weights, prompt tuning's virtual tokens of the block go
//                       before every prompt (ids V + block * n + j, as training put them,
//                       model/adapters.h), prefix tuning's keys and values fill the first cache
//                       slots. `adapter_task` picks the task's block of a per-task table (required
//                       there only: LoRA and shared tables have no per-task block).
// Output: plain text, one completion per prompt, for --prompt; JSON lines (index, id, prompt,
// completion, completion_ids, finish_reason, prompt_tokens, new_tokens) with --input, --jsonl or
// --output FILE. The load and tokens/s lines go to the log (stderr).
//
// One process: it sets up its own MPI singleton and rank environment and refuses to run under
// mpirun. Throws InputError (exit 2) for bad flags, files or models, RuntimeFailure when the
// output cannot be written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/generate.h"

namespace pft {

struct GenerateRequest {
  std::string model, checkpoint, adapter, adapter_task, tokenizer;
  std::vector<std::string> prompts;
  std::string input, task, template_name, output;
  uint64_t run_seed = 1234;  // --task: the training run's run.seed (few-shot picks)
  SamplingOptions sampling;
  int64_t batch_size = 8;
  bool jsonl = false, ignore_eos = false;
  std::string device = "auto", dtype = "fp32";
  int threads = 0;  // torch threads; 0 = the machine's cores
};

// Runs the whole request (see above); returns the process exit code (0).
int run_generate(const GenerateRequest& request);

}  // namespace pft
