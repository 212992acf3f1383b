// HDF5, the pft way: one checker macro and RAII handles, for every module that reads or writes
// HDF5 files (the prepared token store in data/, checkpoints in ckpt/).
//
// The checker
// ~~~~~~~~~~~
//   PFT_H5_CHECK(call)               evaluates an HDF5 call returning herr_t / hid_t / htri_t /
//                                    hssize_t; a negative value throws h5::Hdf5Error, otherwise
//                                    the value is returned:
//                                    `hid_t f = PFT_H5_CHECK(H5Fopen(...));`
//   PFT_H5_CHECK_AT(call, where)     the same, naming what was being accessed ("file.h5:/train/
//                                    tokens"): HDF5's own stack often lacks the file name.
// The message of an Hdf5Error names the call, the pft source file:line, the rank and host, `where`,
// and HDF5's error stack (innermost first: "H5Dread(): can't read data; ..."), which is
// captured and then cleared. HDF5's automatic printing of error stacks to stderr is switched
// off the first time any function of this header runs (h5::init()), so every failure is
// reported exactly once, through the exception.
//
// Handles
// ~~~~~~~
// h5::Handle owns one hid_t and closes it (H5Fclose, H5Gclose, H5Dclose, H5Sclose, H5Aclose,
// H5Pclose, H5Tclose, chosen by H5Iget_type) when destroyed; it is movable, not copyable. The
// typed wrappers below (File, Group, Dataset, Dataspace, Attribute, PropList) add the operations
// pft needs; `id()` gives the raw hid_t for anything else (pass it to PFT_H5_CHECK'd calls).
// Attributes can be written and read on any object (a File means its root group).
//
// Threads: the system HDF5 (Debian's libhdf5-103) is built thread-safe (H5_HAVE_THREADSAFE:
// one global lock inside the library, error stacks per thread), so handles may be used from
// several threads, e.g. a checkpoint writer thread next to the data loader; calls are
// serialised by the library. With a build that is not thread-safe, callers must serialise every
// HDF5 call themselves.
//
// Errors: every failed HDF5 call throws h5::Hdf5Error (a RuntimeFailure, exit 3). Callers that
// know a failure means bad input (a user's file that is not HDF5, a missing dataset) catch it
// and throw InputError naming the file and what to do.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace pft::h5 {

// A failed HDF5 call. `stack()` is HDF5's error stack as text (may be empty).
class Hdf5Error : public RuntimeFailure {
 public:
  Hdf5Error(const std::string& message, std::string stack)
      : RuntimeFailure(message), stack_(std::move(stack)) {}
  const std::string& stack() const { return stack_; }

 private:
  std::string stack_;
};

// Switches off HDF5's automatic error printing (idempotent, thread-safe). Called by the checker
// and by every handle constructor; call it yourself before raw HDF5 calls that may fail
// expectedly (H5Fis_hdf5 on arbitrary files).
void init();

// Process-level lifetime for programs (pft's main): call take_over_shutdown() first thing, before
// any other HDF5 call, and shutdown() on the way out. HDF5 otherwise closes the library from an
// atexit handler, which flushes files still open; a file whose H5Fclose failed half way (disk
// full) is left in a state that makes that flush crash the process (SIGSEGV in H5F__close_cb,
// HDF5 1.10) after pft has already reported the error. shutdown() closes the library unless a
// file close failed, in which case it leaves it: the kernel releases the files at exit, and the
// failed file was a temporary that pft removes anyway.
void take_over_shutdown();
void shutdown();

// Throws Hdf5Error for a failed `call` (text of the call) at file:line; `where` names the file
// or object involved (may be empty).
[[noreturn]] void throw_error(const char* call, const char* file, int line, std::string_view where);

template <class T>
T check(T rc, const char* call, const char* file, int line, std::string_view where = {}) {
  if constexpr (std::is_enum_v<T>) {  // H5T_class_t, H5D_layout_t, ...: negative = error
    if (static_cast<long long>(rc) < 0) throw_error(call, file, line, where);
  } else {
    static_assert(std::is_signed_v<T>, "PFT_H5_CHECK takes calls returning a signed HDF5 status");
    if (rc < 0) throw_error(call, file, line, where);
  }
  return rc;
}

}  // namespace pft::h5

