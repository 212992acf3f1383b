// Prompts for `pft generate`: texts, prompts.jsonl, task templates. See generate_prompts.h.
#include "train/generate_prompts.h"

#include <boost/json.hpp>

#include <fstream>
#include <memory>
#include <optional>

#include "core/error.h"
#include "core/format.h"
#include "data/dataset.h"
#include "data/readers.h"
#include "data/render.h"
#include "data/task.h"

namespace pft {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

PromptInput encode_text(std::string text, std::string id, const Tokenizer& tokenizer,
                        const std::vector<int32_t>& prefix) {
  PromptInput p;
  p.tokens = prefix;
  tokenizer.encode_append(text, /*with_specials=*/true, p.tokens);
  p.text = std::move(text);
  p.id = std::move(id);
  return p;
}

const Template& find_template(const Task& task, const std::string& name) {
  for (const Template& t : task.templates)
    if (t.id == name) return t;
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
    const size_t i = std::stoul(name);
    if (i < task.templates.size()) return task.templates[i];
  }
  std::string ids;
  for (const Template& t : task.templates) ids += (ids.empty() ? "" : ", ") + t.id;
  throw InputError(fmt::format("--template: task '{}' ({}) has no template `{}`; it has: {}",
                               task.name, task.file.string(), name, ids));
}

}  // namespace

std::vector<PromptInput> prompts_from_texts(const std::vector<std::string>& texts,
                                            const Tokenizer& tokenizer,
                                            const std::vector<int32_t>& prefix) {
  std::vector<PromptInput> out;
  for (const auto& t : texts) out.push_back(encode_text(t, "", tokenizer, prefix));
  return out;
}

std::vector<PromptInput> read_prompt_file(const fs::path& jsonl, const Tokenizer& tokenizer,
                                          const std::vector<int32_t>& prefix) {
  std::ifstream in(jsonl);
  if (!in) throw InputError(fmt::format("--input {}: cannot read", jsonl.string()));
  std::vector<PromptInput> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const auto where = fmt::format("{}:{}", jsonl.string(), n);
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    if (ec) throw InputError(fmt::format("{}: error: not valid JSON ({})", where, ec.message()));
    const json::value* prompt = v.is_object() ? v.as_object().if_contains("prompt") : nullptr;
    if (prompt == nullptr || !prompt->is_string())
      throw InputError(
          fmt::format("{}: error: expected an object with a string \"prompt\" (or "
                      "use --task and --template for records of a task)",
                      where));
    std::string id;
    if (const json::value* i = v.as_object().if_contains("id"))
      id = i->is_string() ? std::string(i->as_string()) : json::serialize(*i);
    out.push_back(encode_text(std::string(prompt->as_string()), std::move(id), tokenizer, prefix));
  }
  if (out.empty()) throw InputError(fmt::format("--input {}: no prompts in it", jsonl.string()));
  return out;
}

std::vector<PromptInput> task_prompts(const fs::path& task_file, const std::string& template_name,
                                      const fs::path& jsonl, const std::vector<std::string>& texts,
                                      const Tokenizer& tokenizer, int64_t max_prompt_tokens,
                                      uint64_t run_seed) {
  Task task = load_task(task_file);
  const Template& tmpl = find_template(task, template_name);
  const auto template_id = static_cast<int32_t>(&tmpl - task.templates.data());

  // Constant fields (natinst) and demonstrations come from the task's own data.
  bool has_constant = false;
  for (const FieldDef& f : task.fields) has_constant = has_constant || f.constant;
  std::optional<TaskDataset> data;
  std::vector<std::string> constants(task.fields.size());
  if (has_constant || tmpl.few_shot_k > 0) {
    DataOptions options;
    options.seq_len = max_prompt_tokens;
    options.seed = run_seed;
    data.emplace(task, 0, options);
    constants = data->constants();
  }

  // Records to generate for: the answer may be missing.
  if (task.answer_field >= 0) task.fields[static_cast<size_t>(task.answer_field)].optional = true;
  std::vector<Record> records;
  if (!jsonl.empty()) {
    LoadReport report;
    Problems problems(/*strict=*/true, report);
    records = read_jsonl(task, jsonl_files(jsonl), problems);
  } else {
    std::vector<int> inputs;
    for (size_t i = 0; i < task.fields.size(); ++i)
      if (static_cast<int>(i) != task.answer_field && !task.fields[i].constant)
        inputs.push_back(static_cast<int>(i));
    if (inputs.size() != 1) {
      std::string names;
      for (int i : inputs)
        names += (names.empty() ? "" : ", ") + task.fields[static_cast<size_t>(i)].name;
      throw InputError(
          fmt::format("--prompt: task '{}' reads {} input fields ({}); give them "
                      "as records with --input FILE.jsonl",
                      task.name, inputs.size(), names));
    }
    for (const auto& text : texts) {
      Record r;
      r.values.assign(task.fields.size(), std::string());
      r.values[static_cast<size_t>(inputs[0])] = text;
      r.origin = "--prompt";
      records.push_back(std::move(r));
    }
  }

  RenderOptions render_options;
  render_options.seq_len = max_prompt_tokens;
  const Renderer renderer(task, constants, tokenizer, render_options);
  std::vector<PromptInput> out;
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    std::vector<const Record*> demos;
    if (tmpl.few_shot_k > 0)
      for (int64_t j : data->pick_demos_for(r, Split::kValidation, static_cast<int64_t>(i),
                                            template_id))
        demos.push_back(&data->pool(tmpl)[static_cast<size_t>(j)]);
    const RenderedExample ex = renderer.render(tmpl, r, demos);
    PromptInput p;
    p.tokens.assign(ex.tokens.begin(), ex.tokens.begin() + ex.prompt_tokens);
    p.text = render_texts(task, constants, tmpl, r, demos).prompt();
    p.id = r.id;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace pft
