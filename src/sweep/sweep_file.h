// The sweep file (docs/sweeps.md): a base config, a search space over its keys, the objective,
// the early-stopping rule and the executor, parsed once into a typed SweepSpec; and expand(),
// which turns a spec into its trials.
//
//   base: ../configs/quickstart.yaml      # a config file (relative to the sweep file), or an
//                                         # inline config (a mapping of sections)
//   parameters:                           # `--set`-style keys, each with one of:
//     train.lr: {grid: [1e-3, 3e-3]}      #   grid: values (every one, in the grid)
//     peft.lora_rank: {choice: [4, 8]}    #   choice: values (as grid; random search draws one)
//     train.warmup_steps: {int: [0, 10]}  #   int: [lo, hi], inclusive          (random only)
//     train.weight_decay: {uniform: [0, 0.1]}                                    (random only)
//     train.beta2: {log_uniform: [0.9, 0.999]}                                   (random only)
//   search: grid | random                 # default grid
//   trials: 8                             # random: points drawn
//   seed: 0                               # random: the search's RNG (same seed, same trials)
//   seeds: [1, 2]                         # run.seed of each repeat of a point; empty = the base's
//   set: [train.steps=60]                 # fixed overrides of every trial, before its parameters
//   objective: {metric: eval.exact_match, mode: auto}   # eval.<metric> | eval.<task>.<metric>
//   early_stop: {rule: asha, eta: 3, min_steps: 10, max_steps: 100}   # mpi executor (ASHA)
//   executor: {kind: local, parallel: 1, ranks_per_trial: 1, sbatch_args: [], launcher: ""}
//
// Errors: every bad key or value is an InputError "file:line:col: error: key: what" naming the
// place in the sweep file (config/tree.h sources, config/schema.h's fail()), the way config
// errors read. A trial whose config does not load (load_trial_configs) names the trial, its
// parameters, and the config error (which names its own file and key).
//
// Nothing here runs anything or touches a sweep directory: parse, expand and validate only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "config/tree.h"

