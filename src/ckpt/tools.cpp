// `pft ckpt` tools (contract: ckpt/tools.h).
#include "ckpt/tools.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "ckpt/config_record.h"
#include "ckpt/format.h"
#include "ckpt/run_checkpoints.h"
#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

namespace {

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::string meta_or(const Attrs& a, const char* name, const std::string& fallback = "-") {
  const auto it = a.find(name);
  return it == a.end() ? fallback : attr_to_string(it->second);
}

std::string metrics_of(const Attrs& meta) {
  std::string out;
  for (const auto& [k, v] : meta)
    if (k.rfind(kMetricAttrPrefix, 0) == 0)
      out += fmt::format("{}{}={}", out.empty() ? "" : " ", k.substr(kMetricAttrPrefix.size()),
                         attr_to_string(v));
  return out.empty() ? "-" : out;
}

// Left-aligned columns.
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i)
      line += i + 1 == r.size() ? r[i] : r[i] + std::string(width[i] - r[i].size() + 2, ' ');
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

ReadOptions meta_only(const ReadOptions& options) {
  ReadOptions ro = options;
  ro.select = [](const std::string& p) { return p.rfind("/meta/", 0) == 0; };
  return ro;
}

// Values as doubles for the max |a - b| of float tensors; false for other dtypes.
bool as_doubles(const Dataset& d, std::vector<double>& out) {
  const int64_t n = d.numel();
  out.resize(static_cast<size_t>(n));
  const std::byte* p = d.bytes.data();
  switch (d.dtype) {
    case DType::kFloat32:
      for (int64_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, p + 4 * i, 4);
        out[static_cast<size_t>(i)] = f;
      }
      return true;
    case DType::kFloat64:
      std::memcpy(out.data(), p, static_cast<size_t>(n) * 8);
      return true;
    case DType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        out[static_cast<size_t>(i)] = f;
      }
      return true;
    default:
      return false;
  }
}

}  // namespace

CheckpointListing list_run_checkpoints(const fs::path& run_dir, const ReadOptions& options) {
  fs::path dir = run_dir / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) dir = run_dir;
  if (!fs::is_directory(dir, ec))
    throw InputError(
        fmt::format("{}: not a run directory (no checkpoints/ in it)", run_dir.string()));
  const std::vector<ListedCheckpoint> all = list_checkpoints(dir);
  const std::optional<std::string> latest = read_latest(dir);
  CheckpointListing listing;
  if (fs::exists(dir / "latest", ec) && !latest)
    listing.problem = fmt::format("{}: names no checkpoint file (empty, or not a file name of "
                                  "this directory)",
                                  (dir / "latest").string());
  else if (latest && std::none_of(all.begin(), all.end(), [&](const ListedCheckpoint& c) {
             return c.path.filename() == *latest;
           }))
    listing.problem = fmt::format("{} names {}, {}", (dir / "latest").string(), *latest,
                                  fs::exists(dir / *latest, ec)
                                      ? "which is not a complete checkpoint file (step_N.h5)"
                                      : "which does not exist");
  std::vector<std::vector<std::string>> rows{
      {"", "file", "step", "tokens_seen", "size", "saved (UTC)", "metrics", "status"}};
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string name = it->path.filename().string();
    const uint64_t size = fs::file_size(it->path, ec);
    std::vector<std::string> row{latest && *latest == name ? "*" : "",
                                 name,
                                 std::to_string(it->step),
                                 "-",
                                 human_bytes(size),
                                 "-",
                                 "-",
                                 "ok"};
    try {
      const Contents c = read_checkpoint(it->path, meta_only(options));
      const Attrs& meta = c.group_attrs(kMeta);
      row[3] = meta_or(meta, kAttrTokensSeen);
      row[5] = meta_or(meta, kAttrTimeUtc);
      row[6] = metrics_of(meta);
    } catch (const InputError& e) {
      std::string reason = e.what();
      const std::string prefix = fmt::format("checkpoint {}: ", it->path.string());
      if (reason.rfind(prefix, 0) == 0) reason = reason.substr(prefix.size());
      row[7] = "INVALID: " + reason;
      if (latest && *latest == name)
        listing.problem = fmt::format("{} names {}, which is invalid: {}",
                                      (dir / "latest").string(), name, reason);
    }
    rows.push_back(std::move(row));
  }
  std::string& out = listing.text;
  out = fmt::format("checkpoints in {} ({} file(s); * = latest{})\n", dir.string(),
                                all.size(), latest ? ": " + *latest : ": none");
  out += table(rows);
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos)
      out += fmt::format("interrupted or in-progress save: {}\n", name);
  }
  return listing;
}

