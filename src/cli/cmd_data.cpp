// pft data show CONFIG --task T [-n 5] [--template K] [--split S] [--from I]
//     print rendered examples: the trained span between ⟦ ⟧ (green on a terminal), token counts
//     of each part, references
// pft data validate CONFIG
//     read every task of data.tasks, render every example under every template; list every
//     problem (data/validate.h); exit 0 (clean, or data.strict: false) or 2
//
// show and validate check only the data.* keys of the config (training keys cannot stop them),
// and resolve data.tokenizer from model.from_pretrained as `pft train` does.
// pft data docs
//     print the Markdown key table of task files (docs/tasks.md)
//
// pft data prepare CONFIG
//     build the prepared token stores (cli/cmd_data_prepare.cpp)
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "cli/session.h"
#include "config/config.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "data/validate.h"

namespace pft::cli {

namespace {

Split parse_split(const std::string& s) {
  for (int i = 0; i < kNumSplits; ++i)
    if (s == split_name(static_cast<Split>(i))) return static_cast<Split>(i);
  throw InputError(fmt::format("--split '{}': expected train, validation or test", s));
}

// The task of data.tasks named `which` (a name or a 0-based index).
size_t find_task(const Config& config, const std::vector<Task>& tasks, const std::string& which) {
  std::vector<std::string> names;
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i].name == which || std::to_string(i) == which) return i;
    names.push_back(tasks[i].name);
  }
  if (tasks.empty())
    config::fail(config.source_of("data.tasks"), "data.tasks",
                 "no task files are listed; add task YAML files (docs/tasks.md)");
  const std::string hint = config::suggest(which, names);
  throw InputError(fmt::format("--task '{}': no such task in data.tasks{}; tasks: {}", which,
                               hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
                               fmt::join(names, ", ")));
}

int32_t find_template(const Task& task, const std::string& which) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < task.templates.size(); ++i) {
    if (task.templates[i].id == which || std::to_string(i) == which) return static_cast<int32_t>(i);
    ids.push_back(task.templates[i].id);
  }
  const std::string hint = config::suggest(which, ids);
  throw InputError(fmt::format(
      "--template '{}': task '{}' has no such template{}; templates: {}", which, task.name,
      hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint), fmt::join(ids, ", ")));
}

// The example's text with each run of trained tokens between ⟦ ⟧ (and green on a terminal).
std::string marked_text(const RenderedExample& ex, const Tokenizer& tok, bool color) {
  std::string out;
  size_t i = 0;
  while (i < ex.tokens.size()) {
    size_t j = i;
    while (j < ex.tokens.size() && ex.loss_mask[j] == ex.loss_mask[i]) ++j;
    const std::string text = tok.decode(std::span<const int32_t>(ex.tokens.data() + i, j - i));
    if (ex.loss_mask[i]) {
      out += color ? "\x1b[1;32m⟦" : "⟦";
      out += text;
      out += color ? "⟧\x1b[0m" : "⟧";
    } else {
      out += text;
    }
    i = j;
  }
  return out;
}

struct ShowArgs {
  ConfigArgs config;
  std::string task;
  int64_t n = 5;
  int64_t from = 0;
  std::string templ;
  std::string split = "train";
};

