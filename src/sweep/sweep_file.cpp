#include "sweep/sweep_file.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "config/schema.h"
#include "control/schedule.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "data/dataset.h"
#include "data/task.h"

namespace pft::sweep {

namespace fs = std::filesystem;
using config::Node;
using config::Source;

// ---- Enum words (config/schema.h: parsed as enums, refused with the words listed) ----------
inline constexpr config::EnumWord<SearchKind> kSearchWords[] = {{SearchKind::kGrid, "grid"},
                                                                {SearchKind::kRandom, "random"}};
constexpr std::span<const config::EnumWord<SearchKind>> enum_words(SearchKind) {
  return kSearchWords;
}
inline constexpr config::EnumWord<ExecutorKind> kExecutorWords[] = {
    {ExecutorKind::kLocal, "local"}, {ExecutorKind::kSlurm, "slurm"}, {ExecutorKind::kMpi, "mpi"}};
constexpr std::span<const config::EnumWord<ExecutorKind>> enum_words(ExecutorKind) {
  return kExecutorWords;
}

const char* executor_name(ExecutorKind kind) { return config::config_text(kind); }

const char* param_kind_name(ParamSpec::Kind kind) {
  switch (kind) {
    case ParamSpec::Kind::kGrid: return "grid";
    case ParamSpec::Kind::kChoice: return "choice";
    case ParamSpec::Kind::kUniform: return "uniform";
    case ParamSpec::Kind::kLogUniform: return "log_uniform";
    case ParamSpec::Kind::kInt: return "int";
  }
  return "?";
}

// The keys of the sweep file other than base: and parameters:, bound by config/schema.h's
// Reader (unknown keys, types and ranges reported with file:line:col).
struct TopKeys {
  SearchKind search = SearchKind::kGrid;
  int64_t trials = 0;
  int64_t seed = 0;
  std::vector<int64_t> seeds;
  std::vector<std::string> set;
  Objective objective;
  EarlyStop early_stop;
  ExecutorSpec executor;
};

template <class V>
void describe(V& v, Objective& c) {
  using namespace config;
  v.field("metric", c.metric, "eval.<metric> or eval.<task>.<metric>", required());
  v.field("mode", c.mode, "min | max | auto", one_of({"auto", "min", "max"}));
}

template <class V>
void describe(V& v, EarlyStop& c) {
  using namespace config;
  v.field("rule", c.rule, "asha", one_of({"asha"}));
  v.field("eta", c.eta, "reduction factor", at_least(2));
  v.field("min_steps", c.min_steps, "first rung", at_least(1));
  v.field("max_steps", c.max_steps, "rungs lie below it; 0 = the longest trial's train.steps",
          at_least(0));
}

template <class V>
void describe(V& v, ExecutorSpec& c) {
  using namespace config;
  v.field("kind", c.kind, "local | slurm | mpi");
  v.field("parallel", c.parallel, "trials at once", at_least(1));
  v.field("ranks_per_trial", c.ranks_per_trial, "ranks of each trial", at_least(1));
  v.field("sbatch_args", c.sbatch_args, "extra sbatch flags");
  v.field("launcher", c.launcher, "mpirun wrapper of multi-rank local trials");
}

template <class V>
void describe(V& v, TopKeys& c) {
  using namespace config;
  v.field("search", c.search, "grid | random");
  v.field("trials", c.trials, "random search: points", at_least(1));
  v.field("seed", c.seed, "random search: RNG seed", at_least(0));
  v.field("seeds", c.seeds, "run.seed of each repeat");
  v.field("set", c.set, "fixed overrides of every trial");
  v.section("objective", c.objective, "objective");
  v.section("early_stop", c.early_stop, "early stopping");
  v.section("executor", c.executor, "executor");
}

namespace {

// A node as the YAML text `--set key=value` parses back to the same value: scalars as written
// (quoted ones double-quoted), lists and maps in flow style.
void emit(YAML::Emitter& e, const Node& n) {
  switch (n.kind()) {
    case Node::Kind::kNull: e << YAML::Null; break;
    case Node::Kind::kScalar:
      if (n.quoted()) {
        e << YAML::DoubleQuoted << n.value();
      } else {
        e << n.value();
      }
      break;
    case Node::Kind::kSeq:
      e << YAML::Flow << YAML::BeginSeq;
      for (const Node& item : n.items()) emit(e, item);
      e << YAML::EndSeq;
      break;
    case Node::Kind::kMap:
      e << YAML::Flow << YAML::BeginMap;
      for (const auto& entry : n.entries()) {
        e << YAML::Key << entry.key << YAML::Value;
        emit(e, entry.value);
      }
      e << YAML::EndMap;
      break;
  }
}

std::string yaml_text(const Node& n) {
  YAML::Emitter e;
  emit(e, n);
  return e.c_str();
}

double number(const Node& n, const std::string& path) {
  double v = 0.0;
  config::parse_scalar(n, path, v);
  return v;
}

// Every key path `--set` may name (the rows of docs/config.md).
const std::vector<std::string>& config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<config::DocRow> rows;
    config::DocWriter doc(rows);
    Config defaults;
    describe(doc, defaults);
    std::vector<std::string> out;
    for (const auto& r : rows)
      if (r.path.find("[]") == std::string::npos) out.push_back(r.path);
    return out;
  }();
  return keys;
}

