// Checkpoint reader and verifier (contract: ckpt/reader.h, Note [hostile files]).
#include "ckpt/reader.h"

#include <H5PLpublic.h>
#include <hdf5.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "ckpt/format.h"
#include "core/error.h"
#include "core/format.h"
#include "core/hdf5.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

namespace {

constexpr size_t kPieceBytes = size_t{64} << 20;

// An invalid file: the message is the reason (the caller adds "checkpoint FILE: ").
struct Invalid {
  std::string reason;
};

[[noreturn]] void invalid(std::string reason) { throw Invalid{std::move(reason)}; }

void disable_plugins() {
  static std::once_flag once;
  std::call_once(once, [] {
    h5::init();
    H5PLset_loading_state(0);
  });
}

struct Walk {
  std::vector<std::string> groups;
  std::vector<std::string> datasets;
  std::string error;
};

const char* link_type_name(H5L_type_t t) {
  switch (t) {
    case H5L_TYPE_SOFT:
      return "soft";
    case H5L_TYPE_EXTERNAL:
      return "external";
    default:
      return "user-defined";
  }
}

// Refuses datasets whose data would come from elsewhere or need a plugin.
std::string check_dataset(hid_t loc, const char* name, const std::string& path) {
  const hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
  if (ds < 0) return fmt::format("dataset {} cannot be opened", path);
  const hid_t dcpl = H5Dget_create_plist(ds);
  std::string error;
  if (dcpl < 0) {
    error = fmt::format("dataset {}: cannot read its creation properties", path);
  } else {
    const H5D_layout_t layout = H5Pget_layout(dcpl);
    if (layout == H5D_VIRTUAL)
      error = fmt::format(
          "dataset {} is a virtual dataset (its data would come from other "
          "files); refused (Note [hostile files])",
          path);
    else if (H5Pget_external_count(dcpl) > 0)
      error = fmt::format(
          "dataset {} keeps its data in external files; refused (Note [hostile "
          "files])",
          path);
    const int nfilters = H5Pget_nfilters(dcpl);
    for (int i = 0; error.empty() && i < nfilters; ++i) {
      unsigned flags = 0;
      size_t nelmts = 0;
      unsigned filter_config = 0;
      const H5Z_filter_t f = H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &nelmts,
                                            nullptr, 0, nullptr, &filter_config);
      if (f != H5Z_FILTER_DEFLATE && f != H5Z_FILTER_SHUFFLE && f != H5Z_FILTER_FLETCHER32)
        error = fmt::format(
            "dataset {} uses HDF5 filter {} (only deflate, shuffle and "
            "fletcher32 are allowed); refused",
            path, static_cast<int>(f));
    }
    H5Pclose(dcpl);
  }
  H5Dclose(ds);
  return error;
}

