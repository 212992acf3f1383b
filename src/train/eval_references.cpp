// Every reference of each held-out example (contract: train/eval_references.h).
#include "train/eval_references.h"

#include "data/dataset.h"
#include "data/render.h"
#include "data/tokenizer.h"

namespace pft {

EvalReferences::EvalReferences(const Config& config, const Tokenizer& tokenizer, Split split) {
  const std::vector<std::filesystem::path> files = task_files(config);
  for (size_t k = 0; k < files.size(); ++k) {
    Task task = load_task(files[k]);
    if (task.metric == Metric::kLoss) continue;  // no exact match
    const TaskDataset data(std::move(task), static_cast<int32_t>(k), data_options(config));
    if (!data.has_split(split)) continue;
    const std::vector<int32_t> templates = data.templates_for(split);
    for (int64_t i = 0; i < data.size(split); ++i) {
      if (data.references(split, i).size() < 2) continue;
      for (int32_t t : templates) {
        const std::vector<std::string> texts = data.reference_texts(split, i, t);
        auto& out = others_[{k, i, t}];
        for (size_t r = 1; r < texts.size(); ++r) out.push_back(tokenizer.encode(texts[r]));
      }
    }
  }
}

const std::vector<std::vector<int32_t>>* EvalReferences::others(size_t task, int64_t example,
                                                                int32_t template_id) const {
  const auto it = others_.find({task, example, template_id});
  return it == others_.end() ? nullptr : &it->second;
}

}  // namespace pft
