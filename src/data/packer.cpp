// Prefix first-fit / first-fit-decreasing packing and row materialization (contract:
// data/packer.h).
#include "data/packer.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/format.h"

namespace pft {

int64_t packed_span(int64_t length, int64_t seq_len) {
  return std::clamp<int64_t>(length - 1, 0, seq_len);
}

namespace {

// First row with at least `need` free positions, or -1.
int32_t first_fit(const std::vector<int64_t>& free, int64_t need) {
  for (size_t r = 0; r < free.size(); ++r)
    if (free[r] >= need) return static_cast<int32_t>(r);
  return -1;
}

}  // namespace

PackPlan plan_rows(int64_t rows, int64_t seq_len, const std::function<int64_t(int64_t)>& length,
                   int64_t available) {
  PFT_ASSERT(rows >= 1 && seq_len >= 1, "plan_rows needs rows >= 1 and seq_len >= 1");
  PackPlan plan;
  std::vector<int64_t> free(static_cast<size_t>(rows), seq_len);
  std::vector<int64_t> spans;
  std::vector<int64_t> order;
  std::vector<int64_t> ffd_free;
  std::vector<int32_t> ffd_row;
  const int64_t max_docs = available >= 0 ? std::min(available, rows * seq_len) : rows * seq_len;
  for (int64_t i = 0; i < max_docs; ++i) {
    const int64_t span = packed_span(length(i), seq_len);
    spans.push_back(span);
    if (span == 0) {
      plan.row_of.push_back(-1);
      continue;
    }
    const int32_t r = first_fit(free, span);
    if (r >= 0) {
      plan.row_of.push_back(r);
      free[static_cast<size_t>(r)] -= span;
      continue;
    }
    // Repack the prefix [0, i] first-fit-decreasing; keep it if everything fits.
    order.clear();
    for (int64_t j = 0; j <= i; ++j)
      if (spans[static_cast<size_t>(j)] > 0) order.push_back(j);
    std::stable_sort(order.begin(), order.end(), [&spans](int64_t a, int64_t b) {
      return spans[static_cast<size_t>(a)] > spans[static_cast<size_t>(b)];
    });
    ffd_free.assign(static_cast<size_t>(rows), seq_len);
    ffd_row.assign(static_cast<size_t>(i + 1), -1);
    bool fits = true;
    for (int64_t j : order) {
      const int64_t s = spans[static_cast<size_t>(j)];
      const int32_t fr = first_fit(ffd_free, s);
      if (fr < 0) {
        fits = false;
        break;
      }
      ffd_row[static_cast<size_t>(j)] = fr;
      ffd_free[static_cast<size_t>(fr)] -= s;
    }
    if (!fits) break;
    plan.row_of = ffd_row;
    free = ffd_free;
  }
  plan.consumed = static_cast<int64_t>(plan.row_of.size());
  plan.used_positions = rows * seq_len - std::accumulate(free.begin(), free.end(), int64_t{0});
  return plan;
}

void PackedRows::clear(int64_t n_rows, int64_t n_seq) {
  rows = n_rows;
  seq_len = n_seq;
  const auto n = static_cast<size_t>(rows * seq_len);
  input_ids.resize(n);
  targets.resize(n);
  position_ids.resize(n);
  task_ids.resize(n);
  loss_mask.resize(n);
  doc_ids.resize(n);
  docs.resize(static_cast<size_t>(rows));
  for (auto& d : docs) d.clear();
  fill.assign(static_cast<size_t>(rows), 0);
  target_tokens = 0;
  pad_positions = 0;
}

void PackedRows::add_document(int64_t row, std::span<const int32_t> tokens,
                              std::span<const uint8_t> mask, const DocRef& ref) {
  PFT_ASSERT(row >= 0 && row < rows, "add_document: row out of range");
  PFT_ASSERT(tokens.size() == mask.size(), "add_document: tokens and mask differ in length");
  const int64_t span = packed_span(static_cast<int64_t>(tokens.size()), seq_len);
  if (span == 0) return;
  // An over-long document keeps its last seq_len + 1 tokens.
  const size_t skip = tokens.size() - static_cast<size_t>(span + 1);
  int64_t& used = fill[static_cast<size_t>(row)];
  PFT_ASSERT(used + span <= seq_len,
             fmt::format("add_document: {} positions do not fit row {} ({} of {} used)", span, row,
                         used, seq_len));
  const int32_t doc = static_cast<int32_t>(docs[static_cast<size_t>(row)].size());
  const int64_t base = row * seq_len + used;
  for (int64_t j = 0; j < span; ++j) {
    const auto p = static_cast<size_t>(base + j);
    const size_t t = skip + static_cast<size_t>(j);
    input_ids[p] = tokens[t];
    targets[p] = tokens[t + 1];
    const float m = mask[t + 1] ? 1.0f : 0.0f;
    loss_mask[p] = m;
    target_tokens += mask[t + 1] ? 1 : 0;
    position_ids[p] = j;
    doc_ids[p] = doc;
    task_ids[p] = ref.task;
  }
  used += span;
  docs[static_cast<size_t>(row)].push_back(ref);
}

void PackedRows::finish(int32_t pad_id) {
  pad_positions = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t used = fill[static_cast<size_t>(r)];
    const auto doc = static_cast<int32_t>(docs[static_cast<size_t>(r)].size());
    for (int64_t j = used; j < seq_len; ++j) {
      const auto p = static_cast<size_t>(r * seq_len + j);
      input_ids[p] = pad_id;
      targets[p] = pad_id;
      loss_mask[p] = 0.0f;
      position_ids[p] = j - used;
      doc_ids[p] = doc;
      task_ids[p] = -1;
    }
    pad_positions += seq_len - used;
  }
}

int64_t pack_documents(std::span<const Document> docs, int64_t rows, int64_t seq_len,
                       int32_t pad_id, PackedRows& out) {
  const PackPlan plan = plan_rows(
      rows, seq_len,
      [&docs](int64_t i) {
        return static_cast<int64_t>(docs[static_cast<size_t>(i)].tokens.size());
      },
      static_cast<int64_t>(docs.size()));
  const int64_t n = plan.consumed;
  out.clear(rows, seq_len);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = plan.row_of[static_cast<size_t>(i)];
    if (r < 0) continue;
    const Document& d = docs[static_cast<size_t>(i)];
    out.add_document(r, d.tokens, d.mask, d.ref);
  }
  out.finish(pad_id);
  return n;
}

}  // namespace pft
