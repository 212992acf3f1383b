// pft's configuration: typed structs, each key described once.
//
// A YAML file (with `defaults:` composition and `--set` overrides) is parsed once, at start-up,
// into `Config` and validated before any heavy initialisation; nothing below src/config/ sees
// YAML. Every key's meaning, type, default and constraint is in its `describe` line below;
// docs/config.md is generated from the same lines (`pft config docs`) and a test keeps the two
// in step.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "config/schema.h"

namespace pft {

// ---- Enum-valued keys (config/schema.h: parsed once, compared as enums below config/) --------
using config::config_text;  // config_text(Method::kLora) == "lora", found from any namespace

// data.source
enum class DataSource { kSynthetic, kTasks };
inline constexpr config::EnumWord<DataSource> kDataSourceWords[] = {
    {DataSource::kSynthetic, "synthetic"}, {DataSource::kTasks, "tasks"}};
constexpr std::span<const config::EnumWord<DataSource>> enum_words(DataSource) {
  return kDataSourceWords;
}

// train.method: full fine-tuning, or adapters on a frozen base (model/adapters.h).
enum class Method { kFull, kPromptTuning, kPrefixTuning, kLora, kPromptTuningLora, kPrefixTuningLora };
inline constexpr config::EnumWord<Method> kMethodWords[] = {
    {Method::kFull, "full"},
    {Method::kPromptTuning, "prompt_tuning"},
    {Method::kPrefixTuning, "prefix_tuning"},
    {Method::kLora, "lora"},
    {Method::kPromptTuningLora, "prompt_tuning+lora"},
    {Method::kPrefixTuningLora, "prefix_tuning+lora"}};
constexpr std::span<const config::EnumWord<Method>> enum_words(Method) { return kMethodWords; }
// What a method trains: a soft prompt, a key/value prefix, LoRA matrices (any of them: a frozen
// base).
constexpr bool has_prompt(Method m) { return m == Method::kPromptTuning || m == Method::kPromptTuningLora; }
constexpr bool has_prefix(Method m) { return m == Method::kPrefixTuning || m == Method::kPrefixTuningLora; }
constexpr bool has_lora(Method m) {
  return m == Method::kLora || m == Method::kPromptTuningLora || m == Method::kPrefixTuningLora;
}
constexpr bool is_peft(Method m) { return m != Method::kFull; }

// train.precision: fp32, or bf16 / fp16 autocast with fp32 master weights (train/precision.h).
enum class Precision { kFp32, kBf16, kFp16 };
inline constexpr config::EnumWord<Precision> kPrecisionWords[] = {
    {Precision::kFp32, "fp32"}, {Precision::kBf16, "bf16"}, {Precision::kFp16, "fp16"}};
constexpr std::span<const config::EnumWord<Precision>> enum_words(Precision) {
  return kPrecisionWords;
}

// train.resume: `none`, `auto` (the newest valid checkpoint of run.dir) or a checkpoint file.
struct ResumeFrom {
  enum class Mode { kNone, kAuto, kFile };
  Mode mode = Mode::kNone;
  std::string file;  // kFile: the path as written

  bool operator==(const ResumeFrom&) const = default;
};
// "none", "auto" or the file: the YAML text of train.resume.
std::string config_text(const ResumeFrom& r);
void parse_scalar(const config::Node& n, const std::string& path, ResumeFrom& out);
std::string type_name(const ResumeFrom&);

// train.activation_checkpointing: `none`, `all`, or `every_k: N` (a mapping; `every_k:N` as text
// for --set): the blocks whose index is a multiple of N keep only their input and are recomputed
// in backward (model/checkpoint_block.h). `all` is every_k 1.
struct ActivationCheckpointing {
  int64_t every_k = 0;  // 0 = none

