// Shared by the libFuzzer targets of tests/fuzz/ (tests/fuzz/README.md).
//
// Every target feeds its input to one of pft's parsers of untrusted input and asserts only the
// parser's contract: it either succeeds or throws pft::Error (InputError, or an Hdf5Error for a
// file HDF5 cannot read) with a non-empty message. Anything else is a finding that libFuzzer
// reports: a crash or sanitizer report, an exception of another type (it escapes
// LLVMFuzzerTestOneInput and aborts), a hang (-timeout) or unbounded memory (-rss_limit_mb,
// -malloc_limit_mb).
//
// Parsers that take a path get the input written to a file in a private folder under /dev/shm
// (FuzzDir), made once per process and removed at exit.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace pft::fuzz {

// Runs `f`; returns true when it succeeded, false when it threw pft::Error with a message.
// Any other exception propagates (libFuzzer reports it as a crash); an empty message aborts.
template <class F>
bool expect_pft_error(F&& f) {
  try {
    f();
    return true;
  } catch (const pft::Error& e) {
    if (std::string_view(e.what()).empty()) {
      std::fprintf(stderr, "pft::Error with an empty message\n");
      std::abort();
    }
    return false;
  }
}

// The input split at each occurrence of `sep` (a multi-file input: "part0<sep>part1...").
inline std::vector<std::string> split_input(std::string_view data, std::string_view sep,
                                            size_t max_parts) {
  std::vector<std::string> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = data.find(sep);
    if (at == std::string_view::npos) break;
    parts.emplace_back(data.substr(0, at));
    data.remove_prefix(at + sep.size());
  }
  parts.emplace_back(data);
  return parts;
}

// The separator of multi-file inputs (and the seed corpora that use it).
inline constexpr std::string_view kPartSeparator = "\n%%%%\n";

// A private folder in /dev/shm ($PFT_FUZZ_TMP when set, as tests/fuzz/run.sh sets it), removed
// when the process exits normally.
class FuzzDir {
 public:
  static FuzzDir& get() {
    static FuzzDir dir;
    return dir;
  }
  const std::filesystem::path& path() const { return path_; }

  // Writes `bytes` to a new file <dir>/<name> (the old one is unlinked first, so the new file is
  // a new inode, as a file written by a tool or copied in would be) and returns the path.
  // Note: rewriting the same inode in place would let HDF5 match it to a file it still holds
  // open from an earlier input (it shares open files by device and inode) and read stale state.
  std::filesystem::path write(const std::string& name, std::string_view bytes) const {
    const std::filesystem::path p = path_ / name;
    std::error_code ec;
    std::filesystem::remove(p, ec);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::fprintf(stderr, "fuzz: cannot write %s\n", p.c_str());
      std::abort();
    }
    return p;
  }
  void remove(const std::string& name) const {
    std::error_code ec;
    std::filesystem::remove(path_ / name, ec);
  }

 private:
  FuzzDir() {
    const char* base = std::getenv("PFT_FUZZ_TMP");
    std::filesystem::path root = base && *base ? base : "/dev/shm";
    path_ = root / ("pft-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path_);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(FuzzDir::get().path_, ec);
    });
  }
  std::filesystem::path path_;
};

}  // namespace pft::fuzz