namespace pft::sweep {

// One searched key. Values of grid/choice are YAML texts (flow style for lists and maps), the
// way `--set key=value` takes them; ranges are [lo, hi].
struct ParamSpec {
  enum class Kind { kGrid, kChoice, kUniform, kLogUniform, kInt };
  std::string key;                  // "train.lr"
  Kind kind = Kind::kGrid;
  std::vector<std::string> values;  // grid, choice
  double lo = 0.0, hi = 0.0;        // uniform, log_uniform, int (integers then)
  config::Source source;            // where the key was written
};
const char* param_kind_name(ParamSpec::Kind kind);  // "grid", "choice", ...

enum class SearchKind { kGrid, kRandom };
enum class ExecutorKind { kLocal, kSlurm, kMpi };
const char* executor_name(ExecutorKind kind);  // "local", "slurm", "mpi"

// The objective: a held-out metric the trial's own evaluation records (metrics.jsonl `eval`
// records), ranked by its value at the trial's last evaluation.
struct Objective {
  std::string metric = "eval.loss";  // as written: eval.<metric> or eval.<task>.<metric>
  std::string mode = "auto";         // min | max | auto (min for loss and perplexity, else max)
  // Derived by parse_sweep_file:
  std::string key;                   // metric without "eval.": "exact_match", "add.loss"
  bool higher_is_better = false;     // mode resolved as checkpoint.best_mode resolves it
  config::Source source;             // where objective.metric was written
};

// Early stopping of bad trials (ASHA at evaluation rungs), used by the mpi executor only.
// Rungs are at min_steps * eta^k below max_steps (0 = the longest trial's train.steps).
struct EarlyStop {
  bool enabled = false;   // the section is present
  std::string rule = "asha";
  int64_t eta = 3;        // keep the top 1/eta of a rung
  int64_t min_steps = 1;  // the first rung
  int64_t max_steps = 0;  // rungs lie below it; 0 = the longest trial's train.steps
  config::Source source;  // where early_stop was written
};

struct ExecutorSpec {
  ExecutorKind kind = ExecutorKind::kLocal;
  int64_t parallel = 1;         // trials at once (local: child processes; slurm: array %k)
  int64_t ranks_per_trial = 1;  // ranks of each trial (pft-mpirun -np r / srun -n r)
  std::vector<std::string> sbatch_args;  // slurm: extra sbatch flags (--partition=x, --time=10)
  std::string launcher;         // local, >1 rank: the mpirun wrapper; empty = launch/pft-mpirun
};

struct SweepSpec {
  std::filesystem::path file;  // the sweep file (as given)
  std::string text;            // its bytes (hashed: Note [sweep identity], sweep/sweep_dir.h)
  // The base config: a file, or (inline) the mapping under `base:` as YAML text; relative
  // data.tasks paths of an inline base are made absolute against the sweep file's directory.
  std::filesystem::path base_file;  // empty when inline
  std::string base_inline;          // YAML text when inline
  std::vector<ParamSpec> parameters;  // in file order
  SearchKind search = SearchKind::kGrid;
  int64_t trials = 0;    // random search: points
  int64_t seed = 0;      // random search: the RNG seed
  std::vector<int64_t> seeds;  // run.seed per repeat; empty = one repeat with the base's seed
  std::vector<std::string> set;  // "key=value" overrides of every trial, before its parameters
  Objective objective;
  EarlyStop early_stop;
  ExecutorSpec executor;
};

// One trial: a point of the search space (and one of its seeds).
struct Trial {
  std::string id;                      // "t000", "t001", ...: index order, zero-padded to 3+
  std::vector<std::string> overrides;  // "key=value", as `pft train --set` takes them: `set`,
                                       // then the parameters, then run.seed (with `seeds`)
  // The searched keys and their values (overrides without run.seed unless seeds is set), for
  // tables and sweep.jsonl.
  std::vector<std::pair<std::string, std::string>> params;
};

// "k=v, k=v" of a trial's params ("the base config" when it has none), for messages.
std::string params_text(const Trial& trial);

// Parses and checks a sweep file (not its trials' configs). Throws InputError naming
// file:line:col and the key.
SweepSpec parse_sweep_file(const std::filesystem::path& file);
// The same from text (tests); `file` names it in errors and anchors relative paths.
SweepSpec parse_sweep_text(const std::string& text, const std::filesystem::path& file);

// The trials of `spec`, deterministic: grid search is the Cartesian product of every key's
// values (the first key varies slowest), random search draws `trials` points from an RNG seeded
// by `seed` (grid keys are drawn like choice); each point is repeated once per `seeds` value
// (run.seed=<s> appended); every trial's overrides start with `set`. Pure: the same spec gives the same trials, ids and overrides.
std::vector<Trial> expand(const SweepSpec& spec);

// The config file `pft train` of a trial reads: base_file, or for an inline base
// `sweep_dir/base.yaml` (write_inline_base writes it).
std::filesystem::path trial_config_file(const SweepSpec& spec, const std::filesystem::path& sweep_dir);
// Writes `sweep_dir/base.yaml` for an inline base (nothing otherwise). Running trials may read it
// while another process calls this (every Slurm array task, every mpi rank): a file that already
// holds this text is left untouched, another is replaced atomically (RunDir::write_file_atomic).
// Throws InputError naming the file when it cannot.
void write_inline_base(const SweepSpec& spec, const std::filesystem::path& sweep_dir);

// The run directory of trial `id`: SWEEP_DIR/trials/<id>.
std::filesystem::path trial_dir(const std::filesystem::path& sweep_dir, const std::string& id);

// Every override `pft train` of `trial` gets: its own, then run.dir=<trial_dir>.
std::vector<std::string> trial_overrides(const Trial& trial, const std::filesystem::path& sweep_dir);

// Loads every trial's config (load_config with trial_overrides), checks it for
// ranks_per_trial ranks (validate_for_world) and against the objective (a held-out metric needs
// data.source: tasks; the task in eval.<task>.<metric> must be one of the trial's tasks; with
// early_stop, max_steps within the trial's train.steps and, for max_steps 0, min_steps below
// it, so that ASHA has a rung), before
// anything runs. Throws InputError "sweep FILE: trial tNNN (k=v, ...): <config error>" at the
// first bad trial. Returns the configs in trial order.
std::vector<Config> load_trial_configs(const SweepSpec& spec, const std::vector<Trial>& trials,
                                       const std::filesystem::path& sweep_dir);

}  // namespace pft::sweep
