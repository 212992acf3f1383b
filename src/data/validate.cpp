// Task data validation (contract: data/validate.h).
#include "data/validate.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>

#include "core/error.h"
#include "core/format.h"
#include "data/dataset.h"
#include "data/tokenizer.h"

namespace pft {

namespace {

struct SplitStats {
  int64_t examples = 0, renders = 0, truncated = 0, max_tokens = 0, tokens = 0;
};

}  // namespace

std::string quoted_for_display(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string DataValidation::summary() const {
  if (!failed() && bad_records == 0) return fmt::format("data: {} task(s) valid", tasks);
  if (!failed())
    return fmt::format("data: valid; {} bad record(s) would be skipped (data.strict: false)",
                       bad_records);
  return fmt::format("data: invalid: {} error(s), {} bad record(s){}", errors.size(), bad_records,
                     bad_records > 0 && strict ? " (data.strict: true stops at the first; "
                                                 "--set data.strict=false skips them)"
                                               : "");
}

DataValidation validate_task_data(const Config& config) {
  DataValidation v;
  v.strict = config.data.strict;
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = load_tokenizer(config.data.tokenizer);
  } catch (const InputError& e) {
    v.errors.push_back(e.what());
  }
  const std::vector<std::filesystem::path> files = task_files(config);
  if (files.empty())
    v.errors.push_back(fmt::format("{}: error: data.tasks: no task files are listed",
                                 config.source_of("data.tasks").str()));
  DataOptions options = data_options(config);
  options.strict = false;  // collect every bad record; data.strict decides the exit code
  v.table =
      fmt::format("{:<20} {:<10} {:>8} {:>9} {:>10} {:>10} {:>10}\n", "task", "split", "examples",
                  "templates", "truncated", "max tokens", "mean");
  for (size_t ti = 0; ti < files.size(); ++ti) {
    try {
      if (!std::filesystem::exists(files[ti]))
        throw InputError(fmt::format(
            "{}: error: data.tasks[{}]: task file '{}' does not exist "
            "(resolved to {})",
            config.source_of("data.tasks").str(), ti, config.data.tasks[ti], files[ti].string()));
      TaskDataset data(load_task(files[ti]), static_cast<int32_t>(ti), options);
      const Task& task = data.task();
      const LoadReport& report = data.load_report();
      v.bad_records += report.problems;
      for (const std::string& m : report.messages) v.skipped.push_back(m);
      if (report.problems > static_cast<int64_t>(report.messages.size()))
        v.skipped.push_back(fmt::format(
            "task '{}': ... and {} more ({})", task.name,
            report.problems - static_cast<int64_t>(report.messages.size()), report.summary()));
      if (!tok) continue;
      std::set<int32_t> boundary_checked;
      for (int s = 0; s < kNumSplits; ++s) {
        const Split split = static_cast<Split>(s);
        if (!data.has_split(split)) continue;
        SplitStats st;
        st.examples = data.size(split);
        const std::vector<int32_t> templates = data.templates_for(split);
        for (int32_t t : templates) {
          for (int64_t i = 0; i < data.size(split); ++i) {
            const RenderedExample ex = data.render(split, i, t, *tok);
            ++st.renders;
            st.truncated += ex.truncated;
            st.max_tokens =
                std::max<int64_t>(st.max_tokens, static_cast<int64_t>(ex.tokens.size()));
            st.tokens += static_cast<int64_t>(ex.tokens.size());
            if (ex.answer_tokens == 0)
              v.errors.push_back(
                  fmt::format("{}: error: task '{}': template '{}' renders no answer "
                              "token (an empty answer and eos: false): nothing to "
                              "train on",
                              data.record(split, i).origin, task.name, task.templates[t].id));
          }
          if (boundary_checked.insert(t).second) {  // once per template
            const PromptTexts x = data.texts(split, 0, t);
            if (boundary_splits_token(*tok, x.prompt(), x.answer))
              v.notes.push_back(fmt::format(
                  "{}: note: task '{}': template '{}': the tokenizer merges across the "
                  "prompt/answer boundary ({} | {}); prompts end and answers start where "
                  "it would not split (docs/tasks.md, \"Part boundaries\"), e.g. end the "
                  "input with ':' and start the output with a space",
                  task.source_of(task.templates[t].key_path + ".output").str(), task.name,
                  task.templates[t].id,
                  quoted_for_display(x.prompt().substr(x.prompt().size() -
                                           std::min<size_t>(12, x.prompt().size()))),
                  quoted_for_display(x.answer.substr(0, 12))));
          }
        }
        v.table += fmt::format("{:<20} {:<10} {:>8} {:>9} {:>10} {:>10} {:>10.1f}\n", task.name,
                             split_name(split), st.examples, templates.size(), st.truncated,
                             st.max_tokens,
                             st.renders ? static_cast<double>(st.tokens) / st.renders : 0.0);
      }
    } catch (const InputError& e) {
      v.errors.push_back(e.what());
    }
  }
  v.tasks = static_cast<int64_t>(files.size());
  return v;
}

}  // namespace pft