ParamSpec parse_param(const config::MapEntry& entry, SearchKind search) {
  const std::string path = "parameters." + entry.key;
  ParamSpec p;
  p.key = entry.key;
  p.source = entry.key_source;
  const std::vector<std::string>& keys = config_keys();
  if (std::find(keys.begin(), keys.end(), entry.key) == keys.end()) {
    const std::string near = config::suggest(entry.key, keys);
    config::fail(entry.key_source, path,
                 fmt::format("`{}` is not a config key{}; parameters are `--set`-style key paths "
                             "(`pft config docs` lists them)",
                             entry.key, near.empty() ? "" : fmt::format(" (did you mean `{}`?)", near)));
  }
  if (entry.key == "run.dir")
    config::fail(entry.key_source, path, "the sweep gives every trial its own run.dir "
                                         "(SWEEP_DIR/trials/<id>); it cannot be searched");
  if (entry.key == "train.resume")
    config::fail(entry.key_source, path, "the sweep sets train.resume itself (auto); it cannot be "
                                         "searched");
  const Node& v = entry.value;
  const Node* body = &v;
  if (v.is_seq()) {
    p.kind = ParamSpec::Kind::kGrid;  // `key: [a, b]` is short for `key: {grid: [a, b]}`
  } else if (v.is_map() && v.entries().size() == 1) {
    const auto& e = v.entries().front();
    static const std::vector<std::string> kinds = {"grid", "choice", "uniform", "log_uniform", "int"};
    const auto it = std::find(kinds.begin(), kinds.end(), e.key);
    if (it == kinds.end()) {
      const std::string near = config::suggest(e.key, kinds);
      config::fail(e.key_source, path + "." + e.key,
                   fmt::format("unknown range kind{}; use one of grid, choice, uniform, "
                               "log_uniform, int",
                               near.empty() ? "" : fmt::format(" (did you mean `{}`?)", near)));
    }
    p.kind = static_cast<ParamSpec::Kind>(it - kinds.begin());
    body = &e.value;
  } else {
    config::fail(v.source(), path,
                 "expected a list of values or a mapping with one of grid, choice, uniform, "
                 "log_uniform, int (e.g. `train.lr: {grid: [1e-3, 3e-3]}`)");
  }
  const std::string kpath = path + "." + param_kind_name(p.kind);
  if (!body->is_seq())
    config::fail(body->source(), kpath, fmt::format("expected a list, found {}",
                                                    Node::kind_name(body->kind())));
  const auto& items = body->items();
  if (p.kind == ParamSpec::Kind::kGrid || p.kind == ParamSpec::Kind::kChoice) {
    if (items.empty()) config::fail(body->source(), kpath, "needs at least one value");
    for (const Node& item : items) p.values.push_back(yaml_text(item));
    return p;
  }
  if (search == SearchKind::kGrid)
    config::fail(entry.key_source, kpath,
                 fmt::format("a `{}` range is drawn from by `search: random`; a grid search "
                             "takes listed values (`grid: [..]`)",
                             param_kind_name(p.kind)));
  if (items.size() != 2)
    config::fail(body->source(), kpath, fmt::format("expected [lo, hi], found {} values", items.size()));
  p.lo = number(items[0], kpath + "[0]");
  p.hi = number(items[1], kpath + "[1]");
  if (!std::isfinite(p.lo) || !std::isfinite(p.hi) || p.lo > p.hi)
    config::fail(body->source(), kpath, fmt::format("lo ({}) must be <= hi ({}), both finite",
                                                    p.lo, p.hi));
  if (p.kind == ParamSpec::Kind::kLogUniform && !(p.lo > 0.0))
    config::fail(body->source(), kpath, fmt::format("log_uniform needs lo > 0 (found {})", p.lo));
  if (p.kind == ParamSpec::Kind::kInt) {
    int64_t lo = 0, hi = 0;
    config::parse_scalar(items[0], kpath + "[0]", lo);
    config::parse_scalar(items[1], kpath + "[1]", hi);
  }
  return p;
}

