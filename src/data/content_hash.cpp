// XXH3-128 content hashes (contract: data/content_hash.h).
#include "data/content_hash.h"

#include <xxhash.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

enum Tag : uint8_t { kText = 1, kInteger = 2, kReal = 3, kFile = 4 };

constexpr size_t kFileBlockBytes = size_t{1} << 20;

void put_le64(uint8_t* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

std::string ContentHash::hex() const { return fmt::format("{:016x}{:016x}", high, low); }

bool ContentHash::from_hex(std::string_view text, ContentHash* out) {
  if (text.size() != 32) return false;
  uint64_t words[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    const char c = text[i];
    uint64_t d = 0;
    if (c >= '0' && c <= '9')
      d = static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = static_cast<uint64_t>(c - 'a' + 10);
    else
      return false;
    words[i / 16] = words[i / 16] << 4 | d;
  }
  out->high = words[0];
  out->low = words[1];
  return true;
}

struct Hasher::State {
  XXH3_state_t* xxh = nullptr;
};

Hasher::Hasher() : state_(std::make_unique<State>()) {
  state_->xxh = XXH3_createState();
  PFT_ASSERT(state_->xxh != nullptr, "XXH3_createState failed (out of memory)");
  XXH3_128bits_reset(state_->xxh);
}

Hasher::~Hasher() {
  if (state_ && state_->xxh) XXH3_freeState(state_->xxh);
}

void Hasher::raw(const void* data, size_t size) {
  if (size > 0) XXH3_128bits_update(state_->xxh, data, size);
}

Hasher& Hasher::text(std::string_view s) {
  uint8_t head[9];
  head[0] = kText;
  put_le64(head + 1, s.size());
  raw(head, sizeof(head));
  raw(s.data(), s.size());
  return *this;
}

Hasher& Hasher::integer(int64_t v) {
  uint8_t b[9];
  b[0] = kInteger;
  put_le64(b + 1, static_cast<uint64_t>(v));
  raw(b, sizeof(b));
  return *this;
}

Hasher& Hasher::real(double v) {
  uint8_t b[9];
  b[0] = kReal;
  put_le64(b + 1, std::bit_cast<uint64_t>(v));
  raw(b, sizeof(b));
  return *this;
}

Hasher& Hasher::file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError(
        fmt::format("{}: cannot read this file to hash it (it is an input of the "
                    "prepared token store); check that it exists and is readable",
                    path.string()));
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  uint8_t head[9];
  head[0] = kFile;
  put_le64(head + 1, ec ? 0 : static_cast<uint64_t>(size));
  raw(head, sizeof(head));
  std::vector<char> buf(kFileBlockBytes);
  uint64_t total = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    raw(buf.data(), n);
    total += n;
  }
  if (in.bad()) throw InputError(fmt::format("{}: read error while hashing it", path.string()));
  integer(static_cast<int64_t>(total));
  return *this;
}

ContentHash Hasher::finish() const {
  const XXH128_hash_t h = XXH3_128bits_digest(state_->xxh);
  return ContentHash{h.high64, h.low64};
}

}  // namespace pft