#define PFT_H5_CHECK(call) ::pft::h5::check((::pft::h5::init(), (call)), #call, __FILE__, __LINE__)
#define PFT_H5_CHECK_AT(call, where) \
  ::pft::h5::check((::pft::h5::init(), (call)), #call, __FILE__, __LINE__, (where))

namespace pft::h5 {

// The HDF5 memory type of a C++ scalar (int8..int64, uint8..uint64, float, double).
template <class T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, int8_t>)
    return H5T_NATIVE_INT8;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return H5T_NATIVE_UINT8;
  else if constexpr (std::is_same_v<T, int16_t>)
    return H5T_NATIVE_INT16;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return H5T_NATIVE_UINT16;
  else if constexpr (std::is_same_v<T, int32_t>)
    return H5T_NATIVE_INT32;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return H5T_NATIVE_UINT32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return H5T_NATIVE_INT64;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return H5T_NATIVE_UINT64;
  else if constexpr (std::is_same_v<T, float>)
    return H5T_NATIVE_FLOAT;
  else if constexpr (std::is_same_v<T, double>)
    return H5T_NATIVE_DOUBLE;
  else
    static_assert(sizeof(T) == 0, "no HDF5 native type for this C++ type");
}

// Owns one HDF5 identifier of any kind. Non-copyable; moving transfers ownership.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }

  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Closes now (errors while closing are ignored: destructors must not throw; use File::close to
  // see them).
  void reset() noexcept;

 protected:
  hid_t id_ = H5I_INVALID_HID;
};

class PropList : public Handle {
 public:
  using Handle::Handle;
  // H5Pcreate(cls), e.g. PropList::create(H5P_DATASET_CREATE).
  static PropList create(hid_t cls);
};

class Dataspace : public Handle {
 public:
  using Handle::Handle;
  static Dataspace scalar();
  // Simple dataspace of `dims`; `max_dims` empty = fixed size (H5S_UNLIMITED allowed in it).
  static Dataspace simple(std::span<const hsize_t> dims, std::span<const hsize_t> max_dims = {});
  std::vector<hsize_t> dims() const;
  // Selects the 1-D hyperslab [offset, offset + count) (replacing any selection).
  void select_1d(hsize_t offset, hsize_t count);
};

class Attribute : public Handle {
 public:
  using Handle::Handle;
};

// Operations shared by files (their root group), groups and datasets: attributes.
class Object : public Handle {
 public:
  using Handle::Handle;

  bool has_attribute(const std::string& name) const;
  void write_attribute(const std::string& name, const std::string& value) const;
  void write_attribute(const std::string& name, int64_t value) const;
  void write_attribute(const std::string& name, double value) const;
  std::string read_string_attribute(const std::string& name) const;
  int64_t read_int_attribute(const std::string& name) const;
  double read_double_attribute(const std::string& name) const;

  // Name of this object's file, "<file>:<object path>", for messages.
  std::string describe() const;
};

// Reads the raw object header of `obj` (every chunk) and checks each attribute message before
// HDF5 1.10 decodes it, which it does trusting the sizes inside (Note [attribute messages] in
// core/hdf5_attr_check.cpp): throws Hdf5Error naming the object for a message whose name,
// datatype, dataspace or value does not fit in it (in the object header or, for dense storage,
// in the attribute heap), and for shared attribute messages, shared datatypes or dataspaces,
// filtered heaps and huge heap objects (pft never writes those). Files opened
// read-write (pft's own, being written) are not checked. has_attribute and the attribute readers
// call it; call it yourself before raw H5A calls (H5Aiterate2, H5Aopen).
void check_attribute_messages(const Object& obj);

class Dataset;
class Group;

// A file or a group: a place that holds groups and datasets.
class Location : public Object {
 public:
  using Object::Object;
  bool has(const std::string& path) const;  // a link of that name exists (H5Lexists)
  Group create_group(const std::string& name) const;
  Group open_group(const std::string& name) const;
  // Throws Hdf5Error for a dataset whose storage holds fewer bytes than its shape and type need
  // (a corrupt file HDF5 1.10 would read past a buffer for: Note [dataset extents] in hdf5.cpp).
  Dataset open_dataset(const std::string& name, hid_t dapl = H5P_DEFAULT) const;
};

class Group : public Location {
 public:
  using Location::Location;
};

struct FileOptions {
  // HDF5's file locks fail on some parallel filesystems and serve no purpose for files pft writes
  // once (then renames into place) and only reads afterwards; off by default.
  bool file_locking = false;
  // Reserve kSealBytes of HDF5 user block at the start of the file for seal_file() (create only).
  bool seal = false;
};

