// Loaded tasks: splits, few-shot picks, rendering (contract: data/dataset.h).
#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"

namespace pft {

namespace fs = std::filesystem;

namespace {

// SplitMix64: a small, fully specified generator, so picks and splits are the same on every
// platform and standard library (std::shuffle and the std distributions are not).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }  // bias < n / 2^64: negligible here

 private:
  uint64_t state_;
};

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

uint64_t combine(uint64_t a, uint64_t b) {
  return SplitMix64(a ^ (b * 0x9E3779B97F4A7C15ull)).next();
}

// Split of each of `n` records (0 train, 1 validation, 2 test) by ratio, seeded.
std::vector<int> carve(size_t n, const std::array<double, kNumSplits>& ratios, uint64_t seed) {
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  SplitMix64 rng(combine(seed, fnv1a("split")));
  for (size_t i = n; i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
  size_t b1 = static_cast<size_t>(std::llround(ratios[0] * static_cast<double>(n)));
  size_t b2 = static_cast<size_t>(std::llround((ratios[0] + ratios[1]) * static_cast<double>(n)));
  if (ratios[2] == 0) b2 = n;
  b1 = std::min(b1, n);
  b2 = std::clamp(b2, b1, n);
  std::vector<int> split(n, 0);
  for (size_t i = 0; i < n; ++i) split[perm[i]] = i < b1 ? 0 : (i < b2 ? 1 : 2);
  return split;
}

}  // namespace

DataOptions data_options(const Config& config) {
  DataOptions o;
  o.seq_len = config.data.seq_len;
  o.strict = config.data.strict;
  o.train_on_prompt = config.data.train_on_prompt;
  o.seed = static_cast<uint64_t>(config.run.seed);
  return o;
}

TaskDataset::TaskDataset(Task task, int32_t index, const DataOptions& options)
    : task_(std::move(task)), index_(index), options_(options) {
  Problems problems(options.strict, report_);
  constants_.assign(task_.fields.size(), std::string());
  std::string pooled_name;
  std::vector<Record> pooled;
  bool have_pool = false;
  if (task_.format == SourceFormat::kNatinst) {
    NatinstData nd = read_natinst(task_, task_.pooled_path, problems);
    constants_[static_cast<size_t>(task_.field_index("definition"))] = nd.definition;
    positive_examples_ = std::move(nd.positive_examples);
    pooled = std::move(nd.instances);
    have_pool = true;
  } else if (!task_.pooled_path.empty()) {
    pooled = read_jsonl(task_, jsonl_files(task_.pooled_path), problems);
    have_pool = true;
  } else {
    for (int s = 0; s < kNumSplits; ++s) {
      if (task_.split_paths[s].empty()) continue;
      splits_[s] = read_jsonl(task_, jsonl_files(task_.split_paths[s]), problems);
      if (splits_[s].empty())
        task_.fail(
            std::string("source.") + split_name(static_cast<Split>(s)),
            fmt::format("split '{}' has no records ({}){}", split_name(static_cast<Split>(s)),
                        task_.split_paths[s].lexically_normal().string(),
                        report_.problems > 0 ? fmt::format("; {}", report_.summary()) : ""));
    }
  }
  if (have_pool) {
    const std::vector<int> which = carve(pooled.size(), task_.split_ratios, task_.split_seed);
    for (size_t i = 0; i < pooled.size(); ++i) splits_[which[i]].push_back(std::move(pooled[i]));
    for (int s = 0; s < kNumSplits; ++s) {
      if (task_.split_ratios[s] > 0 && splits_[s].empty())
        task_.fail(
            "source.split_ratios",
            fmt::format("split '{}' is empty: {} records x {} leaves none{}",
                        split_name(static_cast<Split>(s)), pooled.size(), task_.split_ratios[s],
                        report_.problems > 0 ? fmt::format(" ({})", report_.summary()) : ""));
    }
  }
  check_few_shot();
}

const Record& TaskDataset::record(Split s, int64_t i) const {
  const std::vector<Record>& v = splits_[static_cast<int>(s)];
  if (i < 0 || i >= static_cast<int64_t>(v.size()))
    throw InputError(
        fmt::format("task '{}': example {} is out of range: the {} split has {} "
                    "examples",
                    task_.name, i, split_name(s), v.size()));
  return v[static_cast<size_t>(i)];
}

std::vector<int32_t> TaskDataset::templates_for(Split s) const {
  std::vector<int32_t> out;
  for (size_t i = 0; i < task_.templates.size(); ++i)
    if (s != Split::kTrain || !task_.templates[i].held_out) out.push_back(static_cast<int32_t>(i));
  return out;
}

const std::vector<Record>& TaskDataset::pool(const Template& t) const {
  return t.few_shot_source == FewShotSource::kPositiveExamples
             ? positive_examples_
             : splits_[static_cast<int>(Split::kTrain)];
}

void TaskDataset::check_few_shot() const {
  for (const Template& t : task_.templates) {
    if (t.few_shot_k == 0) continue;
    const bool from_train = t.few_shot_source == FewShotSource::kTrain;
    const std::string kp = t.key_path + ".few_shot";
    if (from_train && !has_split(Split::kTrain))
      task_.fail(kp + ".source", fmt::format("template '{}' draws demonstrations from the train "
                                             "split, but the task has none",
                                             t.id));
    const int64_t n = static_cast<int64_t>(pool(t).size());
    // On the train split an example cannot be its own demonstration.
    const int64_t usable = from_train && !t.held_out ? n - 1 : n;
    if (t.few_shot_k > usable)
      task_.fail(kp + ".k",
                 fmt::format("template '{}' asks for k = {} demonstrations but the {} pool has {} "
                             "example{}{}; lower few_shot.k",
                             t.id, t.few_shot_k, from_train ? "train" : "positive_examples", n,
                             n == 1 ? "" : "s",
                             usable < n ? " (one less for an example of the pool itself)" : ""));
  }
}

std::vector<int64_t> TaskDataset::pick_demos(Split s, int64_t example, int32_t template_id) const {
  return pick_demos_for(record(s, example), s, example, template_id);
}

std::vector<int64_t> TaskDataset::pick_demos_for(const Record& self, Split s, int64_t example,
                                                 int32_t template_id) const {
  const Template& t = task_.templates.at(static_cast<size_t>(template_id));
  if (t.few_shot_k == 0) return {};
  const std::vector<Record>& candidates = pool(t);
  const bool same_pool = t.few_shot_source == FewShotSource::kTrain && s == Split::kTrain;
  // "The example itself": its own index in the train pool, or any record asking the same input.
  std::vector<size_t> input_fields;
  for (size_t f = 0; f < task_.fields.size(); ++f)
    if (t.input.uses(static_cast<int>(f)) && !task_.fields[f].constant) input_fields.push_back(f);
  const auto excluded = [&](int64_t j) {
    if (same_pool && j == example) return true;
    if (input_fields.empty()) return false;
    const Record& c = candidates[static_cast<size_t>(j)];
    for (size_t f : input_fields)
      if (c.values[f] != self.values[f]) return false;
    return true;
  };
  uint64_t seed = combine(options_.seed, fnv1a("few_shot"));
  seed = combine(seed, fnv1a(task_.name));
  seed = combine(seed, fnv1a(t.id));
  seed = combine(seed, static_cast<uint64_t>(s));
  seed = combine(seed, static_cast<uint64_t>(example));
  SplitMix64 rng(seed);

  const int64_t n = static_cast<int64_t>(candidates.size());
  const int64_t k = t.few_shot_k;
  std::vector<int64_t> out;
  if (n > 4 * k) {  // sparse: rejection sampling
    for (int64_t attempt = 0; attempt < 64 * k && static_cast<int64_t>(out.size()) < k; ++attempt) {
      const int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
      if (excluded(j) || std::find(out.begin(), out.end(), j) != out.end()) continue;
      out.push_back(j);
    }
  }
  if (static_cast<int64_t>(out.size()) < k) {  // dense (or unlucky): partial Fisher-Yates
    out.clear();
    std::vector<int64_t> eligible;
    for (int64_t j = 0; j < n; ++j)
      if (!excluded(j)) eligible.push_back(j);
    if (static_cast<int64_t>(eligible.size()) < k)
      task_.fail(t.key_path + ".few_shot.k",
                 fmt::format("template '{}': {} example {} ({}) has only {} possible "
                             "demonstrations (the pool minus the example itself and records "
                             "with the same input), fewer than k = {}",
                             t.id, split_name(s), example, self.origin, eligible.size(), k));
    for (int64_t i = 0; i < k; ++i) {
      const size_t r = static_cast<size_t>(i) +
                       static_cast<size_t>(rng.below(static_cast<uint64_t>(eligible.size()) -
                                                     static_cast<uint64_t>(i)));
      std::swap(eligible[static_cast<size_t>(i)], eligible[r]);
      out.push_back(eligible[static_cast<size_t>(i)]);
    }
  }
  return out;
}

std::vector<const Record*> TaskDataset::demo_records(Split s, int64_t example,
                                                     int32_t template_id) const {
  const Template& t = task_.templates.at(static_cast<size_t>(template_id));
  std::vector<const Record*> demos;
  for (int64_t j : pick_demos(s, example, template_id))
    demos.push_back(&pool(t)[static_cast<size_t>(j)]);
  return demos;
}

RenderedExample TaskDataset::render(Split s, int64_t example, int32_t template_id,
                                    const Tokenizer& tokenizer, RenderDetail* detail) const {
  const Template& t = task_.templates.at(static_cast<size_t>(template_id));
  const std::vector<int64_t> ids = pick_demos(s, example, template_id);
  std::vector<const Record*> demos;
  for (int64_t j : ids) demos.push_back(&pool(t)[static_cast<size_t>(j)]);
  const Renderer renderer(task_, constants_, tokenizer,
                          RenderOptions{options_.seq_len, options_.train_on_prompt});
  RenderedExample ex = renderer.render(t, record(s, example), demos, detail);
  ex.task = index_;
  ex.template_id = template_id;
  ex.example_id = example;
  if (detail != nullptr) detail->demo_ids.assign(ids.begin() + detail->demos_dropped, ids.end());
  return ex;
}

PromptTexts TaskDataset::texts(Split s, int64_t example, int32_t template_id) const {
  const Template& t = task_.templates.at(static_cast<size_t>(template_id));
  const std::vector<const Record*> demos = demo_records(s, example, template_id);
  return render_texts(task_, constants_, t, record(s, example), demos);
}

std::vector<std::string> TaskDataset::reference_texts(Split s, int64_t example,
                                                      int32_t template_id) const {
  const Template& t = task_.templates.at(static_cast<size_t>(template_id));
  const Record& r = record(s, example);
  std::vector<std::string> out;
  for (const std::string& ref : r.references)
    out.push_back(render_answer_text(task_, constants_, t, r, ref));
  return out;
}

std::vector<std::vector<int32_t>> TaskDataset::label_answers(Split s, int64_t example,
                                                             int32_t template_id,
                                                             const Tokenizer& tokenizer) const {
  const Template& t = task_.templates.at(static_cast<size_t>(template_id));
  const Renderer renderer(task_, constants_, tokenizer,
                          RenderOptions{options_.seq_len, options_.train_on_prompt});
  return renderer.label_answers(t, record(s, example));
}

std::vector<fs::path> task_files(const Config& config) {
  const config::Source src = config.source_of("data.tasks");
  const bool from_file = src.line > 0 && !src.file.starts_with("--set");
  const fs::path base = from_file ? fs::path(src.file).parent_path() : fs::path();
  std::vector<fs::path> out;
  for (const std::string& t : config.data.tasks) {
    const fs::path p(t);
    out.push_back(p.is_absolute() || base.empty() ? p : base / p);
  }
  return out;
}

std::vector<TaskDataset> load_task_datasets(const Config& config, LoadReport* total) {
  const DataOptions options = data_options(config);
  std::vector<TaskDataset> out;
  std::map<std::string, fs::path> names;
  const std::vector<fs::path> files = task_files(config);
  for (size_t i = 0; i < files.size(); ++i) {
    std::error_code ec;
    if (!fs::exists(files[i], ec))
      config::fail(config.source_of("data.tasks"), fmt::format("data.tasks[{}]", i),
                   fmt::format("task file '{}' does not exist (resolved to {}; paths are relative "
                               "to the config file that lists them)",
                               config.data.tasks[i], files[i].string()));
    Task task = load_task(files[i]);
    if (const auto it = names.find(task.name); it != names.end())
      task.fail("name", fmt::format("task name '{}' is also used by {}; names must be unique",
                                    task.name, it->second.string()));
    names[task.name] = files[i];
    out.emplace_back(std::move(task), static_cast<int32_t>(i), options);
    const LoadReport& r = out.back().load_report();
    if (r.problems > 0)
      log::warn_once("data: task '{}': {} skipped (data.strict: false), {} records kept; first: {}",
                     out.back().task().name, r.summary(), r.records, r.messages.front());
    if (total != nullptr) total->merge(r);
  }
  return out;
}

}  // namespace pft
