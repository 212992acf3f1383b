// Atomic checkpoint file writer (contract: ckpt/writer.h, Note [atomic save]).
#include "ckpt/writer.h"

#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "ckpt/format.h"
#include "ckpt/h5_types.h"
#include "core/error.h"
#include "core/format.h"
#include "core/hdf5.h"
#include "core/test_hooks.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

Compression parse_compression(const std::string& name) {
  if (name == "none") return Compression::kNone;
  if (name == "gzip") return Compression::kGzip;
  throw InputError(
      fmt::format("checkpoint.compression: unknown value `{}`; use none or gzip", name));
}

void test_kill_point(const char* point, const std::string& file_name) {
  const char* target = std::getenv("PFT_TEST_CKPT_KILL_AT");
  if (target == nullptr) return;
  const std::string t = target;
  if (t == point || t == std::string(point) + ":" + file_name) ::raise(SIGKILL);
}

namespace detail {

h5::Handle file_type(DType dtype, size_t text_size) {
  const auto copy = [](hid_t t) { return h5::Handle(PFT_H5_CHECK(H5Tcopy(t))); };
  switch (dtype) {
    case DType::kFloat32:
      return copy(H5T_IEEE_F32LE);
    case DType::kFloat64:
      return copy(H5T_IEEE_F64LE);
    case DType::kFloat16:
    case DType::kBFloat16: {
      // h5py's recipe for IEEE half; bfloat16 is the same with an 8-bit exponent.
      h5::Handle t = copy(H5T_IEEE_F32LE);
      if (dtype == DType::kFloat16) {
        PFT_H5_CHECK(H5Tset_fields(t.id(), 15, 10, 5, 0, 10));
        PFT_H5_CHECK(H5Tset_size(t.id(), 2));
        PFT_H5_CHECK(H5Tset_ebias(t.id(), 15));
      } else {
        PFT_H5_CHECK(H5Tset_fields(t.id(), 15, 7, 8, 0, 7));
        PFT_H5_CHECK(H5Tset_size(t.id(), 2));
        PFT_H5_CHECK(H5Tset_ebias(t.id(), 127));
      }
      return t;
    }
    case DType::kInt8:
      return copy(H5T_STD_I8LE);
    case DType::kInt16:
      return copy(H5T_STD_I16LE);
    case DType::kInt32:
      return copy(H5T_STD_I32LE);
    case DType::kInt64:
      return copy(H5T_STD_I64LE);
    case DType::kUInt8:
    case DType::kBool:
      return copy(H5T_STD_U8LE);
    case DType::kString: {
      h5::Handle t = copy(H5T_C_S1);
      PFT_H5_CHECK(H5Tset_size(t.id(), std::max<size_t>(1, text_size)));
      PFT_H5_CHECK(H5Tset_strpad(t.id(), H5T_STR_NULLPAD));
      PFT_H5_CHECK(H5Tset_cset(t.id(), H5T_CSET_UTF8));
      return t;
    }
  }
  PFT_ASSERT(false, "unknown checkpoint dtype");
}

}  // namespace detail

namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text() { return std::strerror(errno); }

void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0)
    throw RuntimeFailure(
        fmt::format("checkpoint: cannot open '{}' to fsync it: {}", path.string(), errno_text()));
  if (::fsync(fd) != 0) {
    const std::string err = errno_text();
    ::close(fd);
    throw RuntimeFailure(fmt::format("checkpoint: fsync of '{}' failed: {}", path.string(), err));
  }
  ::close(fd);
}

void write_attrs(const h5::Object& obj, const Attrs& attrs) {
  for (const auto& [name, value] : attrs) {
    if (const auto* i = std::get_if<int64_t>(&value))
      obj.write_attribute(name, *i);
    else if (const auto* d = std::get_if<double>(&value))
      obj.write_attribute(name, *d);
    else
      obj.write_attribute(name, std::get<std::string>(value));
  }
}

// Rows of the first dimension per piece (1-D and N-D alike), so a piece is a contiguous
// hyperslab of at most ~piece_bytes.
hsize_t rows_per(const Dataset& d, size_t bytes) {
  if (d.shape.empty() || d.shape[0] == 0) return 1;
  const uint64_t row_bytes = std::max<uint64_t>(1, d.size() / static_cast<uint64_t>(d.shape[0]));
  return std::max<hsize_t>(1, bytes / row_bytes);
}