  bool operator==(const ActivationCheckpointing&) const = default;
  bool checkpoints(int64_t block) const { return every_k > 0 && block % every_k == 0; }
};
// "none", "all" or "every_k: N".
std::string config_text(const ActivationCheckpointing& a);
void parse_scalar(const config::Node& n, const std::string& path, ActivationCheckpointing& out);
std::string type_name(const ActivationCheckpointing&);

// Default of train.loss_chunk_rows (defined in config.cpp, so that changing it rebuilds one file).
extern const int64_t kDefaultLossChunkRows;

struct RunConfig {
  std::string dir = "runs/default";
  int64_t seed = 1234;
  int threads = 0;
  std::string log_level = "info";
  int64_t log_every = 10;
  bool tensorboard = false;
  bool trace = false;
  int64_t trace_from = 0;  // first traced step (0-based, as `step` in metrics.jsonl minus 1)
  int64_t trace_to = 0;    // one past the last; 0 = to the end
};

struct ModelConfig {
  std::string family = "gpt2";
  int64_t vocab_size = 50257;
  int64_t d_model = 768;
  int64_t n_layers = 12;
  int64_t n_heads = 12;
  int64_t n_kv_heads = 0;  // 0 = n_heads (no grouping)
  int64_t d_ff = 0;        // 0 = family default
  int64_t max_seq_len = 1024;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_embeddings = true;
  double init_std = 0.02;
  std::string from_pretrained;
  Precision base_dtype = Precision::kFp32;
};

struct DataConfig {
  int64_t seq_len = 256;
  DataSource source = DataSource::kSynthetic;
  std::string tokenizer = "byte";
  std::vector<std::string> tasks;
  bool strict = true;
  bool train_on_prompt = false;
  std::string cache_dir;
  std::string mixing = "proportional";
  int64_t mixing_cap = 0;
  double mixing_temperature = 2.0;
  std::vector<double> mixing_weights;
};

struct TrainConfig {
  Method method = Method::kFull;
  int64_t steps = 0;
  int64_t global_batch_size = 0;
  int64_t micro_batch_size = 1;
  double lr = 0.0;
  std::string schedule = "cosine";
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;
  Precision precision = Precision::kFp32;
  std::vector<std::string> no_decay = {"bias", "norm", "ln_", "wte", "wpe", "embed_tokens"};
  ResumeFrom resume;
  int64_t loss_chunk_rows = kDefaultLossChunkRows;  // 0 = the fused loss over full logits
  ActivationCheckpointing activation_checkpointing;
};

struct PeftConfig {
  int64_t prompt_tokens = 20;
  std::string prompt_init = "vocab";
  std::string prompt_init_text;
  bool prompt_shared = false;
  int64_t prefix_tokens = 10;
  bool prefix_projection = false;
  int64_t prefix_hidden = 0;
  int64_t lora_rank = 8;
  double lora_alpha = 16.0;
  double lora_dropout = 0.0;
  std::vector<std::string> lora_targets;
  std::string init_from;
  bool freeze_loaded = false;
};

struct DistConfig {
  std::string backend = "auto";
  double timeout_s = 300.0;
  double bucket_cap_mb = 25.0;
  double first_bucket_mb = 1.0;
  std::string grad_comm_dtype = "fp32";
  int64_t zero = 0;
  int64_t check_params_every = 0;
};

struct EvalConfig {
  int64_t every_steps = 0;
  int64_t max_batches = 0;
  int64_t max_new_tokens = 0;
  std::vector<std::string> stop;
};

// One phase of a multi-task schedule (docs/schedules.md).
struct PhaseConfig {
  std::string name;
  std::vector<std::string> tasks;
  std::string mixing = "proportional";
  int64_t mixing_cap = 0;
  double mixing_temperature = 2.0;
  std::vector<double> mixing_weights;
  int64_t steps = 0;
  int64_t tokens = 0;
  std::string until;
  std::string adaptive_metric = "loss";
  double adaptive_floor = 0.02;
  double adaptive_ceiling = 0.6;
  double adaptive_smoothing = 0.5;
};

struct ScheduleConfig {
  std::vector<PhaseConfig> phases;
  int64_t lookahead = 2;
};

struct EarlyStoppingConfig {
  std::string metric;
  std::string mode = "auto";
  int64_t patience = 3;
  double min_delta = 0.0;
};

struct CheckpointConfig {
  int64_t every_steps = 0;
  int64_t keep_last = 3;
  int64_t keep_best = 0;
  std::string best_metric = "loss";
  std::string best_mode = "auto";
  bool async = true;
  std::string compression = "none";
  bool file_locking = false;
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  PeftConfig peft;
  DistConfig dist;
  EvalConfig eval;
  ScheduleConfig schedule;
  EarlyStoppingConfig early_stopping;
  CheckpointConfig checkpoint;