herr_t visit_link(hid_t group, const char* name, const H5L_info_t* info, void* data) {
  auto* walk = static_cast<Walk*>(data);
  const std::string path = std::string("/") + name;
  if (info->type != H5L_TYPE_HARD) {
    walk->error = fmt::format(
        "{} is a {} link; a pft checkpoint holds only plain groups and "
        "datasets, and links are never followed (Note [hostile files])",
        path, link_type_name(info->type));
    return 1;
  }
  H5O_info_t oinfo;
  if (H5Oget_info_by_name2(group, name, &oinfo, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    walk->error = fmt::format("object {} cannot be read", path);
    return 1;
  }
  if (oinfo.type == H5O_TYPE_GROUP) {
    walk->groups.push_back(path);
  } else if (oinfo.type == H5O_TYPE_DATASET) {
    std::string error = check_dataset(group, name, path);
    if (!error.empty()) {
      walk->error = std::move(error);
      return 1;
    }
    walk->datasets.push_back(path);
  } else {
    walk->error = fmt::format("{} is neither a group nor a dataset; refused", path);
    return 1;
  }
  return 0;
}

herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

Attrs read_attrs(const h5::Object& obj, const std::set<std::string>& skip) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  h5::check_attribute_messages(obj);
  PFT_H5_CHECK_AT(
      H5Aiterate2(obj.id(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, &names),
      obj.describe());
  Attrs attrs;
  for (const std::string& name : names) {
    if (skip.count(name) > 0) continue;
    H5T_class_t cls;
    {
      const h5::Handle a(PFT_H5_CHECK_AT(H5Aopen(obj.id(), name.c_str(), H5P_DEFAULT),
                                         obj.describe() + " @" + name));
      const h5::Handle t(PFT_H5_CHECK(H5Aget_type(a.id())));
      cls = PFT_H5_CHECK(H5Tget_class(t.id()));
    }
    if (cls == H5T_INTEGER)
      attrs[name] = obj.read_int_attribute(name);
    else if (cls == H5T_FLOAT)
      attrs[name] = obj.read_double_attribute(name);
    else if (cls == H5T_STRING)
      attrs[name] = obj.read_string_attribute(name);
    else
      invalid(fmt::format("{}: attribute {} has an unsupported type", obj.describe(), name));
  }
  return attrs;
}

struct ManifestEntry {
  std::string path;
  DType dtype = DType::kUInt8;
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
  std::string checksum;
};

std::string read_attr_string_or_empty(const h5::Object& obj, const char* name) {
  return obj.has_attribute(name) ? obj.read_string_attribute(name) : std::string();
}

// Reads all of dataset `ds` (raw file bytes, no conversion) into `dst` when given, else streams
// it through a scratch buffer; returns the XXH3-64 of the bytes (text: without padding).
uint64_t read_bytes(const h5::Dataset& ds, const ManifestEntry& e, std::byte* dst) {
  const h5::Handle type(PFT_H5_CHECK(H5Dget_type(ds.id())));
  Checksummer sum;
  if (e.dtype == DType::kString) {
    const size_t size = H5Tget_size(type.id());
    std::vector<std::byte> buf(std::max<size_t>(size, 1));
    PFT_H5_CHECK_AT(H5Dread(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()),
                    ds.describe());
    if (e.bytes > size) invalid(fmt::format("dataset {} is shorter than listed", e.path));
    const std::span<const std::byte> text(buf.data(), e.bytes);
    if (dst != nullptr) std::copy(text.begin(), text.end(), dst);
    sum.update(text);
    return sum.digest();
  }
  if (e.bytes == 0) return sum.digest();
  if (e.shape.empty()) {
    std::vector<std::byte> buf(e.bytes);
    std::byte* out = dst != nullptr ? dst : buf.data();
    PFT_H5_CHECK_AT(H5Dread(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out), ds.describe());
    sum.update({out, e.bytes});
    return sum.digest();
  }
  const auto rows = static_cast<hsize_t>(e.shape[0]);
  const uint64_t row_bytes = e.bytes / rows;
  const hsize_t step = std::max<hsize_t>(1, kPieceBytes / std::max<uint64_t>(1, row_bytes));
  std::vector<std::byte> scratch;
  if (dst == nullptr) scratch.resize(std::min<uint64_t>(e.bytes, step * row_bytes));
  h5::Dataspace space = ds.space();
  std::vector<hsize_t> start(e.shape.size(), 0), count(e.shape.begin(), e.shape.end());
  const size_t esize = dtype_size(e.dtype);
  for (hsize_t r = 0; r < rows; r += step) {
    const hsize_t n = std::min(step, rows - r);
    start[0] = r;
    count[0] = n;
    PFT_H5_CHECK(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr,
                                     count.data(), nullptr));
    const hsize_t mem_n[1] = {static_cast<hsize_t>(n * row_bytes / esize)};
    const h5::Dataspace mem = h5::Dataspace::simple(mem_n);
    std::byte* out = dst != nullptr ? dst + r * row_bytes : scratch.data();
    PFT_H5_CHECK_AT(H5Dread(ds.id(), type.id(), mem.id(), space.id(), H5P_DEFAULT, out),
                    fmt::format("{} rows [{}, {})", ds.describe(), r, r + n));
    sum.update({out, n * row_bytes});
  }
  return sum.digest();
}

// Checks that the dataset's HDF5 type and extent match the manifest entry.
void check_shape(const h5::Dataset& ds, const ManifestEntry& e) {
  const std::string stored = read_attr_string_or_empty(ds, kAttrDType);
  if (stored != dtype_name(e.dtype))
    invalid(fmt::format("dataset {}: dtype attribute `{}` differs from the manifest's `{}`", e.path,
                        stored, dtype_name(e.dtype)));
  const h5::Handle type(PFT_H5_CHECK(H5Dget_type(ds.id())));
  const H5T_class_t cls = PFT_H5_CHECK(H5Tget_class(type.id()));
  const size_t size = H5Tget_size(type.id());
  if (e.dtype == DType::kString) {
    if (cls != H5T_STRING || PFT_H5_CHECK(H5Tis_variable_str(type.id())) > 0)
      invalid(fmt::format("dataset {}: expected fixed-length text", e.path));
    if (!ds.dims().empty()) invalid(fmt::format("dataset {}: text must be a scalar", e.path));
    return;
  }
  const bool is_float = e.dtype == DType::kFloat32 || e.dtype == DType::kFloat64 ||
                        e.dtype == DType::kFloat16 || e.dtype == DType::kBFloat16;
  if ((is_float ? H5T_FLOAT : H5T_INTEGER) != cls || size != dtype_size(e.dtype))
    invalid(fmt::format("dataset {}: its HDF5 type does not match dtype {}", e.path,
                        dtype_name(e.dtype)));
  const std::vector<hsize_t> dims = ds.dims();
  if (!std::equal(dims.begin(), dims.end(), e.shape.begin(), e.shape.end(),
                  [](hsize_t a, int64_t b) { return static_cast<int64_t>(a) == b; }))
    invalid(fmt::format("dataset {}: shape differs from the manifest", e.path));
  uint64_t numel = 1;
  for (int64_t s : e.shape) numel *= static_cast<uint64_t>(s);
  if (numel * size != e.bytes)
    invalid(fmt::format("dataset {}: the manifest lists {} bytes for {} elements", e.path, e.bytes,
                        numel));
}