// The inline base config as a file's YAML: relative data.tasks paths (and `defaults:` files)
// made absolute against the sweep file's directory, so they mean what they meant in place.
std::string inline_base_text(const std::string& text, const fs::path& file) {
  YAML::Node root = YAML::Load(text);
  YAML::Node base = root["base"];
  const fs::path dir = fs::absolute(file).parent_path();
  const auto absolutize = [&](YAML::Node seq) {
    if (!seq || !seq.IsSequence()) return;
    for (size_t i = 0; i < seq.size(); ++i) {
      if (!seq[i].IsScalar()) continue;
      const fs::path p(seq[i].as<std::string>());
      if (!p.is_absolute()) seq[i] = (dir / p).lexically_normal().string();
    }
  };
  if (base["data"] && base["data"].IsMap()) absolutize(base["data"]["tasks"]);
  absolutize(base["defaults"]);
  YAML::Emitter e;
  e << base;
  return std::string(e.c_str()) + "\n";
}

std::string fmt_real(double v) { return fmt::format("{:.6g}", v); }

}  // namespace

SweepSpec parse_sweep_text(const std::string& text, const fs::path& file) {
  SweepSpec spec;
  spec.file = file;
  spec.text = text;
  const std::string name = file.string();
  Node root = config::from_yaml_text(text, name);
  if (!root.is_map())
    config::fail(root.source(), "", "a sweep file is a mapping (base:, parameters:, objective:, ...)");
  const Source top{name, 1, 1};

  // base:
  const config::MapEntry* base = root.find_entry("base");
  if (base == nullptr || base->value.is_null())
    config::fail(top, "base", "missing: the config every trial starts from (a file relative to "
                              "the sweep file, or an inline mapping of config sections)");
  if (base->value.is_scalar()) {
    fs::path p(base->value.value());
    if (!p.is_absolute()) p = file.parent_path() / p;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      config::fail(base->value.source(), "base",
                   fmt::format("config file '{}' does not exist (resolved to {}; a relative path "
                               "is relative to the sweep file)",
                               base->value.value(), p.string()));
    spec.base_file = p;
  } else if (base->value.is_map()) {
    spec.base_inline = inline_base_text(text, file);
  } else {
    config::fail(base->value.source(), "base", "expected a config file path or a mapping of "
                                               "config sections");
  }

  // Everything but base: and parameters: through the schema Reader.
  if (root.find("objective") == nullptr)
    config::fail(top, "objective", "missing: the metric trials are ranked by, e.g. "
                                   "`objective: {metric: eval.exact_match}`");
  Node rest = root;
  rest.erase("base");
  rest.erase("parameters");
  TopKeys keys;
  config::SourceMap sources;
  config::Reader reader(&rest, "", top, sources);
  describe(reader, keys);
  reader.finish();
  reader.finish_missing();
  spec.search = keys.search;
  spec.trials = keys.trials;
  spec.seed = keys.seed;
  spec.seeds = keys.seeds;
  spec.set = keys.set;
  spec.objective = keys.objective;
  spec.early_stop = keys.early_stop;
  spec.early_stop.enabled = root.find("early_stop") != nullptr && !root.find("early_stop")->is_null();
  spec.executor = keys.executor;
  const auto src = [&](const std::string& path) {
    const auto it = sources.find(path);
    return it != sources.end() ? it->second : top;
  };

  Objective& obj = spec.objective;
  obj.source = src("objective.metric");
  if (!obj.metric.starts_with("eval."))
    config::fail(src("objective.metric"), "objective.metric",
                 fmt::format("`{}` is not a held-out metric; use eval.<metric> or "
                             "eval.<task>.<metric> (e.g. eval.exact_match, eval.add.loss)",
                             obj.metric));
  obj.key = obj.metric.substr(5);
  std::string error;
  const std::optional<MetricRef> ref = parse_metric_ref(obj.key, {}, &error);
  if (!ref) config::fail(src("objective.metric"), "objective.metric", error);
  obj.higher_is_better = higher_is_better(ref->metric, obj.mode);

  if (spec.search == SearchKind::kRandom && spec.trials == 0)
    config::fail(src("search"), "trials", "search: random needs `trials:` (points to draw)");
  if (spec.search == SearchKind::kGrid && spec.trials != 0)
    config::fail(src("trials"), "trials", "applies to search: random; a grid search runs every "
                                          "point of the grid");
  {
    std::set<int64_t> seen;
    for (int64_t s : spec.seeds)
      if (s < 0 || !seen.insert(s).second)
        config::fail(src("seeds"), "seeds", fmt::format("run.seed values must be distinct and "
                                                        ">= 0 (found {})", s));
  }
  spec.early_stop.source = src("early_stop");
  // Rungs lie below max_steps (where a trial finishes): at least one needs max > min (asha.h).
  if (spec.early_stop.enabled && spec.early_stop.max_steps != 0 &&
      spec.early_stop.max_steps <= spec.early_stop.min_steps)
    config::fail(src("early_stop.max_steps"), "early_stop.max_steps",
                 fmt::format("{} is not above early_stop.min_steps = {}, which leaves no rung "
                             "(rungs lie below max_steps); raise max_steps or lower min_steps",
                             spec.early_stop.max_steps, spec.early_stop.min_steps));
  if (spec.early_stop.enabled && spec.executor.kind != ExecutorKind::kMpi)
    config::fail(src("early_stop"), "early_stop",
                 fmt::format("ASHA stops trials inside one allocation: it needs executor.kind: "
                             "mpi (this sweep's executor is `{}`); remove early_stop to run "
                             "every trial to the end",
                             executor_name(spec.executor.kind)));

  // set: fixed `key=value` overrides, checked like parameters' keys.
  for (size_t i = 0; i < spec.set.size(); ++i) {
    const std::string& o = spec.set[i];
    const std::string path = fmt::format("set[{}]", i);
    const size_t eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      config::fail(src("set"), path, fmt::format("`{}` is not `key=value` (as `--set` takes it)", o));
    const std::string key = o.substr(0, eq);
    const std::vector<std::string>& keys = config_keys();
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      const std::string near = config::suggest(key, keys);
      config::fail(src("set"), path,
                   fmt::format("`{}` is not a config key{}", key,
                               near.empty() ? "" : fmt::format(" (did you mean `{}`?)", near)));
    }
    if (key == "run.dir" || key == "train.resume")
      config::fail(src("set"), path, fmt::format("the sweep sets {} itself", key));
  }

  // parameters:
  const config::MapEntry* params = root.find_entry("parameters");
  if (params != nullptr && !params->value.is_null()) {
    if (!params->value.is_map())
      config::fail(params->value.source(), "parameters",
                   "expected a mapping of config keys to values, e.g. `train.lr: {grid: [1e-3, 3e-3]}`");
    for (const auto& entry : params->value.entries()) {
      if (entry.key == "run.seed" && !spec.seeds.empty())
        config::fail(entry.key_source, "parameters.run.seed",
                     "`seeds:` already sets run.seed per repeat; search it here or there, not both");
      spec.parameters.push_back(parse_param(entry, spec.search));
    }
  }
  return spec;
}