  std::string file;            // the top-level file it was loaded from
  config::SourceMap sources;   // key path -> where its value was written

  // Source of `path` for error messages: where it was set, else the file.
  config::Source source_of(const std::string& path) const;
};

// ---- The keys ------------------------------------------------------------------------------
template <class V>
void describe(V& v, RunConfig& c) {
  using namespace config;
  v.field("dir", c.dir, "Run directory: resolved config, metrics.jsonl, checkpoints/.");
  v.field("seed", c.seed, "Seed of every random stream (init, data order, dropout), derived per purpose and rank.", at_least(0));
  v.field("threads", c.threads, "Torch intra-op threads per rank; 0 = the node's usable cores / ranks on the node.", at_least(0));
  v.field("log_level", c.log_level, "Log verbosity.", one_of({"debug", "info", "warn", "error"}));
  v.field("log_every", c.log_every, "Print a progress line every this many steps.", at_least(1));
  v.field("tensorboard", c.tensorboard, "Rank 0 also writes every metrics.jsonl number as TensorBoard scalars to run.dir/tensorboard/ (a new event file per process start; flushed at each progress line, evaluation and the end). Open with `tensorboard --logdir <run.dir>/tensorboard`; tags in docs/observability.md.");
  v.field("trace", c.trace, "Write a timeline of every rank (forward, backward, each gradient bucket's all-reduce, optimizer, data wait, controller, evaluation, checkpoints) to RUN_DIR/trace.json, a Chrome trace that Perfetto and chrome://tracing open (docs/observability.md).");
  v.field("trace_from", c.trace_from, "With run.trace: the first traced step (0-based; metrics.jsonl's `step` minus 1).", at_least(0));
  v.field("trace_to", c.trace_to, "With run.trace: trace steps before this one; 0 = to the end of the run.", at_least(0));
}

template <class V>
void describe(V& v, ModelConfig& c) {
  using namespace config;
  v.field("family", c.family, "Architecture family: GPT-2 (LayerNorm, GELU, learned positions) or Llama (RMSNorm, RoPE, SwiGLU, GQA).", one_of({"gpt2", "llama"}));
  v.field("vocab_size", c.vocab_size, "Vocabulary size (rows of the embedding).", at_least(1));
  v.field("d_model", c.d_model, "Hidden width.", at_least(1));
  v.field("n_layers", c.n_layers, "Number of transformer blocks.", at_least(1));
  v.field("n_heads", c.n_heads, "Attention heads; must divide d_model.", at_least(1));
  v.field("n_kv_heads", c.n_kv_heads, "Key/value heads (grouped-query attention); 0 = n_heads; must divide n_heads.", at_least(0));
  v.field("d_ff", c.d_ff, "MLP hidden width; 0 = 4*d_model (gpt2) or the Llama rule (8/3*d_model rounded up to 64).", at_least(0));
  v.field("max_seq_len", c.max_seq_len, "Longest sequence (learned positions for gpt2).", at_least(1));
  v.field("norm_eps", c.norm_eps, "Epsilon of LayerNorm / RMSNorm.", greater_than(0));
  v.field("rope_theta", c.rope_theta, "RoPE base frequency (llama).", greater_than(0));
  v.field("tie_embeddings", c.tie_embeddings, "Share the input embedding and the output head.");
  v.field("init_std", c.init_std, "Std of the normal init; residual projections are scaled by 1/sqrt(2*n_layers).", greater_than(0));
  v.field("from_pretrained", c.from_pretrained, "Pretrained model to start from: a Hugging Face model directory, a .gguf file or a known name (smollm2-135m-instruct; docs/models.md). Empty = random init.");
  v.field("base_dtype", c.base_dtype, "Storage dtype of the frozen base weights of a PEFT method (train.method other than full): fp32, or bf16 / fp16 (half the bytes; cast once after loading, no fp32 copy kept), whose matmuls then run under train.precision's autocast, which must be the same dtype. Adapters, their gradients and optimizer state stay fp32 (docs/peft.md, \"Low-precision base\").");
}

template <class V>
void describe(V& v, DataConfig& c) {
  using namespace config;
  v.field("seq_len", c.seq_len, "Tokens per packed row; at most model.max_seq_len.", at_least(2));
  v.field("source", c.source, "Where training tokens come from: `synthetic` (deterministic token stream, engine tests) or `tasks` (prompt datasets).");
  v.field("tokenizer", c.tokenizer, "Tokenizer: `byte` (256 byte ids + specials) or a path to tokenizer.json / a GPT-2 encoder.json directory.");
  v.field("tasks", c.tasks, "Task definition files (YAML, docs/tasks.md) used when source is `tasks`; relative to the config file that lists them.");
  v.field("strict", c.strict, "Bad data (a malformed or mistyped record, an empty file) stops the run naming file:line; false skips and counts it, with a summary per task.");
  v.field("train_on_prompt", c.train_on_prompt, "Loss on every token of an example, not only its answer (+ eos).");
  v.field("cache_dir", c.cache_dir, "Directory of prepared token stores (`pft data prepare`, docs/data-pipeline.md), keyed by a content hash of their inputs; empty = `.pft-cache` beside run.dir; relative to the working directory.");
  v.field("mixing", c.mixing, "How tasks share the micro-batches (source `tasks`): `proportional` to their training examples (capped by mixing_cap), `temperature` (examples^(1/mixing_temperature): small tasks get more), `uniform`, `fixed` (data.mixing_weights), or `round_robin` (each step's whole batch from one task, the tasks in turn).", one_of({"proportional", "temperature", "uniform", "fixed", "round_robin"}));
  v.field("mixing_cap", c.mixing_cap, "With mixing `proportional`: count at most this many examples per task (T5's examples-proportional mixing with a cap); 0 = no cap.", at_least(0));
  v.field("mixing_temperature", c.mixing_temperature, "With mixing `temperature`: T in examples^(1/T); 1 = proportional, larger = closer to uniform.", greater_than(0));
  v.field("mixing_weights", c.mixing_weights, "With mixing `fixed`: one weight >= 0 per task, in data.tasks order; a task's share of the micro-batches is its weight over their sum.");
}

template <class V>
void describe(V& v, TrainConfig& c) {
  using namespace config;
  v.field("method", c.method, "Fine-tuning method: `full` (every weight), or a frozen base with `prompt_tuning`, `prefix_tuning`, `lora`, `prompt_tuning+lora` or `prefix_tuning+lora` (their keys are under peft:, docs/peft.md).");
  v.field("steps", c.steps, "Optimizer steps to run.", at_least(1).req());
  v.field("global_batch_size", c.global_batch_size, "Sequences per optimizer step over all ranks; accumulation = global / (micro * world).", at_least(1).req());
  v.field("micro_batch_size", c.micro_batch_size, "Sequences per rank per forward pass.", at_least(1));
  v.field("lr", c.lr, "Peak learning rate.", greater_than(0).req());
  v.field("schedule", c.schedule, "Learning-rate schedule after warmup.", one_of({"constant", "linear", "cosine"}));
  v.field("warmup_steps", c.warmup_steps, "Linear warmup steps from 0 to lr.", at_least(0));
  v.field("min_lr_ratio", c.min_lr_ratio, "Final lr as a fraction of lr (linear, cosine).", in_range(0, 1));
  v.field("weight_decay", c.weight_decay, "Decoupled (AdamW) weight decay of the decay group.", at_least(0));
  v.field("beta1", c.beta1, "AdamW beta1.", in_range(0, 0.999999));
  v.field("beta2", c.beta2, "AdamW beta2.", in_range(0, 0.999999));
  v.field("eps", c.eps, "AdamW epsilon.", greater_than(0));
  v.field("grad_clip", c.grad_clip, "Global gradient-norm clip; 0 disables.", at_least(0));
  v.field("precision", c.precision, "Compute precision: fp32, or bf16 / fp16 autocast with fp32 master weights (fp16 adds dynamic loss scaling).");
  v.field("no_decay", c.no_decay, "Parameters whose name contains any of these substrings get no weight decay.");
  v.field("resume", c.resume, "`none`, `auto` (newest valid checkpoint in run.dir) or a checkpoint path.");
  v.field("loss_chunk_rows", c.loss_chunk_rows, "Cross entropy over chunks of this many target rows, fused with the output projection, so the [tokens x vocab] logits never exist (rows without a target get no logits at all); 0 = full logits and the fused loss. Same loss and gradients within float rounding (docs/performance.md, \"Chunked cross entropy\").", at_least(0));
  v.field("activation_checkpointing", c.activation_checkpointing, "Recompute transformer blocks in backward instead of keeping their activations: `none`, `all`, or `{every_k: N}` (the blocks whose index is a multiple of N; `every_k:N` with --set). Same gradients; costs about one more forward (docs/performance.md, \"Activation checkpointing\").");
}

template <class V>
void describe(V& v, PeftConfig& c) {
  using namespace config;
  v.field("prompt_tokens", c.prompt_tokens, "Prompt tuning: virtual tokens put before every document (per task block).", at_least(1));
  v.field("prompt_init", c.prompt_init, "Prompt tuning: initial virtual-token embeddings: `vocab` (embeddings of random vocabulary tokens), `text` (the embeddings of prompt_init_text, repeated to prompt_tokens) or `random` (normal, init_std).", one_of({"vocab", "text", "random"}));
  v.field("prompt_init_text", c.prompt_init_text, "Prompt tuning with prompt_init `text`: the text (e.g. the task's instruction), tokenized by data.tokenizer.");
  v.field("prompt_shared", c.prompt_shared, "Prompt/prefix tuning: one block shared by every task instead of one block per task.");
  v.field("prefix_tokens", c.prefix_tokens, "Prefix tuning: learned key/value positions per layer (per task block).", at_least(1));
  v.field("prefix_projection", c.prefix_projection, "Prefix tuning: learn the prefixes through an MLP (embedding -> Linear -> tanh -> Linear), folded away in checkpoints' exports and at inference.");
  v.field("prefix_hidden", c.prefix_hidden, "Prefix tuning with prefix_projection: hidden width of the MLP; 0 = PEFT's token_dim, n_kv_heads * head_dim (d_model without grouped-query attention).", at_least(0));
  v.field("lora_rank", c.lora_rank, "LoRA: rank r of the update B A.", at_least(1));
  v.field("lora_alpha", c.lora_alpha, "LoRA: the update is scaled by lora_alpha / lora_rank.", greater_than(0));
  v.field("lora_dropout", c.lora_dropout, "LoRA: dropout on the adapter's input during training.", in_range(0, 0.99));
  v.field("lora_targets", c.lora_targets, "LoRA: projections to adapt, matched against the end of their module name (`c_attn`, `attn.c_proj`, `q_proj`, `mlp.down_proj`, ...); empty = c_attn (gpt2) or q_proj, v_proj (llama).");
  v.field("init_from", c.init_from, "Adapter checkpoint to start from (a new run, not a resume): its tensors are loaded; a prompt table keeps the rows of its tasks bitwise and adds fresh blocks for new tasks.");
  v.field("freeze_loaded", c.freeze_loaded, "With init_from: the prompt/prefix blocks loaded from it get no gradient, so they stay bitwise unchanged while the new tasks' blocks learn (grow a trained table by a task).");
}

template <class V>
void describe(V& v, DistConfig& c) {
  using namespace config;
  v.field("backend", c.backend, "Gradient communication: `auto` (nccl on GPUs, mpi on CPU), `mpi` or `nccl`.", one_of({"auto", "mpi", "nccl"}));
  v.field("timeout_s", c.timeout_s, "Deadline of every collective, controller wait and start-up agreement, in seconds: a rank that has not joined within it (stalled, dead, or still busy, e.g. rank 0 building the data stores or writing a synchronous checkpoint while the others wait) ends the job with exit 3 naming the operation; raise it for slow start-up work, or build the stores first with `pft data prepare`.", greater_than(0));
  v.field("bucket_cap_mb", c.bucket_cap_mb, "Gradient bucket size for the overlapped all-reduce, in MiB (a parameter larger than this gets a bucket of its own).", greater_than(0));
  v.field("first_bucket_mb", c.first_bucket_mb, "Size of the first (smallest) bucket, in MiB, so communication starts early in the backward pass.", greater_than(0));
  v.field("grad_comm_dtype", c.grad_comm_dtype, "Gradient communication precision: `fp32` (all-reduce of the fp32 buckets), or `bf16`: gradients cross the wire as bf16 (about half the bytes) and are summed in fp32 (a reduce-scatter done as an all-to-all plus a local fp32 sum in rank order, then an all-gather of the bf16-rounded sums), so every rank holds bitwise identical gradients, each within bf16 rounding (~2^-8 relative) of the fp32 sum; MPI backend only.", one_of({"fp32", "bf16"}));
  v.field("zero", c.zero, "Optimizer state sharding (ZeRO stage): `0` = every rank holds all of AdamW's moments; `1` = each rank holds the moments of 1/world of every parameter buffer, updates that part and all-gathers the updated parameters (optimizer memory / world; the parameters, gradients and losses are bitwise those of `0`; checkpoints have the same layout, so they resume under either value and any world size).", in_range(0, 1));
  v.field("check_params_every", c.check_params_every, "Desync detector: every this many steps, compare a checksum of every parameter across ranks and stop naming the first tensor that differs; 0 = off.", at_least(0));
}

template <class V>
void describe(V& v, EvalConfig& c) {
  using namespace config;
  v.field("every_steps", c.every_steps, "Evaluate every this many steps (and at the end); 0 = only at the end.", at_least(0));
  v.field("max_batches", c.max_batches, "Evaluate only the first max_batches x train.micro_batch_size validation examples of each template (the same ones on any number of ranks); 0 = the whole split.", at_least(0));
  v.field("max_new_tokens", c.max_new_tokens, "Exact match: tokens generated at most per answer; 0 = the longest reference answer + 1.", at_least(0));
  v.field("stop", c.stop, "Exact match: generation also stops at any of these strings (cut before it), and the text is compared with the answer's text, surrounding whitespace trimmed; empty = stop at eos and compare tokens.");
}

template <class V>
void describe(V& v, PhaseConfig& c) {
  using namespace config;
  v.field("name", c.name, "Phase name (logs, metrics.jsonl); empty = phase<index>.");
  v.field("tasks", c.tasks, "Tasks trained in this phase, by name; empty = every task of data.tasks.");
  v.field("mixing", c.mixing, "How the phase's tasks share the micro-batches: as data.mixing, or `adaptive` (weights from held-out per-task loss or metric gaps at every evaluation, see adaptive_*).", one_of({"proportional", "temperature", "uniform", "fixed", "round_robin", "adaptive"}));
  v.field("mixing_cap", c.mixing_cap, "With mixing `proportional`: as data.mixing_cap.", at_least(0));
  v.field("mixing_temperature", c.mixing_temperature, "With mixing `temperature`: as data.mixing_temperature.", greater_than(0));
  v.field("mixing_weights", c.mixing_weights, "With mixing `fixed`: one weight >= 0 per task of the phase (its `tasks` order, else data.tasks order).");
  v.field("steps", c.steps, "The phase ends after this many steps (0 = no step limit; the last phase runs to train.steps).", at_least(0));
  v.field("tokens", c.tokens, "The phase ends after this many input tokens (global batch x seq_len per step; 0 = no limit).", at_least(0));
  v.field("until", c.until, "The phase ends at the first evaluation where this holds: `[task.]metric OP value`, metric loss | perplexity | exact_match | accuracy | worst_template_exact_match | worst_template_loss, OP >= > <= <; no task = the mean over tasks (e.g. `max_digit.exact_match >= 0.9`). With steps/tokens: whichever comes first.");
  v.field("adaptive_metric", c.adaptive_metric, "With mixing `adaptive`: a task's weight follows its held-out `loss`, or its gap 1 - `exact_match` / 1 - `accuracy`.", one_of({"loss", "exact_match", "accuracy"}));
  v.field("adaptive_floor", c.adaptive_floor, "With mixing `adaptive`: the smallest share a task of the phase gets.", in_range(0, 1));
  v.field("adaptive_ceiling", c.adaptive_ceiling, "With mixing `adaptive`: the largest share a task gets.", in_range(0, 1));
  v.field("adaptive_smoothing", c.adaptive_smoothing, "With mixing `adaptive`: new share = smoothing x old share + (1 - smoothing) x target share, at each evaluation.", in_range(0, 1));
}

template <class V>
void describe(V& v, ScheduleConfig& c) {
  using namespace config;
  v.list("phases", c.phases, "Phases of the multi-task schedule, in order (docs/schedules.md); empty = one phase mixing every task by data.mixing*.");
  v.field("lookahead", c.lookahead, "The controller (rank 0) broadcasts each step's plan this many steps before it runs.", in_range(1, 64));
}

template <class V>
void describe(V& v, EarlyStoppingConfig& c) {
  using namespace config;
  v.field("metric", c.metric, "Stop when this held-out metric (`[task.]metric`, as schedule.phases[].until) has not improved for `patience` evaluations; empty = off.");
  v.field("mode", c.mode, "Whether lower (`min`) or higher (`max`) is better; `auto`: min for loss and perplexity, max otherwise.", one_of({"auto", "min", "max"}));
  v.field("patience", c.patience, "Evaluations without improvement before the run stops (after a checkpoint).", at_least(1));
  v.field("min_delta", c.min_delta, "An improvement smaller than this does not count.", at_least(0));
}

template <class V>
void describe(V& v, CheckpointConfig& c) {
  using namespace config;
  v.field("every_steps", c.every_steps, "Save a checkpoint every this many steps; 0 = only at the end.", at_least(0));
  v.field("keep_last", c.keep_last, "Keep this many most recent checkpoints.", at_least(1));
  v.field("keep_best", c.keep_best, "Also keep this many best checkpoints by best_metric (0 = none).", at_least(0));
  v.field("best_metric", c.best_metric, "Metric that ranks checkpoints for keep_best: `loss` (training loss of the saved step) or `eval.[task.]metric` (a held-out metric, as schedule.phases[].until; a checkpoint is then saved at every evaluation).");
  v.field("best_mode", c.best_mode, "Whether a lower (`min`) or higher (`max`) best_metric is better; `auto`: min for loss and perplexity, max otherwise.", one_of({"auto", "min", "max"}));
  v.field("async", c.async, "Write checkpoints on a background thread from a host snapshot (training continues); false = write before the next step.");
  v.field("compression", c.compression, "Dataset compression: `none` or `gzip` (byte shuffle + deflate; slower saves, smaller files).", one_of({"none", "gzip"}));
  v.field("file_locking", c.file_locking, "Use HDF5 file locks on checkpoint files (off: they fail on some network filesystems and a checkpoint is never written in place).");
}

template <class V>
void describe(V& v, Config& c) {
  v.section("run", c.run, "Run identity and output.");
  v.section("model", c.model, "Model architecture.");
  v.section("data", c.data, "Data pipeline.");
  v.section("train", c.train, "Optimisation.");
  v.section("peft", c.peft, "Parameter-efficient methods (train.method other than full).");
  v.section("dist", c.dist, "Distributed execution.");
  v.section("eval", c.eval, "Evaluation.");
  v.section("schedule", c.schedule, "Multi-task schedule: phases and their mixtures, decided by the controller on rank 0 (docs/schedules.md).");
  v.section("early_stopping", c.early_stopping, "Stop when a held-out metric stops improving.");
  v.section("checkpoint", c.checkpoint, "Checkpoints.");
}

// ---- Entry points --------------------------------------------------------------------------

// Loads, composes, applies `overrides` ("a.b=value"), binds and validates. Throws InputError
// naming file:line:col and the key path. `training` false (`pft eval`, which trains nothing):
// the keys only training needs (train.steps, train.lr, train.global_batch_size) may be absent.
Config load_config(const std::filesystem::path& path, const std::vector<std::string>& overrides,
                   bool training = true);

// Binds an in-memory YAML text (tests). `name` stands for the file in messages.
Config parse_config(const std::string& yaml, const std::string& name,
                    const std::vector<std::string>& overrides = {});

// Checks that need the world size (batch divisibility). Throws InputError naming the keys.
void validate_for_world(const Config& config, int world_size);

// The resolved config as YAML (every key, defaults filled in).
std::string to_yaml(const Config& config);

// The Markdown reference table of every key (docs/config.md).
std::string config_reference_markdown();

// Derived values used by several modules.
int64_t resolved_kv_heads(const ModelConfig& m);
int64_t resolved_d_ff(const ModelConfig& m);

}  // namespace pft
