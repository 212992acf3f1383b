// Where the loader gets rendered documents from: one split of one task, as numbered documents.
//
// A document is one example rendered under one template: tokens plus a per-token loss mask
// (data/example.h). Documents are numbered example-major, then by the split's template slot:
//
//   doc = example * num_templates() + slot,   template_id(slot) = index in the task's templates
//
// The prepared token store (data/token_store.h) is the real implementation; tests use
// in-memory ones. Lengths are cheap (in memory); read() may do I/O.
#pragma once

#include <cstdint>
#include <vector>

namespace pft {

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;

  virtual int64_t num_examples() const = 0;
  virtual int32_t num_templates() const = 0;            // template slots per example, >= 1
  virtual int32_t template_id(int32_t slot) const = 0;  // the task's template index of a slot
  int64_t num_documents() const { return num_examples() * num_templates(); }
  int64_t document(int64_t example, int32_t slot) const { return example * num_templates() + slot; }

  // Tokens in document `doc` (0 <= doc < num_documents()).
  virtual int64_t length(int64_t doc) const = 0;
  // Copies document `doc`'s tokens and per-token loss mask (1 = trained) into the outputs,
  // resizing them to length(doc). Not thread-safe (readers cache).
  virtual void read(int64_t doc, std::vector<int32_t>& tokens, std::vector<uint8_t>& mask) = 0;
};

}  // namespace pft