SweepSpec parse_sweep_file(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    throw InputError(fmt::format("sweep file '{}' does not exist or is not a file", file.string()));
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  if (!in && !in.eof())
    throw InputError(fmt::format("cannot read sweep file '{}'", file.string()));
  return parse_sweep_text(s.str(), file);
}

std::vector<Trial> expand(const SweepSpec& spec) {
  // Points: each a list of values, one per parameter.
  std::vector<std::vector<std::string>> points;
  const auto& ps = spec.parameters;
  if (spec.search == SearchKind::kGrid) {
    points.emplace_back();
    for (const ParamSpec& p : ps) {
      std::vector<std::vector<std::string>> next;
      for (const auto& partial : points)
        for (const std::string& v : p.values) {
          next.push_back(partial);
          next.back().push_back(v);
        }
      points = std::move(next);
    }
  } else {
    // Note [sweep RNG]: std::mt19937_64's output is specified by the standard, and the draws
    // below use only it (no std::*_distribution, whose algorithms differ between libraries), so
    // a seed gives the same trials on any platform.
    std::mt19937_64 rng(static_cast<uint64_t>(spec.seed));
    const auto unit = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
    for (int64_t t = 0; t < spec.trials; ++t) {
      std::vector<std::string> point;
      for (const ParamSpec& p : ps) {
        switch (p.kind) {
          case ParamSpec::Kind::kGrid:
          case ParamSpec::Kind::kChoice:
            point.push_back(p.values[rng() % p.values.size()]);
            break;
          case ParamSpec::Kind::kUniform:
            point.push_back(fmt_real(p.lo + (p.hi - p.lo) * unit()));
            break;
          case ParamSpec::Kind::kLogUniform:
            point.push_back(fmt_real(
                std::exp(std::log(p.lo) + (std::log(p.hi) - std::log(p.lo)) * unit())));
            break;
          case ParamSpec::Kind::kInt: {
            const auto lo = static_cast<int64_t>(p.lo), hi = static_cast<int64_t>(p.hi);
            const auto span = static_cast<uint64_t>(hi - lo) + 1;
            point.push_back(std::to_string(lo + static_cast<int64_t>(rng() % span)));
            break;
          }
        }
      }
      points.push_back(std::move(point));
    }
  }
  const size_t repeats = std::max<size_t>(1, spec.seeds.size());
  const size_t n = points.size() * repeats;
  const size_t width = std::max<size_t>(3, std::to_string(n == 0 ? 0 : n - 1).size());
  std::vector<Trial> out;
  out.reserve(n);
  for (const auto& point : points) {
    for (size_t r = 0; r < repeats; ++r) {
      Trial t;
      t.id = fmt::format("t{:0{}}", out.size(), width);
      t.overrides = spec.set;
      for (size_t i = 0; i < ps.size(); ++i) {
        t.overrides.push_back(ps[i].key + "=" + point[i]);
        t.params.emplace_back(ps[i].key, point[i]);
      }
      if (!spec.seeds.empty()) {
        const std::string s = std::to_string(spec.seeds[r]);
        t.overrides.push_back("run.seed=" + s);
        t.params.emplace_back("run.seed", s);
      }
      out.push_back(std::move(t));
    }
  }
  return out;
}

