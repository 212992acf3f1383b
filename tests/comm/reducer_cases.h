// Test cases of the gradient reducer shared by reducer_test (CPU tensors, MPI backend) and
// reducer_gpu_test (CUDA tensors, MPI and NCCL backends). A handful of 1-D parameters in two
// flat groups (names containing "bias" do not decay) plus a frozen one; rank r's loss is
// sum_i <p_i, c_{r,i}> with c_{r,i} = (r + 1)(i + 1) * (k % 5 + 1), so the gradient of p_i on
// rank r is c_{r,i} and every expected sum is a small integer, exact in float32.
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/reducer.h"
#include "core/error.h"
#include "model/flat_params.h"

namespace pft::reducer_cases {

constexpr double kMiB = 1024.0 * 1024.0;

struct ParamSpec {
  std::string name;
  int64_t numel;
  bool trainable = true;
};

// Registration order; b.weight (600 floats = 2400 bytes) is the largest.
inline std::vector<ParamSpec> default_specs() {
  return {{"a.weight", 40},   {"a.bias", 3},       {"b.weight", 600}, {"b.bias", 5},
          {"frozen.weight", 7, false}, {"c.weight", 100}, {"c.bias", 1},   {"d.weight", 33}};
}

// c_{r,i}: (numel,) float32 on `device`.
inline at::Tensor coef(int rank, size_t i, int64_t numel, at::Device device) {
  return at::arange(numel, at::kFloat).remainder(5).add(1).mul((rank + 1) * (i + 1)).to(device);
}

struct Rig {
  std::vector<ParamSpec> specs;
  std::vector<at::Tensor> tensors;  // by spec index; frozen ones too
  FlatParameters params;

  Rig(std::vector<ParamSpec> s, at::Device device, int rank = 0)
      : specs(std::move(s)), params(make(specs, device, rank, tensors), {"bias"}) {}

  // Values depend on `rank` (so broadcast has something to do).
  static std::vector<std::pair<std::string, at::Tensor>> make(const std::vector<ParamSpec>& specs,
                                                              at::Device device, int rank,
                                                              std::vector<at::Tensor>& out) {
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (size_t i = 0; i < specs.size(); ++i) {
      at::Tensor t = at::full({specs[i].numel}, 0.5 * (rank + 1) + static_cast<double>(i),
                              at::TensorOptions().dtype(at::kFloat).device(device));
      t.set_requires_grad(specs[i].trainable);
      out.push_back(t);
      named.emplace_back(specs[i].name, t);
    }
    return named;
  }

  // Rank r's loss over the parameters `used(i)` selects, backward.
  void backward(int rank, const std::function<bool(size_t)>& used) {
    at::Tensor loss = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(tensors[0].device()));
    // Last parameter first, so the hooks do not fire in registration order.
    for (size_t k = tensors.size(); k-- > 0;)
      if (used(k)) loss = loss + (tensors[k] * coef(rank, k, specs[k].numel, tensors[k].device())).sum();
    loss.backward();
  }

  at::Tensor grad(size_t i) const { return tensors[i].grad(); }
};

inline ReducerOptions caps(double first_bytes, double cap_bytes) {
  return ReducerOptions{cap_bytes / kMiB, first_bytes / kMiB, {}};
}

inline void expect_equal(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what << ": undefined gradient";
  const at::Tensor g = got.to(at::kCPU), w = want.to(at::kCPU);
  EXPECT_TRUE(at::equal(g, w)) << what << "\n got: " << g.slice(0, 0, 8) << "\nwant: "
                               << w.slice(0, 0, 8);
}

// Every slot in exactly one bucket; a bucket is a contiguous range of one group's buffer holding
// consecutive slots of that group in reverse registration order; the first bucket respects the
// first cap and the rest the cap, unless a bucket holds one parameter; the gradients are views
// into their bucket.
inline void check_bucket_layout(Communicator& comm, at::Device device, const ReducerOptions& o) {
  Rig rig(default_specs(), device);
  Reducer reducer(rig.params, comm, o);
  const auto& slots = rig.params.slots();
  std::set<size_t> seen;
  for (size_t b = 0; b < reducer.buckets().size(); ++b) {
    const auto& bucket = reducer.buckets()[b];
    ASSERT_FALSE(bucket.slots.empty());
    int64_t bytes = 0;
    for (size_t k = 0; k < bucket.slots.size(); ++k) {
      const size_t s = bucket.slots[k];
      EXPECT_TRUE(seen.insert(s).second) << "slot " << s << " in two buckets";
      EXPECT_EQ(slots[s].group, bucket.group);
      if (k > 0) {
        EXPECT_LT(s, bucket.slots[k - 1]) << "not in reverse registration order";
      }
      bytes += slots[s].numel * 4;
      // The parameter's gradient lives inside the bucket's view.
      const auto* base = static_cast<const char*>(bucket.view.data_ptr());
      const auto* g = static_cast<const char*>(slots[s].param.grad().data_ptr());
      EXPECT_GE(g, base);
      EXPECT_LE(g + slots[s].numel * 4, base + bucket.numel * 4);
    }
    const double cap = (b == 0 ? o.first_bucket_mb : o.bucket_cap_mb) * kMiB;
    if (bucket.slots.size() > 1) {
      // A bucket only grows past the cap by its last parameter.
      EXPECT_LT(bytes - slots[bucket.slots.back()].numel * 4, cap) << "bucket " << b;
    }
    EXPECT_TRUE(bucket.view.is_contiguous());
    EXPECT_EQ(bucket.view.numel(), bucket.numel);
  }
  EXPECT_EQ(seen.size(), slots.size());
  EXPECT_EQ(slots.size(), default_specs().size() - 1);  // the frozen one is not a slot
}