// Writes rows [r, r + n) of a dataset of shape `dims` (row-major, `row_bytes` each) from `data`.
void write_rows(const h5::Dataset& ds, const h5::Dataspace& space, hid_t type,
                const std::vector<hsize_t>& dims, DType dtype, hsize_t r, hsize_t n,
                uint64_t row_bytes, const void* data, const std::string& where) {
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = r;
  count[0] = n;
  PFT_H5_CHECK(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr,
                                   count.data(), nullptr));
  const hsize_t mem_n[1] = {static_cast<hsize_t>(n * row_bytes / dtype_size(dtype))};
  const h5::Dataspace mem = h5::Dataspace::simple(mem_n);
  PFT_H5_CHECK_AT(H5Dwrite(ds.id(), type, mem.id(), space.id(), H5P_DEFAULT, data),
                  fmt::format("{} rows [{}, {})", where, r, r + n));
}

// What one file's write keeps across its datasets: the buffer streamed datasets are read through.
struct WriteState {
  std::vector<std::byte> stream_buffer;
};

// The data of streamed dataset `d` (ckpt/contents.h): read from its source a piece at a time
// through state.stream_buffer, hashed on the way; rewrites the checksum attribute (written before
// as a placeholder of the same length) and returns the checksum.
std::string write_streamed(const h5::Dataset& ds, const h5::Dataspace& space, hid_t type,
                           const Dataset& d, const std::vector<hsize_t>& dims,
                           const WriteOptions& options, const std::string& where,
                           WriteState& state) {
  const hsize_t rows = dims.empty() ? 1 : dims[0];
  const uint64_t row_bytes = d.size() / rows;
  hsize_t step = rows_per(d, options.stream_piece_bytes);
  if (options.compression == Compression::kGzip) {  // whole chunks (write_dataset's, 1 MiB)
    const hsize_t chunk = rows_per(d, size_t{1} << 20);
    step = std::max<hsize_t>(1, step / chunk) * chunk;
  }
  step = std::min(rows, step);
  if (state.stream_buffer.size() < step * row_bytes) state.stream_buffer.resize(step * row_bytes);
  Checksummer sum;
  for (hsize_t r = 0; r < rows; r += step) {
    const hsize_t n = std::min(step, rows - r);
    const std::span<std::byte> piece(state.stream_buffer.data(), n * row_bytes);
    d.source->read(d.source_offset + r * row_bytes, piece);
    sum.update(piece);
    if (dims.empty()) {
      PFT_H5_CHECK_AT(H5Dwrite(ds.id(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, piece.data()), where);
      continue;
    }
    write_rows(ds, space, type, dims, d.dtype, r, n, row_bytes, piece.data(), where);
  }
  const std::string text = checksum_text(sum.digest());
  const h5::Attribute a(PFT_H5_CHECK_AT(H5Aopen(ds.id(), kAttrChecksum, H5P_DEFAULT), where));
  const h5::Handle atype(PFT_H5_CHECK_AT(H5Aget_type(a.id()), where));
  PFT_ASSERT(H5Tget_size(atype.id()) == text.size(), "checksum placeholder of another length");
  PFT_H5_CHECK_AT(H5Awrite(a.id(), atype.id(), text.data()), where + " @" + kAttrChecksum);
  return text;
}

// Writes `d` with its checksum attribute; returns the checksum (the manifest repeats it).
std::string write_dataset(const h5::Location& file, const Dataset& d, const WriteOptions& options,
                          WriteState& state) {
  const std::string where = fmt::format("{} dataset {}", file.describe(), d.path);
  const bool text = d.dtype == DType::kString;
  const h5::Handle type = detail::file_type(d.dtype, d.bytes.size());
  std::vector<hsize_t> dims(d.shape.begin(), d.shape.end());
  h5::Dataspace space = dims.empty() ? h5::Dataspace::scalar() : h5::Dataspace::simple(dims);

  h5::PropList dcpl = h5::PropList::create(H5P_DATASET_CREATE);
  // Every byte is written by us: no fill values first (that would write the file twice).
  PFT_H5_CHECK(H5Pset_fill_time(dcpl.id(), H5D_FILL_TIME_NEVER));
  const bool compress = options.compression == Compression::kGzip && !dims.empty() &&
                        d.numel() > 0 && d.size() >= 4096;
  if (compress) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min<hsize_t>(dims[0], rows_per(d, size_t{1} << 20));
    PFT_H5_CHECK(H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data()));
    PFT_H5_CHECK(H5Pset_shuffle(dcpl.id()));
    PFT_H5_CHECK(H5Pset_deflate(dcpl.id(), 4));
  }
  // Intermediate groups exist already (the writer creates every group first).
  h5::Dataset ds(PFT_H5_CHECK_AT(H5Dcreate2(file.id(), d.path.c_str(), type.id(), space.id(),
                                            H5P_DEFAULT, dcpl.id(), H5P_DEFAULT),
                                 where));
  ds.write_attribute(kAttrDType, std::string(dtype_name(d.dtype)));
  // Streamed: the checksum is known once the bytes have gone by (write_streamed); until then a
  // placeholder of its length. (An empty one is the checksum of no bytes, as from memory.)
  const bool stream = d.streamed() && d.numel() > 0;
  const std::string sum = stream ? checksum_text(0) : checksum(d.bytes);
  ds.write_attribute(kAttrChecksum, sum);
  write_attrs(ds, d.attrs);
  if (stream) return write_streamed(ds, space, type.id(), d, dims, options, where, state);

  if (text) {
    std::string buf = d.text();
    if (buf.empty()) buf.push_back('\0');
    PFT_H5_CHECK_AT(H5Dwrite(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), where);
    return sum;
  }
  if (d.numel() == 0) return sum;
  if (dims.empty()) {
    PFT_H5_CHECK_AT(H5Dwrite(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, d.bytes.data()),
                    where);
    return sum;
  }
  const hsize_t rows = dims[0];
  const hsize_t step = rows_per(d, options.piece_bytes);
  const uint64_t row_bytes = d.bytes.size() / rows;
  for (hsize_t r = 0; r < rows; r += step)
    write_rows(ds, space, type.id(), dims, d.dtype, r, std::min(step, rows - r), row_bytes,
               d.bytes.data() + r * row_bytes, where);
  return sum;
}

