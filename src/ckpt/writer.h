// Writing one checkpoint file, atomically: a crash at any point leaves either no file or a
// complete one under the final name, and never touches another file.
//
// Note [atomic save]
// ~~~~~~~~~~~~~~~~~~
//   1. write DIR/.NAME.tmp-<pid> (HDF5, every dataset with its checksum, the manifest, then the
//      root attribute `complete`), close it; fill the 4 KiB HDF5 user block at its start with
//      the whole-file seal (XXH3-64 of every byte after it: Note [file seal], core/hdf5.cpp);
//   2. fsync the temporary file;
//   3. rename it to DIR/NAME (atomic on POSIX filesystems), fsync DIR so the rename is durable.
// The caller then updates checkpoints/latest the same way (ckpt/run_checkpoints.h). A crash in 1-2
// leaves a stray `.NAME.tmp-*` that readers never look at (and the next save's clean-up removes);
// a crash after 3 leaves a complete file that `latest` may not name yet, which auto-resume still
// finds (it scans the directory; `latest` is a hint). A failed write (full disk, I/O error)
// removes the temporary file and throws; the previous checkpoints stay as they were.
//
// HDF5 objects are written in the 1.8 object format (object headers, B-trees and heaps carry
// HDF5's own metadata checksums, so attributes are covered too); large datasets are aligned to
// 4 KiB; data is written in pieces of at most WriteOptions::piece_bytes, so another thread's HDF5
// calls (the data loader's reads: HDF5 holds one global lock per call) wait at most one piece.
// A streamed dataset (ckpt/contents.h) is read from its source a piece at a time into one reused
// buffer, its checksum computed on the way: its checksum attribute is created with a placeholder
// of the same length first and overwritten after the data, so the object header has the same
// attributes, in the same order and of the same sizes, as a dataset written from memory.
//
// Which thread: any, one save at a time per file. Not collective (rank 0 writes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "ckpt/contents.h"

namespace pft::ckpt {

enum class Compression { kNone, kGzip };

// "none" | "gzip"; throws InputError naming checkpoint.compression otherwise.
Compression parse_compression(const std::string& name);

struct WriteOptions {
  Compression compression = Compression::kNone;  // gzip: byte shuffle + deflate level 4, chunked
  bool file_locking = false;                     // HDF5 file locks (checkpoint.file_locking)
  size_t piece_bytes = size_t{64} << 20;         // largest single H5Dwrite
  // Streamed datasets (ckpt/contents.h) are read through one buffer of about this many bytes
  // (at least one row of the first dimension; with gzip whole 1 MiB chunks, so that no chunk is
  // compressed twice): the most of their data the writer holds at once.
  size_t stream_piece_bytes = size_t{4} << 20;
  // The whole-file seal in the HDF5 user block (Note [file seal], core/hdf5.cpp). false writes
  // the layout of pft before the seal: for benchmarks and tests of the unsealed path only.
  bool seal = true;
};

struct WriteStats {
  uint64_t data_bytes = 0;  // dataset bytes written (uncompressed)
  uint64_t file_bytes = 0;  // size of the file on disk
  double seconds = 0.0;     // wall time of the whole save (write, fsync, rename)
  uint64_t stream_buffer_bytes = 0;  // the buffer streamed datasets were read through (0: none)
};

// Writes `contents` to `final_path` as Note [atomic save] describes. Throws RuntimeFailure naming
// the file on any failure (the temporary file is removed first; `final_path` keeps whatever it
// had).
WriteStats write_checkpoint(const std::filesystem::path& final_path, const Contents& contents,
                            const WriteOptions& options = {});

// fsyncs a directory (after a rename inside it). Throws RuntimeFailure naming it.
void fsync_directory(const std::filesystem::path& dir);

// Test hook for the crash tests: when the environment variable PFT_TEST_CKPT_KILL_AT is `point`,
// or `point:FILE` with FILE the checkpoint's file name (step_00000006.h5), the process kills
// itself with SIGKILL right here. Points: "created" (temporary file created), "data" (half of the
// datasets written), "closed" (temporary file closed, not yet synced), "renamed" (final name in
// place, `latest` not updated), "latest" (`latest` updated, retention not run).
void test_kill_point(const char* point, const std::string& file_name);

}  // namespace pft::ckpt