// One step, every parameter used on every rank (or per `used(rank, i)`): the gradients become the
// sums over ranks of the ranks that used them; with every parameter used, every bucket is issued
// from the hooks, during backward.
inline void check_sum(Communicator& comm, at::Device device, const ReducerOptions& o,
                      const std::function<bool(int, size_t)>& used =
                          [](int, size_t) { return true; }) {
  Rig rig(default_specs(), device);
  Reducer reducer(rig.params, comm, o);
  const int n = comm.size(), me = comm.rank();
  rig.params.zero_grad();
  reducer.prepare_for_backward(true);
  rig.backward(me, [&](size_t i) { return used(me, i); });
  const double waited = reducer.finish();
  EXPECT_GE(waited, 0.0);
  bool all_used_here = true;
  for (size_t i = 0; i < rig.specs.size(); ++i) {
    if (!rig.specs[i].trainable) {
      EXPECT_FALSE(rig.grad(i).defined()) << "frozen parameter got a gradient";
      continue;
    }
    all_used_here = all_used_here && used(me, i);
    at::Tensor want = at::zeros({rig.specs[i].numel});
    for (int r = 0; r < n; ++r)
      if (used(r, i)) want += coef(r, i, rig.specs[i].numel, at::kCPU);
    expect_equal(rig.grad(i), want, rig.specs[i].name);
  }
  const auto& st = reducer.last_step();
  EXPECT_EQ(st.launched_in_backward + st.launched_at_finish,
            static_cast<int64_t>(reducer.buckets().size()));
  if (all_used_here) {
    EXPECT_EQ(st.launched_in_backward, static_cast<int64_t>(reducer.buckets().size()));
  } else {
    EXPECT_GT(st.launched_at_finish, 0);
  }
  EXPECT_EQ(reducer.rebound_grads(), 0);
  EXPECT_EQ(rig.params.rebind_grads(), 0u) << "gradients stopped being views into the buckets";
}

// Gradient accumulation: the non-final micro-batches communicate nothing (their gradients stay
// local), the final one reduces the accumulated sum. Two steps, so the per-step reset is covered.
inline void check_accumulation(Communicator& comm, at::Device device) {
  Rig rig(default_specs(), device);
  Reducer reducer(rig.params, comm, caps(256, 1024));
  const int n = comm.size(), me = comm.rank();
  const auto all = [](size_t) { return true; };
  for (int step = 0; step < 2; ++step) {
    rig.params.zero_grad();
    reducer.prepare_for_backward(false);
    rig.backward(me, all);
    // Still this rank's own gradient: nothing was sent.
    expect_equal(rig.grad(0), coef(me, 0, rig.specs[0].numel, at::kCPU), "after micro-batch 1");
    reducer.prepare_for_backward(false);
    rig.backward(me, all);
    reducer.prepare_for_backward(true);
    rig.backward(me, all);
    reducer.finish();
    for (size_t i = 0; i < rig.specs.size(); ++i) {
      if (!rig.specs[i].trainable) continue;
      at::Tensor want = at::zeros({rig.specs[i].numel});
      for (int r = 0; r < n; ++r) want += 3 * coef(r, i, rig.specs[i].numel, at::kCPU);
      expect_equal(rig.grad(i), want, rig.specs[i].name + " step " + std::to_string(step));
    }
    EXPECT_EQ(reducer.last_step().launched_in_backward,
              static_cast<int64_t>(reducer.buckets().size()));
  }
}

// Rank-dependent initial values become rank 0's.
inline void check_broadcast(Communicator& comm, at::Device device) {
  Rig rig(default_specs(), device, comm.rank());
  Reducer reducer(rig.params, comm, ReducerOptions{});
  reducer.broadcast_parameters();
  for (size_t i = 0; i < rig.specs.size(); ++i) {
    if (!rig.specs[i].trainable) continue;
    const at::Tensor want = at::full({rig.specs[i].numel}, 0.5 + static_cast<double>(i));
    expect_equal(rig.tensors[i].detach(), want, rig.specs[i].name);
  }
}

// Identical parameters pass; one element of c.weight changed on the last rank stops every rank
// with a message naming c.weight.
inline void check_desync_detector(Communicator& comm, at::Device device) {
  Rig rig(default_specs(), device);
  Reducer reducer(rig.params, comm, ReducerOptions{});
  EXPECT_NO_THROW(reducer.check_parameters_in_sync(7));
  if (comm.size() < 2) return;
  const size_t c_weight = 5;
  ASSERT_EQ(rig.specs[c_weight].name, "c.weight");
  if (comm.rank() == comm.size() - 1) {
    at::NoGradGuard no_grad;
    // Smallest possible change: the last bit of one element.
    at::Tensor bits = rig.tensors[c_weight].detach().view(at::kInt);
    bits.narrow(0, 17, 1).add_(1);
  }
  try {
    reducer.check_parameters_in_sync(7);
    ADD_FAILURE() << "desync not detected";
  } catch (const RuntimeFailure& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("at step 7"), std::string::npos) << what;
    EXPECT_NE(what.find("`c.weight`"), std::string::npos) << what;
    EXPECT_NE(what.find("1 of 7 tensors differ"), std::string::npos) << what;
  }
  EXPECT_FALSE(comm.failed()) << "a desync is a data problem, the communicator stays usable";
}

}  // namespace pft::reducer_cases
