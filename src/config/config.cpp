#include "config/config.h"
#include "config/data_config.h"

#include <yaml-cpp/yaml.h>

#include "config/doc_table.h"
#include "config/tree.h"
#include "core/error.h"
#include "core/format.h"

namespace pft {

using config::Node;
using config::Source;

Source Config::source_of(const std::string& path) const {
  auto it = sources.find(path);
  if (it != sources.end()) return it->second;
  // Fall back to the closest parent that was written, then the file itself.
  std::string p = path;
  while (true) {
    const size_t dot = p.rfind('.');
    if (dot == std::string::npos) break;
    p = p.substr(0, dot);
    it = sources.find(p);
    if (it != sources.end()) return it->second;
  }
  return Source{file, 0, 0};
}

std::string config_text(const ResumeFrom& r) {
  switch (r.mode) {
    case ResumeFrom::Mode::kNone: return "none";
    case ResumeFrom::Mode::kAuto: return "auto";
    case ResumeFrom::Mode::kFile: return r.file;
  }
  return "none";
}

void parse_scalar(const Node& n, const std::string& path, ResumeFrom& out) {
  std::string text;
  config::parse_scalar(n, path, text);
  if (text == "none") {
    out = ResumeFrom{};
  } else if (text == "auto") {
    out = ResumeFrom{ResumeFrom::Mode::kAuto, ""};
  } else if (text.empty()) {
    config::fail(n.source(), path, "is empty; use `none`, `auto` (the newest valid checkpoint of "
                                   "run.dir) or a checkpoint file");
  } else {
    out = ResumeFrom{ResumeFrom::Mode::kFile, text};
  }
}

std::string type_name(const ResumeFrom&) { return "string"; }

// Chunked cross entropy by default: the same loss within float rounding, no slower, and the
// [tokens x vocab] logits never exist; 256 rows keep a chunk's logits small (128 MB at vocabulary
// 128,256) while each chunk's matmul stays large (256 x d_model x V) (docs/performance.md,
// "Chunked cross entropy").
const int64_t kDefaultLossChunkRows = 256;

std::string config_text(const ActivationCheckpointing& a) {
  if (a.every_k == 0) return "none";
  if (a.every_k == 1) return "all";
  return fmt::format("every_k: {}", a.every_k);
}

void parse_scalar(const Node& n, const std::string& path, ActivationCheckpointing& out) {
  constexpr const char* kForms = "use `none`, `all` or `{every_k: N}` (N >= 1; `every_k:N` with --set)";
  const auto every_k = [&](const Node& value, const std::string& where) {
    int64_t k = 0;
    config::parse_scalar(value, where, k);
    if (k < 1) config::fail(value.source(), where, fmt::format("must be at least 1, got {}", k));
    out = ActivationCheckpointing{k};
  };
  if (n.is_map()) {
    const Node* k = n.find("every_k");
    if (k == nullptr || n.entries().size() != 1)
      config::fail(n.source(), path, fmt::format("a mapping here holds one key, every_k; {}", kForms));
    every_k(*k, path + ".every_k");
    return;
  }
  std::string text;
  config::parse_scalar(n, path, text);
  if (text == "none") {
    out = ActivationCheckpointing{};
  } else if (text == "all") {
    out = ActivationCheckpointing{1};
  } else if (text.rfind("every_k:", 0) == 0) {
    std::string number = text.substr(8);
    number.erase(0, number.find_first_not_of(' '));
    every_k(Node::scalar(number, n.source()), path);
  } else {
    config::fail(n.source(), path, fmt::format("`{}` is not a checkpointing choice; {}", text, kForms));
  }
}

std::string type_name(const ActivationCheckpointing&) { return "string or {every_k: int}"; }

int64_t resolved_kv_heads(const ModelConfig& m) { return m.n_kv_heads > 0 ? m.n_kv_heads : m.n_heads; }

int64_t resolved_d_ff(const ModelConfig& m) {
  if (m.d_ff > 0) return m.d_ff;
  if (m.family == "gpt2") return 4 * m.d_model;
  const int64_t h = (8 * m.d_model + 2) / 3;
  return (h + 63) / 64 * 64;
}

namespace {

// The checks of the data.* keys alone (what `pft data show` and `validate` read).
void validate_data(const Config& c) {
  const auto fail = [&](const std::string& path, const std::string& what) {
    config::fail(c.source_of(path), path, what);
  };
  if (c.data.mixing_cap > 0 && c.data.mixing != "proportional")
    fail("data.mixing_cap",
         fmt::format("a cap applies to data.mixing: proportional only (data.mixing is `{}`); "
                     "remove it, or use mixing_temperature to flatten a `temperature` mixture",
                     c.data.mixing));
  if (!c.data.mixing_weights.empty() && c.data.mixing != "fixed")
    fail("data.mixing_weights",
         fmt::format("weights apply to data.mixing: fixed only (data.mixing is `{}`)", c.data.mixing));
  if (c.data.mixing == "fixed" && c.data.mixing_weights.empty())
    fail("data.mixing", "`fixed` takes its weights from data.mixing_weights (one per task, in "
                        "data.tasks order), which is empty");
  if (c.data.source == DataSource::kTasks && c.data.tasks.empty())
    fail("data.tasks", "data.source is `tasks` but no task files are listed");
}

void validate(const Config& c) {
  const auto fail = [&](const std::string& path, const std::string& what) {
    config::fail(c.source_of(path), path, what);
  };
  if (c.run.trace_to > 0 && c.run.trace_to <= c.run.trace_from)
    fail("run.trace_to", fmt::format("{} is not after run.trace_from = {}: the range [from, to) "
                                     "would trace no step; raise it, or 0 for the end of the run",
                                     c.run.trace_to, c.run.trace_from));
  const ModelConfig& m = c.model;
  // With model.from_pretrained its config.json decides the model.* keys; they are checked when
  // it is read (model/hf_import.h: apply_pretrained_architecture).
  if (m.from_pretrained.empty()) {
    if (m.d_model % m.n_heads != 0)
      fail("model.n_heads",
           fmt::format("{} heads do not divide d_model = {}; pick a divisor of {}", m.n_heads,
                       m.d_model, m.d_model));
    const int64_t kv = resolved_kv_heads(m);
    if (m.n_heads % kv != 0)
      fail("model.n_kv_heads", fmt::format("{} key/value heads do not divide n_heads = {}", kv,
                                           m.n_heads));
    if (m.family == "gpt2" && m.n_kv_heads != 0 && m.n_kv_heads != m.n_heads)
      fail("model.n_kv_heads",
           "grouped-query attention is a llama-family feature; gpt2 uses n_heads");
    if (m.family == "llama" && (m.d_model / m.n_heads) % 2 != 0)
      fail("model.n_heads", fmt::format("RoPE needs an even head dimension; d_model / n_heads = {}",
                                        m.d_model / m.n_heads));
    if (c.data.seq_len > m.max_seq_len)
      fail("data.seq_len", fmt::format("{} is longer than model.max_seq_len = {}", c.data.seq_len,
                                       m.max_seq_len));
  }
  validate_data(c);
  const TrainConfig& t = c.train;
  // Note [low-precision base]: a bf16/fp16 base exists only under a frozen base, and its matmuls
  // run under the autocast of the same dtype (train/precision.h), so the two keys must agree:
  // refusing a mismatch is clearer than one key silently overriding the other.
  if (m.base_dtype != Precision::kFp32) {
    const std::string dtype = config_text(m.base_dtype);
    if (!is_peft(t.method))
      fail("model.base_dtype",
           fmt::format("`{}` stores the frozen base of a PEFT method, but train.method is `full`, "
                       "which trains every weight (no frozen base); set model.base_dtype: fp32 "
                       "(train.precision: {} runs the matmuls in {} with fp32 master weights)",
                       dtype, dtype, dtype));
    if (t.precision != m.base_dtype)
      fail("model.base_dtype",
           fmt::format("a {} base runs its frozen matmuls under {} autocast, but train.precision "
                       "is `{}`; set train.precision: {} (or model.base_dtype: fp32)",
                       dtype, dtype, config_text(t.precision), dtype));
  }
  if (t.global_batch_size % t.micro_batch_size != 0)
    fail("train.global_batch_size",
         fmt::format("{} is not a multiple of train.micro_batch_size = {}", t.global_batch_size,
                     t.micro_batch_size));
  if (t.warmup_steps > t.steps)
    fail("train.warmup_steps", fmt::format("{} warmup steps exceed train.steps = {}",
                                           t.warmup_steps, t.steps));
  // Schedules: the checks that need no task list (the controller checks names and metrics,
  // control/schedule.h).
  if (!c.schedule.phases.empty() && c.data.source != DataSource::kTasks)
    fail("schedule.phases", "phases schedule prompt tasks; they need data.source: tasks");
  for (size_t i = 0; i < c.schedule.phases.size(); ++i) {
    const PhaseConfig& p = c.schedule.phases[i];
    const std::string at = fmt::format("schedule.phases[{}].", i);
    if (p.mixing_cap > 0 && p.mixing != "proportional")
      fail(at + "mixing_cap", fmt::format("a cap applies to mixing: proportional only (this "
                                          "phase's mixing is `{}`)", p.mixing));
    if (!p.mixing_weights.empty() && p.mixing != "fixed")
      fail(at + "mixing_weights",
           fmt::format("weights apply to mixing: fixed only (this phase's mixing is `{}`)", p.mixing));
    if (p.mixing == "fixed" && p.mixing_weights.empty())
      fail(at + "mixing", "`fixed` takes its weights from mixing_weights, which is empty");
    if (p.adaptive_floor > p.adaptive_ceiling)
      fail(at + "adaptive_floor", fmt::format("{} is above adaptive_ceiling = {}",
                                              p.adaptive_floor, p.adaptive_ceiling));
  }
}

Config bind(const Node& root, const std::string& file, bool data_only = false,
            bool training = true) {
  Config c;
  c.file = file;
  config::Reader reader(&root, "", Source{file, 1, 1}, c.sources);
  describe(reader, c);
  reader.finish();
  if (!data_only && training) reader.finish_missing();  // the required keys are all training keys
  if (data_only) {
    validate_data(c);
  } else {
    validate(c);
  }
  return c;
}

}  // namespace

Config load_config(const std::filesystem::path& path, const std::vector<std::string>& overrides,
                   bool training) {
  Node root = config::load_file(path);
  for (const std::string& o : overrides) config::apply_override(root, o);
  return bind(root, path.string(), /*data_only=*/false, training);
}

Config load_data_config(const std::filesystem::path& path,
                        const std::vector<std::string>& overrides) {
  Node root = config::load_file(path);
  for (const std::string& o : overrides) config::apply_override(root, o);
  return bind(root, path.string(), /*data_only=*/true);
}

Config parse_config(const std::string& yaml, const std::string& name,
                    const std::vector<std::string>& overrides) {
  Node root = config::from_yaml_text(yaml, name);
  if (root.is_null()) root = Node::map(Source{name, 1, 1});
  if (!root.is_map())
    config::fail(root.source(), "", "a config must be a mapping of sections (run:, train:, ...)");
  for (const std::string& o : overrides) config::apply_override(root, o);
  return bind(root, name);
}

void validate_for_world(const Config& c, int world_size) {
  const TrainConfig& t = c.train;
  const int64_t per_step = t.micro_batch_size * world_size;
  if (t.global_batch_size % per_step != 0)
    config::fail(c.source_of("train.global_batch_size"), "train.global_batch_size",
                 fmt::format("{} sequences cannot be split evenly over {} ranks x micro_batch_size "
                             "{}; use a multiple of {}",
                             t.global_batch_size, world_size, t.micro_batch_size, per_step));
}

std::string to_yaml(const Config& c) {
  YAML::Emitter out;
  out.SetIndent(2);
  config::Writer w(out);
  Config copy = c;
  out << YAML::BeginMap;
  describe(w, copy);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string config_reference_markdown() {
  std::vector<config::DocRow> rows;
  config::DocWriter doc(rows);
  Config defaults;
  describe(doc, defaults);
  return config::markdown_table(rows);
}

}  // namespace pft
