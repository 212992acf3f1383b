// Test cases shared by comm_test (CPU tensors) and comm_gpu_test (CUDA tensors): each runs one
// collective on tensors of `device` through any Communicator and checks every element against a
// value computed by hand. Rank r contributes values built from r + 1, so the expected results
// are closed forms: sum = S * k with S = n(n+1)/2, max = n * k, min = k, avg = S/n * k.
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/error.h"

namespace pft::comm_cases {

inline const std::vector<at::ScalarType>& all_dtypes() {
  static const std::vector<at::ScalarType> d = {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf,
                                                at::kInt,   at::kLong,   at::kByte,     at::kChar};
  return d;
}

inline bool floating(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

// (n,) with element i = scale * (i % 5 + 1): small integers, exact in every dtype for n <= 4.
inline at::Tensor pattern(int64_t n, double scale, at::ScalarType dtype, at::Device device) {
  at::Tensor k = at::arange(n, at::kDouble).remainder(5).add(1);
  return k.mul(scale).to(dtype).to(device);
}

inline double expected_reduce(ReduceOp op, int n, double k) {
  const double s = n * (n + 1) / 2.0;
  switch (op) {
    case ReduceOp::kSum:
      return s * k;
    case ReduceOp::kAvg:
      return s / n * k;
    case ReduceOp::kMax:
      return n * k;
    case ReduceOp::kMin:
      return k;
  }
  return 0;
}

// Element-wise equality after converting to float64 on the host.
inline void expect_values(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  const at::Tensor g = got.to(at::kCPU).to(at::kDouble).reshape({-1});
  const at::Tensor w = want.to(at::kCPU).to(at::kDouble).reshape({-1});
  ASSERT_EQ(g.numel(), w.numel()) << what;
  const bool equal = at::equal(g, w);
  EXPECT_TRUE(equal) << what << "\n got: " << g.slice(0, 0, 12) << "\nwant: " << w.slice(0, 0, 12);
}

inline std::string label(at::ScalarType t, ReduceOp op) {
  return dtype_name(t) + "/" + std::string(to_string(op));
}

inline std::vector<ReduceOp> ops_for(at::ScalarType t) {
  std::vector<ReduceOp> ops = {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin};
  if (floating(t)) ops.push_back(ReduceOp::kAvg);
  return ops;
}

// all_reduce and all_reduce_async, every dtype and op; 37 elements (not a multiple of anything).
inline void check_all_reduce(Communicator& c, at::Device device) {
  const int n = c.size();
  const int64_t len = 37;
  for (at::ScalarType t : all_dtypes()) {
    for (ReduceOp op : ops_for(t)) {
      const at::Tensor want = pattern(len, expected_reduce(op, n, 1.0), at::kDouble, at::kCPU);
      at::Tensor x = pattern(len, c.rank() + 1, t, device);
      c.all_reduce(x, op);
      expect_values(x, want, "all_reduce " + label(t, op));

      at::Tensor y = pattern(len, c.rank() + 1, t, device);
      auto work = c.all_reduce_async(y, op);
      work->wait();
      EXPECT_TRUE(work->is_completed());
      work->wait();  // a second wait is a no-op
      expect_values(y, want, "all_reduce_async " + label(t, op));
    }
  }
  // A view into a bigger buffer (the reducer's buckets are views into flat gradients).
  at::Tensor flat = pattern(100, c.rank() + 1, at::kFloat, device);
  c.all_reduce(flat.narrow(0, 10, 50), ReduceOp::kSum);
  at::Tensor want = pattern(100, c.rank() + 1, at::kDouble, at::kCPU);
  want.narrow(0, 10, 50).copy_(
      pattern(100, expected_reduce(ReduceOp::kSum, n, 1), at::kDouble, at::kCPU).narrow(0, 10, 50));
  expect_values(flat, want, "all_reduce of a view");
  // Zero elements.
  at::Tensor empty = at::empty({0}, at::TensorOptions().dtype(at::kFloat).device(device));
  c.all_reduce(empty, ReduceOp::kSum);
}

// Several async all-reduces in flight complete in issue order, and all carry the right values.
inline void check_async_in_order(Communicator& c, at::Device device) {
  const int n = c.size();
  const std::vector<int64_t> sizes = {1 << 20, 7, 1 << 16, 1, 300000, 1 << 18, 33, 1 << 20};
  std::vector<at::Tensor> tensors;
  std::vector<std::unique_ptr<Work>> works;
  for (size_t i = 0; i < sizes.size(); ++i) {
    tensors.push_back(pattern(sizes[i], (c.rank() + 1) * (i % 3 + 1), at::kFloat, device));
    works.push_back(c.all_reduce_async(tensors.back(), ReduceOp::kSum));
  }
  // Whenever a later one is completed, every earlier one is too.
  bool all_done = false;
  while (!all_done) {
    // Ask the latest first: anything completed then must look completed to later questions.
    std::vector<bool> done(works.size());
    for (size_t i = works.size(); i-- > 0;) done[i] = works[i]->is_completed();
    for (size_t j = 0; j < done.size(); ++j)
      for (size_t i = 0; i < j; ++i)
        if (done[j]) {
          ASSERT_TRUE(done[i]) << "work " << j << " completed before work " << i;
        }
    all_done = done.back();
  }
  for (size_t i = works.size(); i-- > 0;) works[i]->wait();  // in reverse: fine
  for (size_t i = 0; i < sizes.size(); ++i) {
    const double scale = expected_reduce(ReduceOp::kSum, n, 1.0) * (i % 3 + 1);
    expect_values(tensors[i], pattern(sizes[i], scale, at::kDouble, at::kCPU),
                  "in-flight all_reduce #" + std::to_string(i));
  }
}

// broadcast from every root, every dtype; the other ranks start with different values.
inline void check_broadcast(Communicator& c, at::Device device) {
  for (at::ScalarType t : all_dtypes()) {
    for (int root = 0; root < c.size(); ++root) {
      at::Tensor x = pattern(21, c.rank() == root ? 3 : 1, t, device).reshape({3, 7});
      c.broadcast(x, root);
      expect_values(x, pattern(21, 3, at::kDouble, at::kCPU),
                    dtype_name(t) + " broadcast from " + std::to_string(root));
    }
  }
}

// all_gather: out's block r is rank r's input.
inline void check_all_gather(Communicator& c, at::Device device) {
  const int n = c.size();
  for (at::ScalarType t : all_dtypes()) {
    at::Tensor in = pattern(5, c.rank() + 1, t, device);
    at::Tensor out = at::full({n, 5}, 0, at::TensorOptions().dtype(t).device(device));
    c.all_gather(out, in);
    std::vector<at::Tensor> blocks;
    for (int r = 0; r < n; ++r) blocks.push_back(pattern(5, r + 1, at::kDouble, at::kCPU));
    expect_values(out, at::cat(blocks), "all_gather " + dtype_name(t));
  }
}

// all_gather_v with uneven sizes, including zero: rank r sends r rows of (r, 2) (rank 0: none),
// and a byte string of length 2r + 1; then every rank sending nothing.
inline void check_all_gather_v(Communicator& c, at::Device device) {
  const int n = c.size();
  for (at::ScalarType t : {at::kFloat, at::kBFloat16, at::kLong, at::kByte}) {
    const int64_t rows = c.rank();
    at::Tensor in = pattern(rows * 2, c.rank() + 1, t, device).reshape({rows, 2});
    std::vector<int64_t> counts;
    at::Tensor out = c.all_gather_v(in, &counts);
    int64_t total = 0;
    std::vector<at::Tensor> parts;
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(counts.at(r), r);
      total += r;
      parts.push_back(pattern(r * 2, r + 1, at::kDouble, at::kCPU));
    }
    ASSERT_EQ(out.dim(), 2);
    EXPECT_EQ(out.size(0), total);
    EXPECT_EQ(out.size(1), 2);
    EXPECT_EQ(out.scalar_type(), t);
    EXPECT_EQ(out.device(), device);
    expect_values(out, at::cat(parts), "all_gather_v " + dtype_name(t));
  }
  // Bytes.
  std::string mine(2 * c.rank() + 1, static_cast<char>('a' + c.rank()));
  at::Tensor bytes = at::empty({static_cast<int64_t>(mine.size())}, at::kByte);
  std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
  std::vector<int64_t> counts;
  at::Tensor all = c.all_gather_v(bytes.to(device), &counts).cpu();
  std::string got(static_cast<const char*>(all.data_ptr()), all.numel());
  std::string want;
  for (int r = 0; r < n; ++r) want += std::string(2 * r + 1, static_cast<char>('a' + r));
  EXPECT_EQ(got, want);
  // Nobody sends anything.
  at::Tensor none = c.all_gather_v(at::empty({0, 3}, at::TensorOptions().device(device)), &counts);
  EXPECT_EQ(none.numel(), 0);
  EXPECT_EQ(none.size(1), 3);
  EXPECT_EQ(counts, std::vector<int64_t>(n, 0));
}

// reduce_scatter: rank r gets the reduction of block r of every rank's input.
inline void check_reduce_scatter(Communicator& c, at::Device device) {
  const int n = c.size();
  const int64_t block = 6;
  for (at::ScalarType t : all_dtypes()) {
    for (ReduceOp op : ops_for(t)) {
      at::Tensor in = pattern(block * n, c.rank() + 1, t, device);
      at::Tensor out = at::empty({block}, at::TensorOptions().dtype(t).device(device));
      c.reduce_scatter(out, in, op);
      const at::Tensor k =
          pattern(block * n, 1, at::kDouble, at::kCPU).narrow(0, c.rank() * block, block);
      expect_values(out, k.mul(expected_reduce(op, n, 1.0)), "reduce_scatter " + label(t, op));
    }
  }
}

inline void check_host_helpers(Communicator& c) {
  const int n = c.size();
  const double s = n * (n + 1) / 2.0;
  const double r1 = c.rank() + 1;
  EXPECT_DOUBLE_EQ(c.all_reduce_scalar(r1 * 0.5, ReduceOp::kSum), s * 0.5);
  EXPECT_DOUBLE_EQ(c.all_reduce_scalar(r1, ReduceOp::kAvg), s / n);
  EXPECT_DOUBLE_EQ(c.all_reduce_scalar(r1, ReduceOp::kMax), n);
  EXPECT_DOUBLE_EQ(c.all_reduce_scalar(r1, ReduceOp::kMin), 1.0);
  const int64_t big = int64_t{1} << 40;
  EXPECT_EQ(c.all_reduce_scalar(big + c.rank(), ReduceOp::kSum), big * n + n * (n - 1) / 2);
  EXPECT_EQ(c.all_reduce_scalar(int64_t{c.rank()}, ReduceOp::kMax), n - 1);
  EXPECT_EQ(c.all_reduce_scalar(int64_t{c.rank()} - 5, ReduceOp::kMin), -5);

  for (int root = 0; root < n; ++root) {
    std::string message = c.rank() == root
                              ? std::string("plan for step 7 from ") + std::to_string(root) +
                                    std::string("\0binary\xff", 8)
                              : std::string(100, 'x');
    c.broadcast_bytes(message, root);
    EXPECT_EQ(message, std::string("plan for step 7 from ") + std::to_string(root) +
                           std::string("\0binary\xff", 8));
  }
  std::string empty = c.rank() == 0 ? "" : "stale";
  c.broadcast_bytes(empty, 0);
  EXPECT_EQ(empty, "");

  for (int root : {0, n - 1}) {
    const std::string mine(3 * c.rank(), static_cast<char>('A' + c.rank()));  // rank 0: empty
    std::vector<std::string> all = c.gather_bytes_to_root(mine, root);
    if (c.rank() == root) {
      ASSERT_EQ(static_cast<int>(all.size()), n);
      for (int r = 0; r < n; ++r) EXPECT_EQ(all[r], std::string(3 * r, static_cast<char>('A' + r)));
    } else {
      EXPECT_TRUE(all.empty());
    }
  }
  c.barrier();
}

// Contract violations throw before anything is sent (on every rank alike), naming the op, and
// leave the communicator usable.
inline void check_contract_errors(Communicator& c, at::Device device) {
  const auto opts = at::TensorOptions().device(device);
  at::Tensor strided = at::zeros({4, 4}, opts).t();
  EXPECT_THROW(
      {
        try {
          c.all_reduce(strided, ReduceOp::kSum);
        } catch (const RuntimeFailure& e) {
          EXPECT_NE(std::string(e.what()).find("all_reduce"), std::string::npos) << e.what();
          EXPECT_NE(std::string(e.what()).find("contiguous"), std::string::npos) << e.what();
          throw;
        }
      },
      RuntimeFailure);
  EXPECT_THROW(c.all_reduce(at::zeros({3}, opts.dtype(at::kLong)), ReduceOp::kAvg), RuntimeFailure);
  EXPECT_THROW(c.all_reduce(at::zeros({3}, opts.dtype(at::kBool)), ReduceOp::kSum), RuntimeFailure);
  EXPECT_THROW(c.broadcast(at::zeros({3}, opts), c.size()), RuntimeFailure);
  if (c.size() > 1) {
    EXPECT_THROW(c.all_gather(at::zeros({3}, opts), at::zeros({3}, opts)), RuntimeFailure);
  }
  EXPECT_THROW(
      c.reduce_scatter(at::zeros({2}, opts), at::zeros({2 * c.size() + 1}, opts), ReduceOp::kSum),
      RuntimeFailure);
  EXPECT_THROW(
      c.all_gather(at::zeros({c.size() * 3}, opts.dtype(at::kDouble)), at::zeros({3}, opts)),
      RuntimeFailure);
  EXPECT_FALSE(c.failed());
  at::Tensor x = at::ones({2}, opts);
  c.all_reduce(x, ReduceOp::kSum);
  expect_values(x, at::full({2}, c.size(), at::kDouble), "all_reduce after contract errors");
}

}  // namespace pft::comm_cases