std::string inspect_checkpoint(const fs::path& file, const ReadOptions& options) {
  const Contents c = read_checkpoint(file, meta_only(options));
  const Attrs& meta = c.group_attrs(kMeta);
  std::string out;
  out += fmt::format("file:        {}\n", file.string());
  // The file's own version (this pft reads 1..kFormatVersion), not the reader's.
  out += fmt::format("format:      {} v{}, written by pft {} (commit {})\n", kFormatName,
                     c.format_version,
                     meta_or(meta, kAttrPftVersion), meta_or(meta, kAttrGitCommit));
  out += fmt::format("step:        {}\n", meta_or(meta, kAttrStep));
  out += fmt::format("tokens seen: {}\n", meta_or(meta, kAttrTokensSeen));
  out += fmt::format("world size:  {}\n", meta_or(meta, kAttrWorldSize));
  out += fmt::format("saved:       {} UTC\n", meta_or(meta, kAttrTimeUtc));
  out += fmt::format("metrics:     {}\n", metrics_of(meta));
  if (const Dataset* flat = c.find(kMetaConfigFlat)) {
    const FlatConfig cfg = flat_from_json(flat->text(), kMetaConfigFlat);
    const auto get = [&](const char* k) {
      const auto it = cfg.find(k);
      return it == cfg.end() ? std::string("-") : it->second;
    };
    out += "config:\n";
    out += fmt::format(
        "  model:  {} d_model={} n_layers={} n_heads={} n_kv_heads={} vocab={} "
        "max_seq_len={} tie_embeddings={}\n",
        get("model.family"), get("model.d_model"), get("model.n_layers"), get("model.n_heads"),
        get("model.n_kv_heads"), get("model.vocab_size"), get("model.max_seq_len"),
        get("model.tie_embeddings"));
    out += fmt::format(
        "  train:  method={} steps={} lr={} schedule={} warmup={} "
        "global_batch={} micro_batch={} precision={}\n",
        get("train.method"), get("train.steps"), get("train.lr"), get("train.schedule"),
        get("train.warmup_steps"), get("train.global_batch_size"), get("train.micro_batch_size"),
        get("train.precision"));
    out += fmt::format("  data:   source={} seq_len={} tokenizer={}\n", get("data.source"),
                       get("data.seq_len"), get("data.tokenizer"));
    out += fmt::format("  run:    dir={} seed={}\n", get("run.dir"), get("run.seed"));
  }
  out += "groups:\n";
  for (const auto& [g, attrs] : c.groups()) {
    if (g == "/" || g == kMeta) continue;
    std::string line;
    for (const auto& [k, v] : attrs) line += fmt::format(" {}={}", k, attr_to_string(v));
    out += fmt::format("  {}{}\n", g, line);
  }
  std::vector<std::vector<std::string>> rows{{"dataset", "dtype", "shape", "bytes"}};
  uint64_t total = 0;
  int64_t params = 0;
  for (const Dataset& d : c.datasets()) {
    const uint64_t bytes = d.dtype == DType::kString
                               ? d.bytes.size()
                               : static_cast<uint64_t>(d.numel()) * dtype_size(d.dtype);
    total += bytes;
    if (d.path.rfind("/model/", 0) == 0) params += d.numel();
    rows.push_back({d.path, dtype_name(d.dtype),
                    d.dtype == DType::kString ? "text" : shape_text(d.shape), human_bytes(bytes)});
  }
  out += fmt::format("tensors: {} datasets, {} in total; model: {} parameters\n",
                     c.datasets().size(), human_bytes(total), params);
  out += table(rows);
  return out;
}