fs::path trial_config_file(const SweepSpec& spec, const fs::path& sweep_dir) {
  return spec.base_inline.empty() ? spec.base_file : sweep_dir / "base.yaml";
}

void write_inline_base(const SweepSpec& spec, const fs::path& sweep_dir) {
  if (spec.base_inline.empty()) return;
  const fs::path path = trial_config_file(spec, sweep_dir);
  const std::string text = "# The inline base config of " + fs::absolute(spec.file).string() +
                           " (written by pft sweep)\n" + spec.base_inline;
  // Trials may be reading it (Slurm array tasks, mpi ranks): an unchanged file is left alone,
  // a changed one replaced whole (never truncated under a reader).
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::ostringstream old;
      old << in.rdbuf();
      if (old.str() == text) return;
    }
  }
  std::error_code ec;
  fs::create_directories(sweep_dir, ec);
  if (ec)
    throw InputError(fmt::format("cannot create the sweep directory '{}': {}", sweep_dir.string(),
                                 ec.message()));
  RunDir::write_file_atomic(path, text);
}

fs::path trial_dir(const fs::path& sweep_dir, const std::string& id) {
  return sweep_dir / "trials" / id;
}

std::vector<std::string> trial_overrides(const Trial& trial, const fs::path& sweep_dir) {
  std::vector<std::string> out = trial.overrides;
  out.push_back("run.dir=" + trial_dir(sweep_dir, trial.id).string());
  return out;
}

