// Checksums of checkpoint datasets (contract: ckpt/format.h).
#include "ckpt/format.h"

#include <xxhash.h>

#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

// git_commit() is generated at build time (src/ckpt/git_commit.cmake).

uint64_t xxh3_64(std::span<const std::byte> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

std::string checksum_text(uint64_t h) { return fmt::format("xxh3-64:{:016x}", h); }

std::string checksum(std::span<const std::byte> bytes) { return checksum_text(xxh3_64(bytes)); }

Checksummer::Checksummer() : state_(XXH3_createState()) {
  PFT_ASSERT(state_ != nullptr, "XXH3_createState failed");
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}

Checksummer::~Checksummer() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void Checksummer::update(std::span<const std::byte> bytes) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
}

uint64_t Checksummer::digest() const {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_));
}

}  // namespace pft::ckpt
