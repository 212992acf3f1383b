// A pft checkpoint as Hugging Face directories (contract: train/hf_checkpoint.h).
#include "train/hf_checkpoint.h"

#include <algorithm>

#include "ckpt/export.h"
#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "core/error.h"
#include "core/format.h"
#include "data/tokenizer.h"
#include "model/hf_export.h"
#include "model/hf_import.h"
#include "model/transformer.h"
#include "train/adapter_checkpoint.h"
#include "train/checkpoint_tensors.h"

namespace pft {

namespace fs = std::filesystem;

std::vector<fs::path> export_checkpoint_hf(const fs::path& file, const fs::path& out_dir,
                                           const HfCheckpointExport& request) {
  ckpt::ReadOptions ro;
  ro.file_locking = request.file_locking;
  const ckpt::Contents meta = ckpt::read_checkpoint_meta(file, ro);
  const Config config =
      parse_config(meta.at(ckpt::kMetaConfig).text(), file.string() + ":/meta/config");
  const fs::path tokenizer = !request.tokenizer.empty() ? request.tokenizer
                             : config.data.tokenizer.empty() ? fs::path("byte")
                                                             : fs::path(config.data.tokenizer);
  // Checked before anything is written, so that a moved tokenizer leaves no half export.
  if (tokenizer != "byte" && !fs::exists(tokenizer))
    throw InputError(fmt::format(
        "{}: the tokenizer {} ({}) does not exist; pass --tokenizer PATH (a tokenizer.json, its "
        "directory, a GGUF file or byte)",
        request.tokenizer.empty() ? file.string() : "--tokenizer", tokenizer.string(),
        request.tokenizer.empty() ? "the run's data.tokenizer" : "given"));
  // ... and must be one pft reads: the export's tokenizer has to encode as pft did.
  if (tokenizer != "byte") {
    try {
      (void)load_tokenizer(tokenizer.string());
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: the tokenizer {} cannot be exported: {}",
                                   request.tokenizer.empty() ? file.string() : "--tokenizer",
                                   tokenizer.string(), e.what()));
    }
  }
  if (is_peft(config.train.method)) {
    ckpt::check_export_dir(out_dir, ckpt::ExportLayout::kAdapter);
    return export_adapter_checkpoint(file, request.base, out_dir, tokenizer);
  }
  if (!request.base.empty())
    throw InputError("--base: only adapter checkpoints (PEFT runs) take a base model");
  ckpt::check_export_dir(out_dir, ckpt::ExportLayout::kModel);
  ro.select = [](const std::string& p) { return p.rfind("/model/", 0) == 0; };
  const ckpt::Contents c = ckpt::read_checkpoint(file, ro);
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const ckpt::Dataset* d : c.under(ckpt::kModel))
    params.emplace_back(d->path.substr(std::string(ckpt::kModel).size() + 1), dataset_view(*d));
  if (params.empty())
    throw InputError(fmt::format("checkpoint {}: /model holds no tensors", file.string()));

  HfExportOptions options;
  options.tokenizer = tokenizer;
  // bos / eos / pad: the pretrained model's when the run started from one (its
  // generation_config.json is copied), else the tokenizer's.
  const fs::path source(config.model.from_pretrained);
  if (!source.empty() && fs::exists(source)) {
    const HfModelInfo info = read_hf_model_info(source);
    options.eos_token_ids = info.eos_token_ids;
    options.bos_token_id = info.bos_token_id;
    options.pad_token_id = info.pad_token_id;
    options.source_model = source;
  } else {
    const std::unique_ptr<Tokenizer> t = load_tokenizer(tokenizer.string());
    if (t->eos_id() >= 0) options.eos_token_ids = {t->eos_id()};
    options.pad_token_id = t->pad_id();
  }
  export_hf_model(model_spec_from_config(config.model), params, out_dir, options);
  std::vector<fs::path> written;
  for (const auto& entry : fs::directory_iterator(out_dir)) written.push_back(entry.path());
  std::sort(written.begin(), written.end());
  return written;
}

}  // namespace pft
