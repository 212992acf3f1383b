// Loading adapter tensors from a checkpoint (contract: train/adapter_init.h).
#include "train/adapter_init.h"

#include <algorithm>

#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "core/error.h"
#include "core/format.h"
#include "train/checkpoint_state.h"
#include "train/checkpoint_tensors.h"

namespace pft {

std::vector<size_t> init_adapters_from(const std::filesystem::path& file,
                                       const std::string& base_model_hash,
                                       const std::vector<std::pair<std::string, at::Tensor>>& named,
                                       const std::map<std::string, int64_t>& block_rows,
                                       const std::vector<std::string>& task_names,
                                       const std::string& what) {
  return init_adapters_from(ckpt::read_checkpoint(file), file, base_model_hash, named, block_rows,
                            task_names, what);
}

std::vector<size_t> init_adapters_from(const ckpt::Contents& c, const std::filesystem::path& file,
                                       const std::string& base_model_hash,
                                       const std::vector<std::pair<std::string, at::Tensor>>& named,
                                       const std::map<std::string, int64_t>& block_rows,
                                       const std::vector<std::string>& task_names,
                                       const std::string& what) {
  const std::string where = fmt::format("{}: checkpoint {}", what, file.string());
  std::string saved_hash;
  if (c.has_group(ckpt::kTrainable)) {
    const ckpt::Attrs& t = c.group_attrs(ckpt::kTrainable);
    if (t.count(ckpt::kAttrBaseModelHash) > 0)
      saved_hash = ckpt::attr_string(t, ckpt::kAttrBaseModelHash, ckpt::kTrainable);
  }
  if (saved_hash.empty())
    throw InputError(fmt::format("{} holds no adapters (it was trained with train.method full); "
                                 "start from an adapter checkpoint",
                                 where));
  if (saved_hash != base_model_hash)
    throw InputError(fmt::format("{} was trained on another base model ({}; this run's base is "
                                 "{}); adapters only fit the base they were trained on",
                                 where, saved_hash, base_model_hash));
  const std::vector<std::string> saved_tasks = saved_task_names(c);
  at::NoGradGuard no_grad;
  int64_t copied = 0;
  std::vector<size_t> loaded;
  for (size_t k = 0; k < task_names.size(); ++k)
    if (std::find(saved_tasks.begin(), saved_tasks.end(), task_names[k]) != saved_tasks.end())
      loaded.push_back(k);
  for (const auto& [name, dst] : named) {
    const ckpt::Dataset* d = c.find(ckpt::child_path(ckpt::kModel, name));
    if (d == nullptr) continue;  // a method the checkpoint did not train keeps its fresh init
    const auto rows = block_rows.find(name);
    if (rows == block_rows.end() || saved_tasks == task_names) {
      copy_dataset_into(*d, dst, file.string());
      ++copied;
      continue;
    }
    // A task table of another task list: copy the blocks of the tasks both runs have, by name.
    const int64_t n = rows->second;
    if (d->shape.size() != 2 || d->shape[1] != dst.size(1) ||
        d->shape[0] != n * static_cast<int64_t>(saved_tasks.size()))
      throw InputError(fmt::format("{}: {} is {}, which does not fit this run's {} ({} rows per "
                                   "task)",
                                   where, d->path, fmt::join(d->shape, "x"),
                                   fmt::join(dst.sizes(), "x"), n));
    const at::Tensor src = dataset_view(*d);
    for (size_t k = 0; k < task_names.size(); ++k) {
      const auto it = std::find(saved_tasks.begin(), saved_tasks.end(), task_names[k]);
      if (it == saved_tasks.end()) continue;
      const int64_t from = (it - saved_tasks.begin()) * n;
      dst.narrow(0, static_cast<int64_t>(k) * n, n).copy_(src.narrow(0, from, n));
    }
    ++copied;
  }
  if (copied == 0)
    throw InputError(fmt::format("{} holds none of this run's adapter tensors (it was trained with "
                                 "another train.method)",
                                 where));
  return loaded;
}

}  // namespace pft
