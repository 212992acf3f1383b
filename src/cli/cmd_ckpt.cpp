// pft ckpt ls RUN_DIR                                  list a run's checkpoints (latest marked);
//                                                      exit 2 when `latest` names no valid one
// pft ckpt inspect FILE                                step, config summary, tensor table
// pft ckpt verify FILE                                 exit 0 valid, 2 invalid (with the reason)
// pft ckpt diff A B                                    exit 0 same state, 1 different (like cmp)
// pft ckpt export FILE --format safetensors --out DIR
// pft ckpt export FILE --format hf --out DIR [--base DIR] [--tokenizer P]
// pft ckpt export FILE --format gguf [--dtype f32|f16|q8_0] --out DIR [--base DIR] [--tokenizer P]
//
// --format hf (train/hf_checkpoint.h): a full fine-tuning checkpoint makes DIR a Hugging Face
// model directory (weights, config, generation config, tokenizer files); an adapter checkpoint (a
// PEFT run: /trainable/base_model_hash set) makes DIR/merged/ (the base with LoRA merged in),
// DIR/adapter/ (LoRA in PEFT's format) and DIR/adapters/<task>/ (prompt / prefix blocks in PEFT's
// format): Note [export layouts] in ckpt/export.h. --base names the base model when the run's
// model.from_pretrained is not where it was; --tokenizer the tokenizer when the run's
// data.tokenizer moved. --format gguf writes DIR/model-<dtype>.gguf from a full fine-tuning or a
// LoRA checkpoint (train/gguf_checkpoint.h); prompt / prefix tuning are refused.
// Single-process tools over ckpt/tools.h and ckpt/export.h (docs/checkpoint-format.md). They
// never write a checkpoint. --file-locking turns HDF5 file locks on (off by default, as in
// training: checkpoint.file_locking); it goes before or after the subcommand.
#include <iostream>

#include "ckpt/export.h"
#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "ckpt/tools.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/format.h"
#include "train/gguf_checkpoint.h"
#include "train/hf_checkpoint.h"

