// Helpers shared by the packer, sampler/loader and token store tests: an in-memory document
// source with deterministic contents, and a hash of packed rows.
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/document_source.h"
#include "data/packer.h"

namespace pft::testing_store {

// Document d (= example * templates + slot) has length min_len + (d * 7919 + salt) % span and
// tokens (d * 31 + j) % 250; its second half is trained.
class MemorySource final : public DocumentSource {
 public:
  MemorySource(int64_t examples, int32_t templates, int64_t min_len, int64_t max_len,
               uint64_t salt = 0)
      : examples_(examples), templates_(templates) {
    for (int64_t d = 0; d < examples * templates; ++d)
      lengths_.push_back(min_len +
                         static_cast<int64_t>((static_cast<uint64_t>(d) * 7919 + salt) %
                                              static_cast<uint64_t>(max_len - min_len + 1)));
  }
  int64_t num_examples() const override { return examples_; }
  int32_t num_templates() const override { return templates_; }
  int32_t template_id(int32_t slot) const override { return 10 + slot; }
  int64_t length(int64_t doc) const override { return lengths_[static_cast<size_t>(doc)]; }
  void read(int64_t doc, std::vector<int32_t>& tokens, std::vector<uint8_t>& mask) override {
    const int64_t n = length(doc);
    tokens.resize(static_cast<size_t>(n));
    mask.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      tokens[static_cast<size_t>(j)] = static_cast<int32_t>((doc * 31 + j) % 250);
      mask[static_cast<size_t>(j)] = j >= n / 2 ? 1 : 0;
    }
    ++reads;
  }
  int64_t reads = 0;

 private:
  int64_t examples_;
  int32_t templates_;
  std::vector<int64_t> lengths_;
};

// A fingerprint of every tensor of a micro-batch.
inline uint64_t rows_hash(const PackedRows& r) {
  XXH64_state_t* s = XXH64_createState();
  XXH64_reset(s, 0);
  const auto add = [s](const auto& v) { XXH64_update(s, v.data(), v.size() * sizeof(v[0])); };
  add(r.input_ids);
  add(r.targets);
  add(r.position_ids);
  add(r.task_ids);
  add(r.loss_mask);
  add(r.doc_ids);
  const uint64_t h = XXH64_digest(s);
  XXH64_freeState(s);
  return h;
}

}  // namespace pft::testing_store