// Whole-file seal (Note [file seal] in hdf5.cpp). pft's own files (checkpoints, token stores)
// start with a 4 KiB HDF5 user block that holds one text line,
//   "pft-hdf5-seal v1 xxh3-64:<16 hex> bytes:<n>\n" (zero padded),
// the XXH3-64 and length of every byte after the user block. HDF5, h5py and older pft skip the
// user block and read the file as usual. Readers call check_seal() BEFORE HDF5 opens the file:
// HDF5 1.10 can crash on damaged metadata, so a damaged sealed file must never reach it.
// 4 KiB, not HDF5's minimum of 512: a user block must be at least the file's object alignment,
// and checkpoints align their large datasets to 4 KiB (ckpt/writer.h).
inline constexpr hsize_t kSealBytes = 4096;

// Fills the user block of `path`, created with FileOptions::seal (or a fcpl with
// H5Pset_userblock(kSealBytes)) and already closed through HDF5: hashes the rest of the file in
// one streaming pass and writes the header with pwrite (no fsync: the caller fsyncs and
// renames). Throws RuntimeFailure on I/O errors or a file without an empty user block.
void seal_file(const std::filesystem::path& path);

struct SealCheck {
  bool sealed = false;  // the file carries a seal, and it matches
  std::string damage;   // non-empty: the file is damaged (reason, without the file name)
};
// Checks the seal of `path` without HDF5. A file that starts with HDF5's signature (no user
// block: an older pft's, or not pft's) is `sealed = false` with no damage: read it as before.
// A file whose first bytes are a seal header is hashed and compared; a file with HDF5's
// signature at offset kSealBytes but no readable seal header (pft writes no other user block) is
// damaged. Anything else (not HDF5 at all, missing, unreadable) is left to the caller's checks.
SealCheck check_seal(const std::filesystem::path& path);

class File : public Location {
 public:
  using Location::Location;
  // Creates (truncating) `path` for writing.
  static File create(const std::filesystem::path& path, const FileOptions& options = {});
  // Opens an existing file read-only, or read-write.
  static File open(const std::filesystem::path& path, bool read_write = false,
                   const FileOptions& options = {});
  // Flushes and closes, reporting errors (the destructor ignores them).
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class Dataset : public Object {
 public:
  using Object::Object;

  // A 1-D dataset of T: fixed size `size` (contiguous) when `chunk` is 0, else chunked with
  // `chunk` elements per chunk and extensible (maximum size unlimited).
  template <class T>
  static Dataset create_1d(const Location& loc, const std::string& name, hsize_t size,
                           hsize_t chunk = 0) {
    return create_1d_typed(loc, name, native_type<T>(), size, chunk);
  }
  static Dataset create_1d_typed(const Location& loc, const std::string& name, hid_t type,
                                 hsize_t size, hsize_t chunk);

  Dataspace space() const;
  std::vector<hsize_t> dims() const;
  hsize_t size_1d() const;        // elements of a 1-D dataset
  hsize_t chunk_size_1d() const;  // elements per chunk; 0 = not chunked

  // 1-D I/O of elements [offset, offset + count).
  template <class T>
  void read_1d(hsize_t offset, std::span<T> out) const {
    read_1d_typed(offset, out.size(), native_type<T>(), out.data());
  }
  template <class T>
  void write_1d(hsize_t offset, std::span<const T> in) const {
    write_1d_typed(offset, in.size(), native_type<T>(), in.data());
  }
  // Grows an extensible 1-D dataset by `in.size()` elements and writes them at the end.
  template <class T>
  void append_1d(std::span<const T> in) {
    append_1d_typed(in.size(), native_type<T>(), in.data());
  }
  template <class T>
  std::vector<T> read_all_1d() const {
    std::vector<T> v(size_1d());
    read_1d<T>(0, v);
    return v;
  }

  void read_1d_typed(hsize_t offset, hsize_t count, hid_t mem_type, void* out) const;
  void write_1d_typed(hsize_t offset, hsize_t count, hid_t mem_type, const void* in) const;
  void append_1d_typed(hsize_t count, hid_t mem_type, const void* in);
};

// A dataset access property list with HDF5's own chunk cache set to `bytes` (0 = none: for
// readers that cache whole chunks themselves).
PropList chunk_cache_access(size_t bytes);

}  // namespace pft::h5