namespace pft::cli {

// `pft ckpt diff`: the two checkpoints differ. The one exit code outside core/error.h's set, as
// cmp(1) and diff(1) use it (README.md and docs/launching.md list it).
constexpr int kCheckpointsDiffer = 1;

Command add_ckpt_command(CLI::App& app) {
  auto* sub = app.add_subcommand("ckpt", "List, inspect, verify, diff and export checkpoints");
  sub->require_subcommand(1);
  struct Args {
    std::string run_dir, file, other, format = "safetensors", out, base, dtype, tokenizer;
    bool file_locking = false;
  };
  auto args = std::make_shared<Args>();
  const auto add_file_locking = [&](CLI::App& app) {
    app.add_flag("--file-locking", args->file_locking,
                 "Use HDF5 file locks (off by default; see checkpoint.file_locking)");
  };
  add_file_locking(*sub);

  auto* ls = sub->add_subcommand("ls", "List the checkpoints of a run directory");
  ls->add_option("run_dir", args->run_dir, "Run directory (or its checkpoints/ folder)")
      ->required();
  auto* inspect = sub->add_subcommand("inspect", "Print step, config summary and tensor table");
  inspect->add_option("file", args->file, "Checkpoint file (.h5)")->required();
  auto* verify = sub->add_subcommand(
      "verify", "Check structure, safety and every checksum: exit 0 valid, 2 invalid");
  verify->add_option("file", args->file, "Checkpoint file (.h5)")->required();
  auto* diff = sub->add_subcommand("diff", "Compare two checkpoints: exit 0 same state, 1 differs");
  diff->add_option("a", args->file, "First checkpoint")->required();
  diff->add_option("b", args->other, "Second checkpoint")->required();
  auto* exp = sub->add_subcommand("export", "Write the model weights as safetensors, an HF dir or a GGUF file");
  exp->add_option("file", args->file, "Checkpoint file (.h5)")->required();
  exp->add_option("--format", args->format, "safetensors | hf | gguf")
      ->check(CLI::IsMember({"safetensors", "hf", "gguf"}));
  exp->add_option("--dtype", args->dtype, "gguf: f32 (default) | f16 | q8_0")
      ->check(CLI::IsMember({"f32", "f16", "q8_0"}));
  exp->add_option("--tokenizer", args->tokenizer,
                  "hf, gguf: the tokenizer (tokenizer.json, its directory, a GGUF file or byte; "
                  "default: the run's data.tokenizer)");
  exp->add_option("--out", args->out, "Output directory")->required();
  exp->add_option("--base", args->base,
                  "Adapter checkpoints: the base model directory (default: the run's "
                  "model.from_pretrained)");

  for (CLI::App* s : {ls, inspect, verify, diff, exp}) add_file_locking(*s);

  Command c;
  c.app = sub;
  c.run = [=]() -> int {
    ckpt::ReadOptions ro;
    ro.file_locking = args->file_locking;
    if (ls->parsed()) {
      const ckpt::CheckpointListing listing = ckpt::list_run_checkpoints(args->run_dir, ro);
      std::cout << listing.text << std::flush;
      if (listing.problem.empty()) return 0;
      // The table is still printed: what can be read is listed (docs/checkpoint-format.md).
      std::cerr << "pft ckpt ls: error: " << listing.problem
                << "; train.resume: auto skips it and takes the newest valid checkpoint\n";
      return static_cast<int>(ExitCode::kBadInput);
    }
    if (inspect->parsed()) {
      std::cout << ckpt::inspect_checkpoint(args->file, ro) << std::flush;
      return 0;
    }
    if (verify->parsed()) {
      const ckpt::Verification v = ckpt::verify_checkpoint(args->file, ro);
      if (!v.ok) {
        std::cerr << "INVALID " << args->file << ": " << v.reason << "\n";
        return static_cast<int>(ExitCode::kBadInput);
      }
      std::cout << fmt::format("OK {}: {} datasets, {} bytes, every checksum matches\n", args->file,
                               v.datasets, v.bytes);
      return 0;
    }
    if (diff->parsed()) {
      const ckpt::DiffResult r = ckpt::diff_checkpoints(args->file, args->other, ro);
      std::cout << r.text << std::flush;
      return r.same ? 0 : kCheckpointsDiffer;
    }
    if (args->format != "gguf" && !args->dtype.empty())
      throw InputError("--dtype goes with --format gguf only");
    if (args->format == "safetensors" && !args->tokenizer.empty())
      throw InputError("--tokenizer goes with --format hf or gguf (safetensors writes weights only)");
    if (args->format == "gguf") {
      GgufCheckpointExport request;
      request.dtype = parse_gguf_dtype(args->dtype.empty() ? "f32" : args->dtype);
      request.base = args->base;
      request.tokenizer = args->tokenizer;
      request.file_locking = args->file_locking;
      const GgufExportReport r = export_checkpoint_gguf(args->file, args->out, request);
      std::cout << fmt::format("wrote {} ({} tensors: {}; {:.1f} MB; tokenizer.ggml.pre {})\n",
                               r.file.string(), r.tensors, r.tensor_types, r.bytes / 1e6, r.pre);
      return 0;
    }
    if (args->format == "hf") {
      HfCheckpointExport request;
      request.base = args->base;
      request.tokenizer = args->tokenizer;
      request.file_locking = args->file_locking;
      for (const auto& f : export_checkpoint_hf(args->file, args->out, request))
        std::cout << "wrote " << f.string() << "\n";
      return 0;
    }
    const ckpt::Contents meta = ckpt::read_checkpoint_meta(args->file, ro);
    const bool adapter = meta.has_group(ckpt::kTrainable) &&
                         meta.group_attrs(ckpt::kTrainable).count("base_model_hash") > 0 &&
                         !ckpt::attr_string(meta.group_attrs(ckpt::kTrainable), "base_model_hash",
                                            ckpt::kTrainable)
                              .empty();
    if (adapter)
      throw InputError(fmt::format("{} holds a PEFT adapter: export it with --format hf (DIR/merged/: "
                                   "the merged model, DIR/adapter/ and DIR/adapters/<task>/: the "
                                   "adapter in PEFT's format)",
                                   args->file));
    if (!args->base.empty())
      throw InputError("--base: only adapter checkpoints (PEFT runs) take a base model");
    for (const auto& f : ckpt::export_checkpoint(
             args->file, ckpt::parse_export_format(args->format), args->out, ro))
      std::cout << "wrote " << f.string() << "\n";
    return 0;
  };
  return c;
}

}  // namespace pft::cli