std::vector<ManifestEntry> parse_manifest(const std::string& json) {
  std::vector<ManifestEntry> out;
  try {
    const boost::json::object m = boost::json::parse(json).as_object();
    for (const boost::json::value& v : m.at("datasets").as_array()) {
      const boost::json::object& o = v.as_object();
      ManifestEntry e;
      e.path = std::string(o.at("path").as_string());
      const auto dt = parse_dtype(std::string(o.at("dtype").as_string()));
      if (!dt) invalid(fmt::format("manifest: dataset {} has an unknown dtype", e.path));
      e.dtype = *dt;
      for (const boost::json::value& s : o.at("shape").as_array())
        e.shape.push_back(s.to_number<int64_t>());
      e.bytes = o.at("bytes").to_number<uint64_t>();
      e.checksum = std::string(o.at("checksum").as_string());
      if (e.path.empty() || e.path[0] != '/' || e.path == kManifest)
        invalid(fmt::format("manifest: bad dataset path `{}`", e.path));
      out.push_back(std::move(e));
    }
  } catch (const Invalid&) {
    throw;
  } catch (const std::exception& e) {
    invalid(fmt::format("the manifest is not valid JSON of the expected shape ({})", e.what()));
  }
  return out;
}

enum class Mode { kRead, kVerify };

struct Outcome {
  Contents contents;
  int64_t datasets = 0;
  uint64_t bytes = 0;
};