std::string manifest_json(const Contents& contents, const std::vector<std::string>& sums) {
  boost::json::array list;
  for (size_t i = 0; i < contents.datasets().size(); ++i) {
    const Dataset& d = contents.datasets()[i];
    boost::json::object e;
    e["path"] = d.path;
    e["dtype"] = dtype_name(d.dtype);
    boost::json::array shape;
    for (int64_t s : d.shape) shape.emplace_back(s);
    e["shape"] = std::move(shape);
    e["bytes"] = d.size();
    e["checksum"] = sums[i];
    list.emplace_back(std::move(e));
  }
  boost::json::object m;
  m["format"] = std::string(kFormatName);
  m["format_version"] = kFormatVersion;
  m["datasets"] = std::move(list);
  return boost::json::serialize(m);
}

void write_objects(const h5::File& file, const fs::path& path, const std::string& final_name,
                   const Contents& contents, const WriteOptions& options, WriteState& state);

void write_file(const fs::path& path, const std::string& final_name, const Contents& contents,
                const WriteOptions& options, WriteState& state) {
  h5::PropList fapl = h5::PropList::create(H5P_FILE_ACCESS);
  PFT_H5_CHECK(H5Pset_file_locking(fapl.id(), options.file_locking, true));
  // 1.8 object format: metadata checksums (attributes included), readable by HDF5 >= 1.8.
  PFT_H5_CHECK(H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_V18));
  PFT_H5_CHECK(H5Pset_alignment(fapl.id(), 64 * 1024, 4096));
  PFT_H5_CHECK(H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_STRONG));
  // The user block receives the whole-file seal after the close (Note [file seal], core/hdf5.cpp).
  h5::PropList fcpl = h5::PropList::create(H5P_FILE_CREATE);
  if (options.seal) PFT_H5_CHECK(H5Pset_userblock(fcpl.id(), h5::kSealBytes));
  h5::File file(PFT_H5_CHECK_AT(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.id(), fapl.id()),
                                path.string()));
  try {
    write_objects(file, path, final_name, contents, options, state);
  } catch (...) {
    // Note [closing after a failed write]: HDF5 flushes its metadata when the file is closed; on
    // a full disk that flush fails too, the file stays open inside HDF5, and HDF5 1.10 crashes
    // closing it again at exit. Truncating the (doomed) temporary file first frees its space, so
    // the closing flush succeeds; the caller then deletes the file.
    if (::truncate(path.c_str(), 0) != 0) { /* the close below may fail; nothing else to do */
    }
    try {
      file.close();
    } catch (const std::exception&) {
    }
    throw;
  }
  file.close();
  test_kill_point("closed", final_name);
}

