// The names of pft's checkpoint format (docs/checkpoint-format.md is the reference; this header
// is its list of constants) and the checksum every dataset carries.
//
// Version 2 (since the plan log under /controller/plan became a window, control/plan_log.h;
// version 1 files are read as before). A reader refuses a file whose format_version is newer
// than kFormatVersion, and a file without the root attribute `complete` (written last, just
// before the file is closed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace pft::ckpt {

inline constexpr std::string_view kFormatName = "pft-checkpoint";
inline constexpr int64_t kFormatVersion = 2;

// Root attributes.
inline constexpr const char* kAttrFormat = "format";
inline constexpr const char* kAttrFormatVersion = "format_version";
inline constexpr const char* kAttrComplete = "complete";

// Per-dataset attributes the writer adds.
inline constexpr const char* kAttrDType = "dtype";
inline constexpr const char* kAttrChecksum = "checksum";

// The manifest: a text dataset (JSON) listing every other dataset with dtype, shape, bytes and
// checksum, so a dataset that went missing is noticed. Its own checksum is its attribute.
inline constexpr const char* kManifest = "/manifest";

// Groups (docs/checkpoint-format.md).
inline constexpr const char* kMeta = "/meta";
inline constexpr const char* kModel = "/model";
inline constexpr const char* kOptimizer = "/optimizer";
inline constexpr const char* kTrainable = "/trainable";
inline constexpr const char* kRng = "/rng";
inline constexpr const char* kData = "/data";
inline constexpr const char* kController = "/controller";
inline constexpr const char* kMetrics = "/metrics";

// Datasets and attributes inside them used by the tools.
inline constexpr const char* kMetaConfig = "/meta/config";              // resolved YAML (text)
inline constexpr const char* kMetaConfigFlat = "/meta/config_flat";     // JSON {key: value}
inline constexpr const char* kMetaArchitecture = "/meta/architecture";  // JSON {key: value}
inline constexpr const char* kAttrStep = "step";
inline constexpr const char* kAttrTokensSeen = "tokens_seen";
inline constexpr const char* kAttrWorldSize = "world_size";
inline constexpr const char* kAttrPftVersion = "pft_version";
inline constexpr const char* kAttrGitCommit = "git_commit";
inline constexpr const char* kAttrTimeUnix = "time_unix";
inline constexpr const char* kAttrTimeUtc = "time_utc";
// Metric values on /meta for best-K retention: "metric.<name>".
inline constexpr std::string_view kMetricAttrPrefix = "metric.";

// Attributes of /model, /optimizer (and its schedule), /trainable, /rng, /data, /controller and
// /metrics (docs/checkpoint-format.md lists their meaning).
inline constexpr const char* kAttrVersion = "version";       // /trainable, /data, /controller, /metrics
inline constexpr const char* kAttrParameters = "parameters";  // /model: parameter count
inline constexpr const char* kAttrKind = "kind";              // /optimizer, /optimizer/schedule
inline constexpr const char* kAttrStepCount = "step_count";   // /optimizer
inline constexpr const char* kAttrMethod = "method";          // /trainable: train.method
inline constexpr const char* kAttrBaseModelPath = "base_model_path";  // /trainable
inline constexpr const char* kAttrBaseModelHash = "base_model_hash";  // /trainable
inline constexpr const char* kAttrSource = "source";          // /data: data.source
inline constexpr const char* kAttrNextStep = "next_step";     // /data, /optimizer/schedule
inline constexpr const char* kAttrLoaderStep = "loader_step"; // /data
inline constexpr const char* kAttrSlots = "slots";            // /controller/plan
inline constexpr const char* kAttrFirstStep = "first_step";  // /controller/plan

// Datasets and subgroups the trainer writes (train/checkpoint_state.cpp). "<group>/<name>"
// paths are built with child_path().
// /model/<parameter name>: every parameter (or adapter tensor).
// /optimizer/exp_avg/<parameter name>, /optimizer/exp_avg_sq/<parameter name>: AdamW moments.
inline constexpr const char* kOptimizerExpAvg = "/optimizer/exp_avg";
inline constexpr const char* kOptimizerExpAvgSq = "/optimizer/exp_avg_sq";
inline constexpr const char* kOptimizerSchedule = "/optimizer/schedule";  // attributes only
inline constexpr const char* kLossScalerScale = "/optimizer/loss_scaler/scale";
inline constexpr const char* kLossScalerGrowthTracker = "/optimizer/loss_scaler/growth_tracker";
// /rng/rank_<r>/cpu and /rng/rank_<r>/cuda: generator states (rng_rank_group()).
inline constexpr const char* kRngCpu = "cpu";
inline constexpr const char* kRngCuda = "cuda";
inline constexpr const char* kDataTaskNames = "/data/task_names";    // JSON list (text)
inline constexpr const char* kDataNextSample = "/data/next_sample";  // int64 per task
inline constexpr const char* kControllerMixtureWeights = "/controller/mixture_weights";
inline constexpr const char* kControllerState = "/controller/state";  // schedule state (JSON)
// The plan log: /controller/plan/<one of the names below>.
inline constexpr const char* kControllerPlan = "/controller/plan";
inline constexpr const char* kPlanStep = "step";
inline constexpr const char* kPlanPhase = "phase";
inline constexpr const char* kPlanWorldSize = "world_size";
inline constexpr const char* kPlanSlotTask = "slot_task";
inline constexpr const char* kPlanSlotDocuments = "slot_documents";
inline constexpr const char* kPlanDocExample = "doc_example";
inline constexpr const char* kPlanDocTemplate = "doc_template";
inline constexpr const char* kMetricsHistory = "/metrics/history";  // metrics.jsonl lines (text)

// "<group>/<name>" ("/model" + "transformer.wte.weight").
inline std::string child_path(std::string_view group, std::string_view name) {
  std::string path(group);
  path += '/';
  path += name;
  return path;
}
// "/rng/rank_<r>".
inline std::string rng_rank_group(int rank) {
  return child_path(kRng, "rank_" + std::to_string(rank));
}

// The git commit pft was configured from ("unknown" outside a git checkout), for /meta.
const char* git_commit();

// XXH3-64 of `bytes`, as the checksum attribute writes it: "xxh3-64:<16 lowercase hex>".
std::string checksum(std::span<const std::byte> bytes);
uint64_t xxh3_64(std::span<const std::byte> bytes);
std::string checksum_text(uint64_t h);

// Streaming form, for data read in pieces.
class Checksummer {
 public:
  Checksummer();
  ~Checksummer();
  Checksummer(const Checksummer&) = delete;
  Checksummer& operator=(const Checksummer&) = delete;
  void update(std::span<const std::byte> bytes);
  uint64_t digest() const;

 private:
  void* state_;
};

}  // namespace pft::ckpt
