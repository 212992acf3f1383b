// Reduced-precision gradient communication (dist.grad_comm_dtype: bf16) on CPU tensors over the
// MPI backend, under mpirun -np 1, 2, 3 (3: shards that do not divide the buckets, and a sum of
// three bf16 inputs, where float32 and bf16 accumulation differ):
//   - the async primitives it is built from (reduce_scatter_async of float32 and bfloat16, the
//     latter summed in float32; all_gather_async), several in flight;
//   - the reducer over a few steps of random gradients: the reduced gradients are bitwise
//     identical on every rank, bitwise equal to "round each rank's gradient to bf16, add them in
//     float32 in rank order, round once", and within bf16 rounding of the float32 all-reduce's;
//     with one rank nothing is rounded;
//   - the bytes the communicator counts: the fp32 ring all-reduce's 2 (W-1)/W N x 4 per bucket,
//     the bf16 path's 2 (W-1) ceil(N/W) x 2.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <memory>
#include <vector>

#include "comm/mpi_communicator.h"
#include "config/config.h"
#include "core/rank_env.h"
#include "mpi_test_env.h"
#include "reducer_cases.h"

namespace pft {
namespace {

using namespace reducer_cases;

using test::env;

class GradCommTest : public ::testing::TestWithParam<MpiProgressMode> {
 protected:
  std::unique_ptr<MpiCommunicator> make() { return test::make_mpi_communicator(GetParam()); }
};

// Rank r's gradient of parameter i at `step`: random, magnitudes spread over a few decades, not
// representable in bf16.
at::Tensor random_grad(int rank, int step, size_t i, int64_t numel) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(
      static_cast<uint64_t>(1000003 * step + 1009 * rank + static_cast<int>(i) + 1));
  return at::randn({numel}, gen, at::kFloat).mul_(std::pow(10.0, static_cast<double>(i % 3) - 1));
}

// One step: the loss sum_i <p_i, g_i> makes parameter i's gradient exactly g_i.
void run_step(Rig& rig, Reducer& reducer, int rank, int step) {
  rig.params.zero_grad();
  reducer.prepare_for_backward(true);
  at::Tensor loss = at::zeros({});
  for (size_t k = rig.tensors.size(); k-- > 0;)
    if (rig.specs[k].trainable)
      loss = loss + (rig.tensors[k] * random_grad(rank, step, k, rig.specs[k].numel)).sum();
  loss.backward();
  reducer.finish();
}

TEST_P(GradCommTest, AsyncReduceScatterAndAllGather) {
  auto c = make();
  const int w = c->size(), me = c->rank();
  const int64_t n = 7;  // per rank
  for (const at::ScalarType t : {at::kFloat, at::kBFloat16}) {
    // in_r[j] = (r + 1) * (j + 1) / 4 (exact in bf16 for these sizes); block q of the sum is
    // sum_r (r + 1) * (j + 1) / 4 over j in [q n, (q + 1) n).
    const at::Tensor j = at::arange(w * n, at::kFloat).add_(1);
    const at::Tensor in = j.mul(me + 1).div_(4).to(t);
    at::Tensor out = at::empty({n}, at::TensorOptions().dtype(t));
    at::Tensor gathered = at::empty({w * n}, at::TensorOptions().dtype(t));
    const at::Tensor mine = at::full({n}, me + 0.5, at::TensorOptions().dtype(t));
    // Two in flight, waited in issue order.
    auto rs = c->reduce_scatter_async(out, in, ReduceOp::kSum);
    auto ag = c->all_gather_async(gathered, mine);
    rs->wait();
    ag->wait();
    const double ranks_sum = w * (w + 1) / 2.0;
    const at::Tensor want = j.narrow(0, me * n, n).mul(ranks_sum).div_(4);
    EXPECT_TRUE(at::equal(out.to(at::kFloat), want)) << dtype_name(t) << ": " << out;
    for (int r = 0; r < w; ++r)
      EXPECT_TRUE(at::equal(gathered.narrow(0, r * n, n).to(at::kFloat),
                            at::full({n}, r + 0.5, at::kFloat)))
          << dtype_name(t) << " block " << r;
  }
  // bf16 inputs summed in float32: rank 0 sends 256, the others 1. Added one by one in bf16
  // (spacing 2 above 256) every 256 + 1 rounds back to 256; the float32 sum is 256 + (w - 1),
  // rounded once. Two ranks add once, so both ways agree: it takes three.
  if (w >= 3) {
    const double value = me == 0 ? 256.0 : 1.0;
    const at::Tensor in = at::full({w}, value, at::TensorOptions().dtype(at::kBFloat16));
    at::Tensor out = at::empty({1}, in.options());
    c->reduce_scatter_async(out, in, ReduceOp::kSum)->wait();
    const float want = at::full({1}, 256.0 + (w - 1), at::kFloat).to(at::kBFloat16).item<float>();
    EXPECT_EQ(out.item<float>(), want);
    EXPECT_GT(out.item<float>(), 256.0f);
  }
}

TEST_P(GradCommTest, Bf16GradientsIdenticalOnEveryRankAndWithinBf16OfFp32) {
  auto c = make();
  const int w = c->size(), me = c->rank();
  const ReducerOptions fp32 = caps(/*first=*/150, /*cap=*/1000);  // several buckets
  ReducerOptions bf16 = fp32;
  bf16.grad_comm_dtype = at::kBFloat16;
  Rig a(default_specs(), at::kCPU), b(default_specs(), at::kCPU);
  Reducer ra(a.params, *c, fp32), rb(b.params, *c, bf16);
  ASSERT_EQ(ra.buckets().size(), rb.buckets().size());
  ASSERT_GT(rb.buckets().size(), 3u);

  int64_t want_fp32_bytes = 0, want_bf16_bytes = 0;
  for (const auto& bucket : rb.buckets()) {
    const int64_t shard = (bucket.numel + w - 1) / w;
    want_fp32_bytes += 2 * (w - 1) * bucket.numel / w * 4;
    want_bf16_bytes += 2 * (w - 1) * shard * 2;
  }

  for (int step = 0; step < 3; ++step) {
    const int64_t before_fp32 = c->bytes_sent();
    run_step(a, ra, me, step);
    const int64_t before_bf16 = c->bytes_sent();
    run_step(b, rb, me, step);
    EXPECT_EQ(before_bf16 - before_fp32, want_fp32_bytes) << "step " << step;
    EXPECT_EQ(c->bytes_sent() - before_bf16, want_bf16_bytes) << "step " << step;

    std::vector<at::Tensor> mine;
    for (size_t i = 0; i < b.specs.size(); ++i) {
      if (!b.specs[i].trainable) continue;
      const int64_t numel = b.specs[i].numel;
      const at::Tensor got = b.grad(i), fp32_sum = a.grad(i);
      ASSERT_TRUE(got.defined() && fp32_sum.defined()) << b.specs[i].name;
      mine.push_back(got.detach().clone());
      if (w == 1) {  // nothing communicated, nothing rounded
        EXPECT_TRUE(at::equal(got, fp32_sum)) << b.specs[i].name;
        continue;
      }
      // The definition, computed here from every rank's gradient: bf16 inputs, float32 sum in
      // rank order, one rounding.
      at::Tensor acc = random_grad(0, step, i, numel).to(at::kBFloat16).to(at::kFloat);
      at::Tensor abs_sum = random_grad(0, step, i, numel).abs();
      for (int r = 1; r < w; ++r) {
        acc.add_(random_grad(r, step, i, numel).to(at::kBFloat16).to(at::kFloat));
        abs_sum.add_(random_grad(r, step, i, numel).abs());
      }
      const at::Tensor want = acc.to(at::kBFloat16).to(at::kFloat);
      EXPECT_TRUE(at::equal(got, want)) << b.specs[i].name << " step " << step
                                        << "\n got: " << got.slice(0, 0, 6)
                                        << "\nwant: " << want.slice(0, 0, 6);
      // Within bf16 rounding of the float32 all-reduce: each input and the result rounded once
      // (unit roundoff 2^-9 each; twice that as the bound).
      const at::Tensor bound = abs_sum.add(fp32_sum.abs()).mul_(std::ldexp(1.0, -8));
      EXPECT_TRUE(at::all((got - fp32_sum).abs().le(bound)).item<bool>())
          << b.specs[i].name << " step " << step << ": max |bf16 - fp32| "
          << (got - fp32_sum).abs().max().item<float>();
      EXPECT_FALSE(at::equal(got, fp32_sum)) << "bf16 communication rounded nothing?";
    }
    // Bitwise identical on every rank: every rank's gradients gathered and compared.
    const at::Tensor flat = at::cat(mine);
    at::Tensor all = at::empty({w * flat.numel()}, flat.options());
    c->all_gather(all, flat);
    for (int r = 0; r < w; ++r)
      EXPECT_TRUE(at::equal(all.narrow(0, r * flat.numel(), flat.numel()), flat))
          << "rank " << r << "'s gradients differ from rank " << me << "'s at step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(Progress, GradCommTest,
                         ::testing::Values(MpiProgressMode::kThread, MpiProgressMode::kPoll),
                         [](const auto& info) {
                           return info.param == MpiProgressMode::kThread ? std::string("thread")
                                                                         : std::string("poll");
                         });

}  // namespace
}  // namespace pft
