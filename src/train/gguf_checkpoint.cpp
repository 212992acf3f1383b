// A pft checkpoint as a GGUF file (contract: train/gguf_checkpoint.h).
#include "train/gguf_checkpoint.h"

#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "core/error.h"
#include "core/format.h"
#include "model/adapters.h"
#include "model/hf_import.h"
#include "model/transformer.h"
#include "train/adapter_checkpoint.h"
#include "train/checkpoint_tensors.h"

namespace pft {

namespace fs = std::filesystem;

GgufExportReport export_checkpoint_gguf(const fs::path& file, const fs::path& out_dir,
                                        const GgufCheckpointExport& request) {
  ckpt::ReadOptions ro;
  ro.file_locking = request.file_locking;
  const ckpt::Contents meta = ckpt::read_checkpoint_meta(file, ro);
  const Config config =
      parse_config(meta.at(ckpt::kMetaConfig).text(), file.string() + ":/meta/config");
  const Method method = config.train.method;
  GgufExportOptions options;
  options.dtype = request.dtype;
  options.name = fs::path(config.run.dir).filename().string();  // the run's name
  if (options.name.empty()) options.name = "pft";
  const fs::path out = out_dir / fmt::format("model-{}.gguf", gguf_dtype_name(request.dtype));

  if (has_prompt(method) || has_prefix(method))
    throw InputError(fmt::format(
        "{}: a {} adapter cannot be exported to GGUF (llama.cpp has no place for virtual tokens "
        "or key/value prefixes); export it with --format hf (the adapter in Hugging Face PEFT's "
        "format{}), keep the checkpoint and generate with `pft generate --model BASE --adapter "
        "{}`",
        file.string(), config::config_text(method), has_lora(method) ? ", plus the LoRA-merged model" : "",
        file.string()));

  if (is_peft(method)) {  // LoRA: the base with the updates merged in
    const fs::path base = request.base.empty() ? fs::path(config.model.from_pretrained) : request.base;
    if (base.empty())
      throw InputError(fmt::format("{}: the run recorded no model.from_pretrained; pass --base DIR "
                                   "(the base model the adapter was trained on)",
                                   file.string()));
    Transformer model = load_hf_model(base);
    attach_adapter_checkpoint(file, *model);
    {
      at::NoGradGuard no_grad;
      model->merge_lora();
    }
    options.tokenizer = !request.tokenizer.empty() ? request.tokenizer
                        : config.data.tokenizer != "byte" && !config.data.tokenizer.empty()
                            ? fs::path(config.data.tokenizer)
                            : base;
    return export_gguf_model(*model, out, options);
  }

  if (!request.base.empty())
    throw InputError("--base: only adapter checkpoints (PEFT runs) take a base model");
  ro.select = [](const std::string& p) { return p.rfind("/model/", 0) == 0; };
  const ckpt::Contents c = ckpt::read_checkpoint(file, ro);
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const ckpt::Dataset* d : c.under(ckpt::kModel))
    params.emplace_back(d->path.substr(std::string(ckpt::kModel).size() + 1), dataset_view(*d));
  options.tokenizer =
      !request.tokenizer.empty() ? request.tokenizer : fs::path(config.data.tokenizer);
  return export_gguf_model(model_spec_from_config(config.model), params, out, options);
}

}  // namespace pft
