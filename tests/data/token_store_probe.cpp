// token_store_probe STORE HASH RANDOM_DOCS: the reader half of the large-store test
// (token_store_big_test.cpp), run in a child process under an address-space limit. Opens the
// store (checking its content hash), reads every document of the train split in order and
// RANDOM_DOCS more at random, checks each against the generator's pattern, and prints one line:
//   ok documents=.. tokens=.. chunk_reads=.. resident_bytes=.. max_rss_kb=..
// Exit 0 when every token matched, 1 on a mismatch, 2 on an exception.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>

#include "data/token_store.h"
#include "token_store_pattern.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: token_store_probe STORE HASH RANDOM_DOCS\n");
    return 2;
  }
  try {
    pft::ContentHash hash;
    if (!pft::ContentHash::from_hex(argv[2], &hash)) {
      std::fprintf(stderr, "bad hash %s\n", argv[2]);
      return 2;
    }
    auto store = pft::TokenStore::open(argv[1], hash);
    pft::StoreSplit& s = store->split(pft::Split::kTrain);
    std::vector<int32_t> tokens;
    std::vector<uint8_t> mask;
    int64_t checked = 0;
    const auto check = [&](int64_t d) {
      s.read(d, tokens, mask);
      if (static_cast<int64_t>(tokens.size()) != pft::testing_store::pattern_length(d))
        return false;
      for (size_t j = 0; j < tokens.size(); ++j) {
        if (tokens[j] != pft::testing_store::pattern_token(d, static_cast<int64_t>(j)) ||
            mask[j] != pft::testing_store::pattern_mask(static_cast<int64_t>(j)))
          return false;
      }
      checked += static_cast<int64_t>(tokens.size());
      return true;
    };
    for (int64_t d = 0; d < s.num_documents(); ++d) {
      if (!check(d)) {
        std::fprintf(stderr, "document %lld differs from the pattern\n", static_cast<long long>(d));
        return 1;
      }
    }
    std::mt19937_64 g(11);
    const int64_t random_docs = std::atoll(argv[3]);
    for (int64_t i = 0; i < random_docs; ++i) {
      const auto d = static_cast<int64_t>(g() % static_cast<uint64_t>(s.num_documents()));
      if (!check(d)) {
        std::fprintf(stderr, "document %lld differs from the pattern\n", static_cast<long long>(d));
        return 1;
      }
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf(
        "ok documents=%lld tokens=%lld checked=%lld chunk_reads=%lld resident_bytes=%lld "
        "max_rss_kb=%ld\n",
        static_cast<long long>(s.num_documents()), static_cast<long long>(s.num_tokens()),
        static_cast<long long>(checked), static_cast<long long>(s.chunk_reads()),
        static_cast<long long>(s.resident_bytes()), ru.ru_maxrss);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "token_store_probe: %s\n", e.what());
    return 2;
  }
}