void write_objects(const h5::File& file, const fs::path& path, const std::string& final_name,
                   const Contents& contents, const WriteOptions& options, WriteState& state) {
  test_kill_point("created", final_name);
  file.write_attribute(kAttrFormat, std::string(kFormatName));
  file.write_attribute(kAttrFormatVersion, kFormatVersion);

  // Groups first, parents before children (std::map order puts "/a" before "/a/b"); parents
  // without attributes of their own are created on the way.
  h5::PropList lcpl = h5::PropList::create(H5P_LINK_CREATE);
  PFT_H5_CHECK(H5Pset_create_intermediate_group(lcpl.id(), 1));
  for (const auto& [gpath, attrs] : contents.groups()) {
    if (gpath == "/") {
      write_attrs(file, attrs);
      continue;
    }
    const h5::Group g(
        PFT_H5_CHECK_AT(H5Gcreate2(file.id(), gpath.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT),
                        fmt::format("{} group {}", path.string(), gpath)));
    write_attrs(g, attrs);
  }
  const size_t n = contents.datasets().size();
  std::vector<std::string> sums(n);
  for (size_t i = 0; i < n; ++i) {
    sums[i] = write_dataset(file, contents.datasets()[i], options, state);
    if (i + 1 == (n + 1) / 2) {
      test_kill_point("data", final_name);
      test_delay_point("ckpt_write", 0);  // core/test_hooks.h: rank 0 writes checkpoints
    }
  }
  Contents manifest;
  const std::string json = manifest_json(contents, sums);
  write_dataset(file, manifest.add_text(kManifest, json), options, state);
  file.write_attribute(kAttrComplete, int64_t{1});
  // Flush here, inside the caller's try: the close that follows then has nothing left to write.
  PFT_H5_CHECK_AT(H5Fflush(file.id(), H5F_SCOPE_LOCAL), path.string());
}

}  // namespace

void fsync_directory(const fs::path& dir) { fsync_path(dir, /*directory=*/true); }

WriteStats write_checkpoint(const fs::path& final_path, const Contents& contents,
                            const WriteOptions& options) {
  const Clock::time_point t0 = Clock::now();
  const fs::path dir = final_path.parent_path().empty() ? fs::path(".") : final_path.parent_path();
  const fs::path tmp = dir / fmt::format(".{}.tmp-{}", final_path.filename().string(),
                                         static_cast<long>(::getpid()));
  // H5Fcreate(TRUNC) follows links: a leftover or planted one at this name is removed, not
  // written through (Note [files of the checkpoints directory], ckpt/run_checkpoints.h).
  ::unlink(tmp.c_str());
  WriteState state;
  try {
    write_file(tmp, final_path.filename().string(), contents, options, state);
    if (options.seal) h5::seal_file(tmp);  // after HDF5 closed it, before fsync and rename
    fsync_path(tmp, /*directory=*/false);
    if (::rename(tmp.c_str(), final_path.c_str()) != 0)
      throw RuntimeFailure(fmt::format("checkpoint: cannot rename '{}' to '{}': {}", tmp.string(),
                                       final_path.string(), errno_text()));
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw RuntimeFailure(
        fmt::format("checkpoint: writing '{}' failed (the previous checkpoints "
                    "are untouched): {}",
                    final_path.string(), e.what()));
  }
  fsync_directory(dir);
  test_kill_point("renamed", final_path.filename().string());
  WriteStats stats;
  stats.data_bytes = contents.total_bytes();
  stats.stream_buffer_bytes = state.stream_buffer.size();
  std::error_code ec;
  stats.file_bytes = fs::file_size(final_path, ec);
  stats.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return stats;
}

}  // namespace pft::ckpt