DiffResult diff_checkpoints(const fs::path& a_path, const fs::path& b_path,
                            const ReadOptions& options) {
  const Contents a = read_checkpoint(a_path, options);
  const Contents b = read_checkpoint(b_path, options);
  DiffResult r;
  r.same = true;
  std::string& out = r.text;
  out += fmt::format("A: {}\nB: {}\n", a_path.string(), b_path.string());
  const Attrs& ma = a.group_attrs(kMeta);
  const Attrs& mb = b.group_attrs(kMeta);
  for (const char* k : {kAttrStep, kAttrTokensSeen, kAttrWorldSize}) {
    const std::string va = meta_or(ma, k), vb = meta_or(mb, k);
    out += fmt::format("{:<12} {}{}\n", std::string(k) + ":", va,
                       va == vb ? "" : fmt::format(" -> {}", vb));
  }
  if (a.find(kMetaConfigFlat) && b.find(kMetaConfigFlat)) {
    const auto changes = diff_flat(flat_from_json(a.at(kMetaConfigFlat).text(), kMetaConfigFlat),
                                   flat_from_json(b.at(kMetaConfigFlat).text(), kMetaConfigFlat));
    out += fmt::format("config: {} key(s) differ\n", changes.size());
    for (const ConfigChange& c : changes)
      out += fmt::format("  {}: {} -> {}\n", c.key, c.saved, c.current);
  }
  std::set<std::string> paths;
  for (const Dataset& d : a.datasets()) paths.insert(d.path);
  for (const Dataset& d : b.datasets()) paths.insert(d.path);
  int64_t identical = 0;
  std::vector<double> va, vb;
  for (const std::string& p : paths) {
    const bool counts = p.rfind("/meta/", 0) != 0 && p.rfind("/metrics/", 0) != 0;
    const Dataset* da = a.find(p);
    const Dataset* db = b.find(p);
    std::string what;
    if (da == nullptr)
      what = "only in B";
    else if (db == nullptr)
      what = "only in A";
    else if (da->dtype != db->dtype || da->shape != db->shape)
      what = fmt::format("{} {} -> {} {}", dtype_name(da->dtype), shape_text(da->shape),
                         dtype_name(db->dtype), shape_text(db->shape));
    else if (da->bytes.size() != db->bytes.size() ||
             std::memcmp(da->bytes.data(), db->bytes.data(), da->bytes.size()) != 0) {
      what = "values differ";
      if (as_doubles(*da, va) && as_doubles(*db, vb)) {
        double max_abs = 0.0;
        int64_t n_diff = 0;
        for (size_t i = 0; i < va.size(); ++i) {
          const double d = std::fabs(va[i] - vb[i]);
          if (va[i] != vb[i]) ++n_diff;
          if (d > max_abs || std::isnan(d)) max_abs = d;
        }
        what += fmt::format(" ({} of {} elements, max |a-b| = {:.3g})", n_diff, va.size(), max_abs);
      }
    }
    if (what.empty()) {
      ++identical;
      continue;
    }
    if (counts) r.same = false;
    out += fmt::format("  {}: {}{}\n", p, what, counts ? "" : " (not compared for sameness)");
  }
  out += fmt::format(
      "{} of {} dataset(s) identical; state (/model, /optimizer, /rng, /data, ...) "
      "{}\n",
      identical, paths.size(), r.same ? "IDENTICAL" : "DIFFERS");
  return r;
}

}  // namespace pft::ckpt