Outcome process(const fs::path& path, const ReadOptions& options, Mode mode) {
  disable_plugins();
  std::error_code ec;
  if (!fs::exists(path, ec)) invalid("no such file");
  if (!fs::is_regular_file(path, ec)) invalid("not a regular file");
  if (fs::file_size(path, ec) == 0) invalid("empty file (0 bytes): a save that never finished");
  // Before HDF5 sees the file: HDF5 1.10 can crash on damaged metadata (Note [file seal]).
  const h5::SealCheck seal = h5::check_seal(path);
  if (!seal.damage.empty())
    invalid(fmt::format("damaged: {}; refused before HDF5 reads it (auto-resume skips it; "
                        "restore it from a copy or delete it)",
                        seal.damage));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    invalid("not an HDF5 file (truncated or overwritten?)");
  }
  h5::PropList fapl = h5::PropList::create(H5P_FILE_ACCESS);
  PFT_H5_CHECK(H5Pset_file_locking(fapl.id(), options.file_locking, true));
  h5::File file;
  try {
    file =
        h5::File(PFT_H5_CHECK_AT(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id()), path.string()));
  } catch (const h5::Hdf5Error& e) {
    invalid(fmt::format("HDF5 cannot open it (truncated or corrupt): {}", e.stack()));
  }

  Walk walk;
  const herr_t rc = H5Lvisit(file.id(), H5_INDEX_NAME, H5_ITER_INC, visit_link, &walk);
  if (!walk.error.empty()) invalid(walk.error);
  if (rc < 0) {
    H5Eclear2(H5E_DEFAULT);
    invalid("its link tree cannot be walked (corrupt metadata)");
  }

  std::string where = "root attributes";
  try {
    if (read_attr_string_or_empty(file, kAttrFormat) != kFormatName)
      invalid(fmt::format("not a pft checkpoint (root attribute `{}` is not \"{}\")", kAttrFormat,
                          kFormatName));
    const int64_t version = file.read_int_attribute(kAttrFormatVersion);
    if (version > kFormatVersion || version < 1)
      invalid(
          fmt::format("format_version {} is not supported by this pft (reads 1..{}); use a "
                      "newer pft",
                      version, kFormatVersion));
    if (!file.has_attribute(kAttrComplete) || file.read_int_attribute(kAttrComplete) != 1)
      invalid("incomplete: the save that wrote it did not finish (no `complete` attribute)");

    where = "/manifest";
    if (std::find(walk.datasets.begin(), walk.datasets.end(), kManifest) == walk.datasets.end())
      invalid("dataset /manifest is missing");
    std::vector<ManifestEntry> entries;
    {
      const h5::Dataset mds = file.open_dataset(kManifest);
      const h5::Handle type(PFT_H5_CHECK(H5Dget_type(mds.id())));
      if (PFT_H5_CHECK(H5Tget_class(type.id())) != H5T_STRING)
        invalid("dataset /manifest is not text");
      ManifestEntry me;
      me.path = kManifest;
      me.dtype = DType::kString;
      const size_t size = H5Tget_size(type.id());
      std::vector<char> buf(size);
      PFT_H5_CHECK(H5Dread(mds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
      std::string json(buf.data(), buf.size());
      json.resize(std::strlen(json.c_str()));
      const std::string stored = read_attr_string_or_empty(mds, kAttrChecksum);
      const std::string computed = checksum(std::as_bytes(std::span<const char>(json)));
      if (stored != computed)
        invalid(fmt::format("dataset /manifest: checksum mismatch (stored {}, computed {})",
                            stored.empty() ? "none" : stored, computed));
      entries = parse_manifest(json);
    }

    const std::set<std::string> present(walk.datasets.begin(), walk.datasets.end());
    std::set<std::string> listed;
    for (const ManifestEntry& e : entries) {
      if (!listed.insert(e.path).second) invalid(fmt::format("manifest lists {} twice", e.path));
      if (present.count(e.path) == 0) invalid(fmt::format("dataset {} is missing", e.path));
    }
    for (const std::string& p : walk.datasets)
      if (p != kManifest && listed.count(p) == 0)
        invalid(fmt::format("dataset {} is not listed in the manifest (added after the save?)", p));

    Outcome out;
    out.contents.source = path.string();
    out.contents.format_version = version;
    where = "group attributes";
    out.contents.group("/") = read_attrs(file, {kAttrFormat, kAttrFormatVersion, kAttrComplete});
    for (const std::string& g : walk.groups) {
      where = "group " + g;
      const h5::Group grp = file.open_group(g);
      out.contents.group(g) = read_attrs(grp, {});
    }
    for (const ManifestEntry& e : entries) {
      where = "dataset " + e.path;
      const h5::Dataset ds = file.open_dataset(e.path);
      check_shape(ds, e);
      const bool selected = mode == Mode::kVerify || !options.select || options.select(e.path);
      std::shared_ptr<std::vector<std::byte>> storage;
      std::byte* dst = nullptr;
      if (mode == Mode::kRead && selected) {
        storage = std::make_shared<std::vector<std::byte>>(e.bytes);
        dst = storage->data();
      }
      if (selected) {
        const std::string computed = checksum_text(read_bytes(ds, e, dst));
        const std::string own = read_attr_string_or_empty(ds, kAttrChecksum);
        if (computed != e.checksum || own != e.checksum)
          invalid(
              fmt::format("dataset {}: checksum mismatch (manifest {}, attribute {}, data {}): "
                          "the data is corrupt",
                          e.path, e.checksum, own.empty() ? "none" : own, computed));
        ++out.datasets;
        out.bytes += e.bytes;
      }
      if (mode == Mode::kRead) {
        Dataset& d = storage ? out.contents.add(e.path, e.dtype, e.shape,
                                                {storage->data(), storage->size()}, storage)
                             : out.contents.add_unloaded(e.path, e.dtype, e.shape);
        d.attrs = read_attrs(ds, {kAttrDType, kAttrChecksum});
      }
    }
    file.close();
    return out;
  } catch (const h5::Hdf5Error& e) {
    invalid(fmt::format("{}: HDF5 cannot read it (corrupt): {}", where,
                        e.stack().empty() ? e.what() : e.stack()));
  }
}

}  // namespace

Contents read_checkpoint(const fs::path& path, const ReadOptions& options) {
  try {
    return process(path, options, Mode::kRead).contents;
  } catch (const Invalid& e) {
    throw InputError(fmt::format("checkpoint {}: {}", path.string(), e.reason));
  }
}

Contents read_checkpoint_meta(const fs::path& path, const ReadOptions& options) {
  ReadOptions o = options;
  o.select = [](const std::string& p) { return p.rfind("/meta/", 0) == 0; };
  return read_checkpoint(path, o);
}

Verification verify_checkpoint(const fs::path& path, const ReadOptions& options) {
  Verification v;
  try {
    const Outcome out = process(path, options, Mode::kVerify);
    v.ok = true;
    v.datasets = out.datasets;
    v.bytes = out.bytes;
  } catch (const Invalid& e) {
    v.reason = e.reason;
  } catch (const h5::Hdf5Error& e) {
    v.reason = fmt::format("HDF5 cannot read it: {}", e.stack().empty() ? e.what() : e.stack());
  }
  return v;
}

}  // namespace pft::ckpt