int run_show(Session& session, const ShowArgs& a) {
  const Config config = load_resolved_config(a.config, ConfigKeys::kData);
  std::unique_ptr<Tokenizer> tok;
  std::optional<TaskDataset> data;
  std::vector<int32_t> templates;
  Split split = Split::kTrain;
  agree_world([&] {
    split = parse_split(a.split);
    tok = load_tokenizer(config.data.tokenizer);
    std::vector<Task> tasks;
    for (const auto& f : task_files(config)) tasks.push_back(load_task(f));
    const size_t t = find_task(config, tasks, a.task);
    data.emplace(std::move(tasks[t]), static_cast<int32_t>(t), data_options(config));
    if (!a.templ.empty()) {
      templates.push_back(find_template(data->task(), a.templ));
      if (split == Split::kTrain && data->task().templates[templates[0]].held_out)
        std::fprintf(stderr, "note: template '%s' is held out: training never uses it\n",
                     data->task().templates[templates[0]].id.c_str());
    } else {
      templates = data->templates_for(split);
    }
    if (!data->has_split(split))
      throw InputError(fmt::format("task '{}' has no {} split", data->task().name, a.split));
  });
  if (session.world_rank() != 0) return 0;

  const bool color = isatty(fileno(stdout)) != 0;
  const Task& task = data->task();
  const int64_t end = std::min(data->size(split), a.from + std::max<int64_t>(a.n, 0));
  const LoadReport& report = data->load_report();
  std::cout << fmt::format(
      "task '{}' ({}) · metric {} · {} split: {} examples · tokenizer {} · "
      "seq_len {}\n",
      task.name, task.file.lexically_normal().string(), metric_name(task.metric), a.split,
      data->size(split), tok->describe(), config.data.seq_len);
  if (report.problems > 0) std::cout << "skipped: " << report.summary() << "\n";
  for (int32_t ti : templates) {
    const Template& t = task.templates[static_cast<size_t>(ti)];
    for (int64_t i = a.from; i < end; ++i) {
      RenderDetail d;
      const RenderedExample ex = data->render(split, i, ti, *tok, &d);
      const Record& r = data->record(split, i);
      std::cout << fmt::format("\n── template '{}'{} · {} #{}{} · {}\n", t.id,
                               t.held_out ? " (held out)" : "", a.split, i,
                               r.id.empty() ? "" : fmt::format(" ({})", r.id), r.origin);
      std::cout << marked_text(ex, *tok, color) << "\n";
      std::cout << fmt::format(
          "   tokens: instruction {} · few-shot {} · input {} · answer {}{} "
          "= {} (seq_len {})\n",
          d.instruction_tokens, d.few_shot_tokens, d.input_tokens, d.answer_tokens,
          t.eos ? " (incl. eos)" : "", ex.tokens.size(), config.data.seq_len);
      if (!d.demo_ids.empty()) {
        std::vector<std::string> ids;
        const std::vector<Record>& pool = data->pool(t);
        for (int64_t j : d.demo_ids) ids.push_back(pool[static_cast<size_t>(j)].origin);
        std::cout << fmt::format(
            "   demonstrations ({}): {}\n",
            t.few_shot_source == FewShotSource::kTrain ? "train" : "positive examples",
            fmt::join(ids, ", "));
      }
      if (ex.truncated)
        std::cout << fmt::format(
            "   truncated: {} demonstration(s) dropped{}{}\n", d.demos_dropped,
            d.field_cut ? fmt::format(", field '{}' shortened", task.field_names[t.truncate_field])
                        : "",
            d.hard_cut_tokens > 0 ? fmt::format(", {} tokens cut", d.hard_cut_tokens) : "");
      std::vector<std::string> refs;
      for (const std::string& s : data->references(split, i)) refs.push_back(quoted_for_display(s));
      std::cout << fmt::format("   references: {}\n", fmt::join(refs, ", "));
      if (task.metric == Metric::kClassification)
        std::cout << fmt::format("   labels (scored by likelihood): {}\n",
                                 fmt::join(task.labels, ", "));
    }
  }
  std::cout << std::flush;
  return 0;
}

// ---- validate ----

int run_validate(Session& session, const ConfigArgs& a) {
  const Config config = load_resolved_config(a, ConfigKeys::kData);
  // Deterministic and identical on every rank; rank 0 prints.
  const DataValidation v = validate_task_data(config);
  if (session.world_rank() == 0) {
    std::cout << v.table;
    for (const std::string& n : v.notes) std::cout << n << "\n";
    std::cout << std::flush;
    for (const std::string& e : v.skipped) std::cerr << e << "\n";
    for (const std::string& e : v.errors) std::cerr << e << "\n";
    (v.failed() ? std::cerr : std::cout) << v.summary() << "\n";
    std::cout << std::flush;
  }
  return v.failed() ? static_cast<int>(ExitCode::kBadInput) : 0;
}

}  // namespace

Command add_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Show, validate and prepare prompt datasets (task files)");
  data->require_subcommand(1);

  auto show_args = std::make_shared<ShowArgs>();
  auto* show =
      data->add_subcommand("show", "Print rendered examples with the trained span marked ⟦ ⟧");
  add_config_args(*show, show_args->config);
  show->add_option("--task", show_args->task, "Task name (or index in data.tasks)")->required();
  show->add_option("-n", show_args->n, "Examples to show (per template)")->capture_default_str();
  show->add_option("--from", show_args->from, "First example index")->capture_default_str();
  show->add_option("--template", show_args->templ,
                   "Template id or index (default: every template of the split)");
  show->add_option("--split", show_args->split, "train, validation or test")->capture_default_str();

  auto validate_args = std::make_shared<ConfigArgs>();
  auto* validate =
      data->add_subcommand("validate", "Check every task, record and template; exit 0 or 2");
  add_config_args(*validate, *validate_args);

  auto* docs =
      data->add_subcommand("docs", "Print the Markdown key table of task files (docs/tasks.md)");

  std::vector<Command> subs = {
      Command{show,
              [show_args] {
                Session session;
                return run_show(session, *show_args);
              }},
      Command{validate,
              [validate_args] {
                Session session;
                return run_validate(session, *validate_args);
              }},
      Command{docs,
              [] {
                std::cout << task_reference_markdown();
                return 0;
              }},
      add_data_prepare(*data),
  };
  Command c;
  c.app = data;
  c.run = [subs]() -> int {
    for (const Command& s : subs)
      if (s.app->parsed()) return s.run();
    return static_cast<int>(ExitCode::kBadInput);
  };
  return c;
}

}  // namespace pft::cli