std::string params_text(const Trial& t) {
  std::string s;
  for (const auto& [k, v] : t.params) s += (s.empty() ? "" : ", ") + k + "=" + v;
  return s.empty() ? "the base config" : s;
}

std::vector<Config> load_trial_configs(const SweepSpec& spec, const std::vector<Trial>& trials,
                                       const fs::path& sweep_dir) {
  write_inline_base(spec, sweep_dir);
  const fs::path file = trial_config_file(spec, sweep_dir);
  std::map<std::string, std::string> task_names;  // task file -> name
  std::vector<Config> out;
  out.reserve(trials.size());
  for (const Trial& t : trials) {
    try {
      Config c = load_config(file, trial_overrides(t, sweep_dir));
      validate_for_world(c, static_cast<int>(spec.executor.ranks_per_trial));
      if (c.data.source != DataSource::kTasks)
        config::fail(spec.objective.source, "objective.metric",
                     fmt::format("`{}` is a held-out metric, which needs data.source: tasks "
                                 "(with validation splits); this trial's config has "
                                 "data.source: {}",
                                 spec.objective.metric, config::config_text(c.data.source)));
      std::vector<std::string> names;
      for (const fs::path& f : task_files(c)) {
        auto it = task_names.find(f.string());
        if (it == task_names.end()) it = task_names.emplace(f.string(), load_task(f).name).first;
        names.push_back(it->second);
      }
      const EarlyStop& es = spec.early_stop;
      if (es.enabled && es.max_steps > c.train.steps)
        config::fail(es.source, "early_stop",
                     fmt::format("rungs up to step {} but this trial trains {} steps "
                                 "(train.steps); lower early_stop.max_steps",
                                 es.max_steps, c.train.steps));
      std::string error;
      if (!parse_metric_ref(spec.objective.key, names, &error))
        config::fail(spec.objective.source, "objective.metric", error);
      out.push_back(std::move(c));
    } catch (const InputError& e) {
      throw InputError(fmt::format("sweep {}: trial {} ({}): {}", spec.file.string(), t.id,
                                   params_text(t), e.what()));
    }
  }
  // max_steps 0: rungs lie below the longest trial's train.steps (the mpi executor's rule; the
  // Asha constructor's check, placed here to name the file and line).
  const EarlyStop& es = spec.early_stop;
  int64_t longest = 0;
  for (const Config& c : out) longest = std::max<int64_t>(longest, c.train.steps);
  if (es.enabled && es.max_steps == 0 && !out.empty() && es.min_steps >= longest)
    config::fail(es.source, "early_stop",
                 fmt::format("min_steps {} leaves no rung below train.steps = {} (the longest "
                             "trial's); lower early_stop.min_steps",
                             es.min_steps, longest));
  return out;
}

}  // namespace pft::sweep
