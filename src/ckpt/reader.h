// Reading and verifying one checkpoint file, fail-closed: anything unexpected is an error naming
// the file and, where there is one, the dataset.
//
// Note [hostile files]
// ~~~~~~~~~~~~~~~~~~~~
// A checkpoint may come from elsewhere, so before any dataset is read the whole link tree is
// walked (H5Lvisit, which never crosses soft or external links) and the file is refused when it
// holds
//   - an external link (it would make HDF5 open another file), a soft link or a user-defined link;
//   - a virtual dataset (its data comes from other files) or a dataset with external storage
//     (raw data in a plain file named inside the checkpoint);
//   - a dataset with a filter other than deflate, shuffle or fletcher32 (HDF5 would look for a
//     plugin library to decode it; plugin loading is also switched off: H5PLset_loading_state);
//   - an object that is neither a group nor a dataset.
// No path stored inside a checkpoint (e.g. /trainable's base-model path) is ever opened: such
// paths are only compared with the config's.
//
// Verification
// ~~~~~~~~~~~~
// First, before HDF5 opens the file (HDF5 1.10 can crash on damaged metadata), its whole-file
// seal is checked (Note [file seal], core/hdf5.cpp): a sealed file whose bytes do not match is
// refused as "damaged: whole-file checksum mismatch ..." (or size mismatch, or an unreadable
// seal); a file without a seal (written by pft before the seal) goes on to the checks below.
// Then a file is valid when: it is a non-empty HDF5 file that opens (HDF5 detects truncation and
// metadata checksum errors), passes the checks above, has root attributes format =
// "pft-checkpoint", format_version <= kFormatVersion and complete = 1, its /manifest matches its
// checksum, every manifest entry exists with the listed dtype, shape and byte count, no dataset
// is missing from the manifest, and every dataset's bytes hash to both the manifest's checksum and
// the dataset's own `checksum` attribute.
//
// Not collective; any thread (HDF5 is built thread-safe).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "ckpt/contents.h"

namespace pft::ckpt {

struct ReadOptions {
  bool file_locking = false;  // checkpoint.file_locking
  // Datasets whose bytes are read (and verified); empty = all. The others are listed in the
  // Contents with dtype and shape but empty bytes. Group attributes are always read.
  std::function<bool(const std::string& path)> select;
};

// Reads `path` (see Verification above). Throws InputError "checkpoint FILE: ...: <reason>" when
// the file is invalid, unsafe or unreadable.
Contents read_checkpoint(const std::filesystem::path& path, const ReadOptions& options = {});

// Only /meta's attributes and small text datasets (no tensor bytes are read or verified): for
// listings and retention. Throws like read_checkpoint.
Contents read_checkpoint_meta(const std::filesystem::path& path, const ReadOptions& options = {});

struct Verification {
  bool ok = false;
  std::string reason;    // why not, naming the dataset where there is one
  int64_t datasets = 0;  // datasets checked
  uint64_t bytes = 0;    // bytes hashed
};

// Checks everything read_checkpoint checks, reading every dataset in pieces (constant memory).
// Never throws for a bad file; only for failures outside it (none today).
Verification verify_checkpoint(const std::filesystem::path& path, const ReadOptions& options = {});

}  // namespace pft::ckpt
