// Packing: rendered documents into fixed-length rows for next-token training.
//
// Note [packed row layout]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// A document of L tokens t[0..L) with per-token loss mask m[0..L) (data/example.h) takes L - 1
// positions of a row of T = data.seq_len positions: at its j-th position (j = 0 .. L-2)
//
//   input_ids = t[j]    targets = t[j+1]    loss_mask = m[j+1]    position_ids = j
//   doc_ids   = index of the document in the row (0, 1, 2, ...)   task_ids = its task
//
// so the mask is already shifted onto targets: a target counts when the token it predicts is
// trained. The last token is only ever a target, so no position is spent on a token that
// predicts nothing. Documents of fewer than 2 tokens have nothing to train and take no
// position; a document longer than T + 1 tokens keeps its last T + 1 (the answer is at the end;
// rendering at data.seq_len never produces one). After a row's documents, the rest of the row is
// one pad run: its own document (next doc id, positions 0, 1, ...), input and target the pad
// token, loss_mask 0, task id -1. Pads thus never attend or are attended across documents, and
// never count in the loss.
//
// Note [prefix packing]
// ~~~~~~~~~~~~~~~~~~~~~
// plan_rows() takes documents from the front of a stream and stops at the first one that does
// not fit: the documents packed are always a prefix of the stream, so a consumer's whole state is
// "how many documents were taken" (data/sampler.h) and nothing is ever skipped or reordered
// across micro-batches. Within the prefix, documents are placed first-fit in stream order; when
// one fits no row, the whole prefix including it is repacked first-fit-decreasing (longest
// first, ties by stream order) and kept if that fits. FFD on the prefix wastes far less than
// stopping at the first first-fit failure. Everything is deterministic: the same lengths give
// the same rows on every rank and platform. Within a row, documents appear in stream order.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace pft {

// Which example a packed document came from.
struct DocRef {
  int32_t task = 0;         // index in data.tasks
  int32_t template_id = 0;  // index in the task's templates
  int64_t example = 0;      // index in the split
  int64_t sample = 0;       // global sample index in the task's stream (data/sampler.h)
  bool operator==(const DocRef&) const = default;
};

// Row positions a document of `length` tokens takes in rows of `seq_len` (Note [packed row
// layout]): clamp(length - 1, 0, seq_len).
int64_t packed_span(int64_t length, int64_t seq_len);

struct PackPlan {
  int64_t consumed = 0;         // documents taken from the front of the stream
  std::vector<int32_t> row_of;  // (consumed) row of each document; -1 = no position (< 2 tokens)
  int64_t used_positions = 0;   // positions holding documents (the rest is padding)
};

// Plans `rows` rows of `seq_len` positions from a document stream (Note [prefix packing]);
// `length(i)` gives the token count of the stream's i-th next document; `available` >= 0 bounds
// a finite stream (-1: endless). Takes at least one document when one is available (any
// document fits an empty row) and at most rows * seq_len.
PackPlan plan_rows(int64_t rows, int64_t seq_len, const std::function<int64_t(int64_t)>& length,
                   int64_t available = -1);

// One micro-batch of packed rows in the layout of model/batch.h: each vector is (rows, seq_len)
// row-major, in the dtype the Batch tensor has. Reused from step to step: clear() keeps the
// storage, so filling allocates nothing once warm.
struct PackedRows {
  int64_t rows = 0, seq_len = 0;
  std::vector<int64_t> input_ids, targets, position_ids, task_ids;
  std::vector<float> loss_mask;
  std::vector<int32_t> doc_ids;
  std::vector<std::vector<DocRef>> docs;  // (rows) documents of each row, in row order
  std::vector<int64_t> fill;              // (rows) positions used by documents
  int64_t target_tokens = 0;              // loss_mask ones
  int64_t pad_positions = 0;              // set by finish()

  // Starts an empty micro-batch of `rows` x `seq_len`.
  void clear(int64_t rows, int64_t seq_len);
  // Appends a document to `row` (Note [packed row layout]). `tokens` and `mask` have equal
  // length; the row must have packed_span() free positions (an internal error otherwise).
  void add_document(int64_t row, std::span<const int32_t> tokens, std::span<const uint8_t> mask,
                    const DocRef& ref);
  // Fills the rest of every row with its pad run.
  void finish(int32_t pad_id);

  double pad_fraction() const {
    return rows * seq_len > 0
               ? static_cast<double>(pad_positions) / static_cast<double>(rows * seq_len)
               : 0.0;
  }
};

// A document held in memory (tests, small tools).
struct Document {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  DocRef ref;
};

// Plans and fills `out` from the front of `docs`; returns how many were consumed.
int64_t pack_documents(std::span<const Document> docs, int64_t rows, int64_t seq_len,
                       int32_t pad_id, PackedRows& out);

}  // namespace pft
