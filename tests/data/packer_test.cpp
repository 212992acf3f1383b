// Packing (data/packer.h): row layout (shifted masks, positions, document ids, pad runs), prefix
// first-fit / FFD plans, padding numbers, determinism.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "data/packer.h"
#include "store_test_util.h"

namespace pft {
namespace {

Document doc(std::vector<int32_t> tokens, std::vector<uint8_t> mask, int32_t task = 0,
             int64_t example = 0) {
  Document d;
  d.tokens = std::move(tokens);
  d.mask = std::move(mask);
  d.ref = DocRef{task, 0, example, example};
  return d;
}

constexpr int32_t kPad = 99;

TEST(Packer, OneDocumentLayout) {
  const std::vector<Document> docs = {doc({10, 11, 12, 13}, {0, 0, 1, 1}, 3)};
  PackedRows r;
  EXPECT_EQ(pack_documents(docs, 1, 6, kPad, r), 1);
  EXPECT_EQ(r.input_ids, (std::vector<int64_t>{10, 11, 12, kPad, kPad, kPad}));
  EXPECT_EQ(r.targets, (std::vector<int64_t>{11, 12, 13, kPad, kPad, kPad}));
  // The mask is on targets: 12 and 13 are trained, so positions 1 and 2 count.
  EXPECT_EQ(r.loss_mask, (std::vector<float>{0, 1, 1, 0, 0, 0}));
  EXPECT_EQ(r.position_ids, (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(r.doc_ids, (std::vector<int32_t>{0, 0, 0, 1, 1, 1}));  // the pad run is a document
  EXPECT_EQ(r.task_ids, (std::vector<int64_t>{3, 3, 3, -1, -1, -1}));
  EXPECT_EQ(r.target_tokens, 2);
  EXPECT_EQ(r.pad_positions, 3);
  EXPECT_DOUBLE_EQ(r.pad_fraction(), 0.5);
  ASSERT_EQ(r.docs.size(), 1u);
  EXPECT_EQ(r.docs[0], (std::vector<DocRef>{docs[0].ref}));
}

TEST(Packer, DocumentBoundariesNeverLeak) {
  // Two documents in one row, exactly full: no pad run.
  const std::vector<Document> docs = {doc({1, 2, 3}, {1, 1, 1}, 0, 0),
                                      doc({4, 5, 6, 7}, {0, 1, 0, 1}, 1, 1)};
  PackedRows r;
  EXPECT_EQ(pack_documents(docs, 1, 5, kPad, r), 2);
  EXPECT_EQ(r.input_ids, (std::vector<int64_t>{1, 2, 4, 5, 6}));
  EXPECT_EQ(r.targets, (std::vector<int64_t>{2, 3, 5, 6, 7}));  // 3 never predicts 4
  EXPECT_EQ(r.loss_mask, (std::vector<float>{1, 1, 1, 0, 1}));
  EXPECT_EQ(r.position_ids, (std::vector<int64_t>{0, 1, 0, 1, 2}));
  EXPECT_EQ(r.doc_ids, (std::vector<int32_t>{0, 0, 1, 1, 1}));
  EXPECT_EQ(r.task_ids, (std::vector<int64_t>{0, 0, 1, 1, 1}));
  EXPECT_EQ(r.pad_positions, 0);
}

TEST(Packer, RandomDocumentsKeepEveryInvariant) {
  std::mt19937_64 g(7);
  std::vector<Document> docs;
  for (int i = 0; i < 200; ++i) {
    const int n = 1 + static_cast<int>(g() % 40);
    Document d;
    for (int j = 0; j < n; ++j) {
      d.tokens.push_back(static_cast<int32_t>(g() % 90));
      d.mask.push_back(static_cast<uint8_t>(g() % 2));
    }
    d.ref = DocRef{static_cast<int32_t>(i % 3), 0, i, i};
    docs.push_back(std::move(d));
  }
  const int64_t rows = 4, T = 64;
  size_t start = 0;
  while (start < docs.size()) {
    PackedRows r;
    const int64_t n = pack_documents(std::span(docs).subspan(start), rows, T, kPad, r);
    ASSERT_GT(n, 0);
    int64_t positions = 0, targets = 0;
    for (int64_t i = 0; i < n; ++i) {
      const Document& d = docs[start + static_cast<size_t>(i)];
      positions += packed_span(static_cast<int64_t>(d.tokens.size()), T);
      for (size_t j = 1; j < d.tokens.size(); ++j) targets += d.mask[j];
    }
    EXPECT_EQ(rows * T - r.pad_positions, positions);
    EXPECT_EQ(r.target_tokens, targets);
    for (int64_t row = 0; row < rows; ++row) {
      // Documents of a row: reconstruct each from its positions and compare with the source.
      size_t k = 0;
      int64_t p = row * T;
      for (const DocRef& ref : r.docs[static_cast<size_t>(row)]) {
        const Document& d = docs[static_cast<size_t>(ref.example)];
        const int64_t span = packed_span(static_cast<int64_t>(d.tokens.size()), T);
        for (int64_t j = 0; j < span; ++j, ++p) {
          const auto q = static_cast<size_t>(p);
          ASSERT_EQ(r.doc_ids[q], static_cast<int32_t>(k));
          ASSERT_EQ(r.position_ids[q], j);
          ASSERT_EQ(r.input_ids[q], d.tokens[static_cast<size_t>(j)]);
          ASSERT_EQ(r.targets[q], d.tokens[static_cast<size_t>(j) + 1]);
          ASSERT_EQ(r.loss_mask[q], d.mask[static_cast<size_t>(j) + 1]);
          ASSERT_EQ(r.task_ids[q], ref.task);
        }
        ++k;
      }
      // The rest is one pad run with its own doc id, positions from 0, no loss.
      for (int64_t j = 0; p < (row + 1) * T; ++p, ++j) {
        const auto q = static_cast<size_t>(p);
        ASSERT_EQ(r.doc_ids[q], static_cast<int32_t>(k));
        ASSERT_EQ(r.position_ids[q], j);
        ASSERT_EQ(r.loss_mask[q], 0.0f);
        ASSERT_EQ(r.task_ids[q], -1);
        ASSERT_EQ(r.input_ids[q], kPad);
      }
    }
    // Every consumed document with something to train is in exactly one row.
    int64_t placed = 0;
    for (const auto& row_docs : r.docs) placed += static_cast<int64_t>(row_docs.size());
    int64_t trainable = 0;
    for (int64_t i = 0; i < n; ++i)
      trainable += docs[start + static_cast<size_t>(i)].tokens.size() >= 2;
    EXPECT_EQ(placed, trainable);
    start += static_cast<size_t>(n);
  }
}

TEST(Packer, PrefixIsRepackedFirstFitDecreasing) {
  // Spans 3, 4, 6, 7 into 2 rows of 10: first-fit places 3, 4 in row 0 and 6 in row 1, then 7
  // fits nowhere; FFD on the prefix (7+3 | 6+4) fits all four with no padding.
  const std::vector<int64_t> lengths = {4, 5, 7, 8, 2};
  const PackPlan plan = plan_rows(
      2, 10, [&](int64_t i) { return lengths[static_cast<size_t>(i)]; },
      static_cast<int64_t>(lengths.size()));
  EXPECT_EQ(plan.consumed, 4);  // the fifth (span 1) fits nowhere: the prefix ends
  EXPECT_EQ(plan.used_positions, 20);
  EXPECT_EQ(plan.row_of, (std::vector<int32_t>{0, 1, 1, 0}));
}

TEST(Packer, StopsAtFirstDocumentThatFitsNowhereEvenAfterRepacking) {
  // 9 then 9 into 2 rows of 10 (spans 8, 8): the third (span 5) fits nowhere even after FFD;
  // the fourth (span 1) would fit but the prefix must stay a prefix.
  const std::vector<int64_t> lengths = {9, 9, 6, 2};
  const PackPlan plan =
      plan_rows(2, 10, [&](int64_t i) { return lengths[static_cast<size_t>(i)]; });
  EXPECT_EQ(plan.consumed, 2);
  EXPECT_EQ(plan.used_positions, 16);
}

TEST(Packer, ShortAndOverlongDocuments) {
  // A 1-token document has no target: consumed, no position. A document longer than T + 1 keeps
  // its last T + 1 tokens (the answer end).
  const std::vector<Document> docs = {doc({5}, {1}),
                                      doc({1, 2, 3, 4, 5, 6, 7}, {0, 0, 0, 0, 1, 1, 1})};
  PackedRows r;
  EXPECT_EQ(pack_documents(docs, 1, 4, kPad, r), 2);
  EXPECT_EQ(r.input_ids, (std::vector<int64_t>{3, 4, 5, 6}));
  EXPECT_EQ(r.targets, (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(r.loss_mask, (std::vector<float>{0, 1, 1, 1}));
  EXPECT_EQ(r.docs[0].size(), 1u);
}

TEST(Packer, WasteOnUniformLengths) {
  // Documents of 33 tokens (span 32) fill rows of 64 exactly; of 34 tokens (span 33) one per
  // row: 31 pad positions of 64.
  for (const auto& [len, pad] : {std::pair<int64_t, double>{33, 0.0}, {34, 31.0 / 64}}) {
    std::vector<Document> docs(20, doc(std::vector<int32_t>(static_cast<size_t>(len), 1),
                                       std::vector<uint8_t>(static_cast<size_t>(len), 1)));
    PackedRows r;
    const int64_t n = pack_documents(docs, 4, 64, kPad, r);
    EXPECT_EQ(n, pad == 0.0 ? 8 : 4);
    EXPECT_DOUBLE_EQ(r.pad_fraction(), pad);
  }
}

TEST(Packer, Deterministic) {
  testing_store::MemorySource src(300, 1, 2, 60);
  std::vector<Document> docs(300);
  for (int64_t i = 0; i < 300; ++i)
    src.read(i, docs[static_cast<size_t>(i)].tokens, docs[static_cast<size_t>(i)].mask);
  PackedRows a, b;
  const int64_t na = pack_documents(docs, 8, 128, kPad, a);
  const int64_t nb = pack_documents(docs, 8, 128, kPad, b);
  EXPECT_EQ(na, nb);
  EXPECT_EQ(testing_store::rows_hash(a), testing_store::rows_hash(b));
  // Reusing the same PackedRows gives the same bytes (clear() resets everything).
  pack_documents(std::span(docs).subspan(5), 8, 128, kPad, a);
  pack_documents(docs, 8, 128, kPad, a);
  EXPECT_EQ(testing_store::rows_hash(a), testing_store::rows_hash(b));
  // Waste of FFD-on-prefix on lengths uniform in [2, 60] at T = 128: a few percent.
  EXPECT_LT(a.pad_fraction(), 0.08);
}

}  // namespace
}  // namespace pft
