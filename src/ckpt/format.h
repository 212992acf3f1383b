// The names of pft's checkpoint format (docs/checkpoint-format.md is the reference; this header
// is its list of constants) and the checksum every dataset carries.
//
// Version 1. A reader refuses a file whose format_version is newer than kFormatVersion, and a
// file without the root attribute `complete` (written last, just before the file is closed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace pft::ckpt {

inline constexpr std::string_view kFormatName = "pft-checkpoint";
inline constexpr int64_t kFormatVersion = 1;

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
