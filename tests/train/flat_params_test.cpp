// Flat parameter storage: grouping, order, alignment, values kept, tied weights stored once,
// frozen parameters left alone; and Note [grads stay views]: after backward (twice, i.e.
// accumulation) every gradient is in the flat buffer and param.grad() still points into it.
#include <gtest/gtest.h>

#include <torch/nn/module.h>

#include "model/flat_params.h"
#include "model/transformer.h"

namespace pft {
namespace {

// A module with a decay weight, a no-decay bias, a tied copy, a frozen tensor and a double.
struct Toy : torch::nn::Module {
  Toy() {
    w = register_parameter("lin_weight", at::randn({3, 5}));
    bias = register_parameter("lin_bias", at::randn({3}));
    frozen = register_parameter("frozen", at::randn({2}), /*requires_grad=*/false);
    v = register_parameter("proj_weight", at::randn({7}));
    d = register_parameter("scale", at::randn({2}, at::kDouble));
    tied = register_parameter("head_weight", w);  // the same tensor as lin.weight
  }
  at::Tensor w, bias, frozen, v, d, tied;
};

bool points_into(const at::Tensor& t, const at::Tensor& buffer, int64_t offset) {
  return t.data_ptr() == static_cast<const char*>(buffer.data_ptr()) + offset * buffer.element_size();
}

TEST(FlatParameters, GroupsOrderAlignmentAndValues) {
  at::manual_seed(3);
  Toy toy;
  const at::Tensor w0 = toy.w.detach().clone(), v0 = toy.v.detach().clone(),
                   b0 = toy.bias.detach().clone(), d0 = toy.d.detach().clone();
  FlatParameters flat = FlatParameters::from_module(toy, {"bias", "scale"});

  // Groups in first-registration order: (fp32, decay), (fp32, no decay), (fp64, no decay).
  ASSERT_EQ(flat.num_groups(), 3u);
  EXPECT_TRUE(flat.decay(0));
  EXPECT_FALSE(flat.decay(1));
  EXPECT_FALSE(flat.decay(2));
  EXPECT_EQ(flat.data(2).scalar_type(), at::kDouble);
  // Tied weight once, frozen one absent; registration order.
  ASSERT_EQ(flat.slots().size(), 4u);
  EXPECT_EQ(flat.slots()[0].name, "lin_weight");
  EXPECT_EQ(flat.slots()[1].name, "lin_bias");
  EXPECT_EQ(flat.slots()[2].name, "proj_weight");
  EXPECT_EQ(flat.slots()[3].name, "scale");
  EXPECT_EQ(flat.numel(), 15 + 3 + 7 + 2);
  EXPECT_EQ(flat.group_slots(0), (std::vector<size_t>{0, 2}));
  // proj.weight starts at the next 64-byte boundary after lin.weight's 15 floats.
  EXPECT_EQ(flat.slots()[2].offset, 16);
  EXPECT_EQ(flat.data(0).numel(), 16 + 7);

  for (const auto& s : flat.slots()) {
    const at::Tensor& buf = flat.data(s.group);
    EXPECT_TRUE(points_into(s.param, buf, s.offset)) << s.name;
    EXPECT_TRUE(points_into(s.param.grad(), flat.grad(s.group), s.offset)) << s.name;
    EXPECT_EQ(s.param.sizes().vec(), s.shape);
    EXPECT_TRUE(s.param.requires_grad());
  }
  EXPECT_TRUE(at::equal(toy.w, w0));
  EXPECT_TRUE(at::equal(toy.tied, w0));
  EXPECT_TRUE(at::equal(toy.v, v0));
  EXPECT_TRUE(at::equal(toy.bias, b0));
  EXPECT_TRUE(at::equal(toy.d, d0));
  EXPECT_EQ(flat.data(0)[15].item<float>(), 0.0f);  // padding
  // Writes through the buffer are writes to the parameter, and back.
  flat.data(0).narrow(0, 16, 7).fill_(2.5f);
  EXPECT_TRUE(at::equal(toy.v, at::full({7}, 2.5f)));
  EXPECT_TRUE(at::equal(toy.frozen, toy.frozen));  // untouched
}

TEST(FlatParameters, BackwardAccumulatesIntoTheFlatGradBuffer) {
  at::manual_seed(5);
  Toy toy;
  FlatParameters flat = FlatParameters::from_module(toy, {"bias"});
  const at::Tensor x = at::randn({4, 5});
  const auto loss_of = [&] {
    return (at::matmul(x, toy.w.t()) + toy.bias).pow(2).sum() + (toy.v * toy.v).sum() +
           toy.d.sum().to(at::kFloat);
  };
  for (int pass = 1; pass <= 2; ++pass) {
    loss_of().backward();
    EXPECT_EQ(flat.rebind_grads(), 0u) << "autograd replaced a grad on pass " << pass;
    for (const auto& s : flat.slots())
      EXPECT_TRUE(points_into(s.param.grad(), flat.grad(s.group), s.offset)) << s.name;
  }
  // Two passes accumulated: twice the analytic gradient, read from the buffer.
  const at::Tensor gv = flat.grad(0).narrow(0, 16, 7);
  EXPECT_TRUE(at::allclose(gv, 2 * 2 * toy.v.detach()));
  EXPECT_TRUE(at::allclose(flat.grad(2), at::full({2}, 2.0, at::kDouble)));
  const at::Tensor y = at::matmul(x, toy.w.detach().t()) + toy.bias.detach();
  EXPECT_TRUE(at::allclose(flat.grad(1).narrow(0, 0, 3), 2 * 2 * y.sum(0), 1e-5, 1e-5));

  flat.zero_grad();
  EXPECT_EQ(flat.grad(0).abs().sum().item<float>(), 0.0f);
  for (const auto& s : flat.slots())
    EXPECT_TRUE(points_into(s.param.grad(), flat.grad(s.group), s.offset)) << s.name;

  // The safety net: a grad replaced behind our back is copied into the buffer and re-pointed.
  toy.v.mutable_grad() = at::full({7}, 3.0f);
  EXPECT_EQ(flat.rebind_grads(), 1u);
  EXPECT_TRUE(points_into(toy.v.grad(), flat.grad(0), 16));
  EXPECT_TRUE(at::equal(flat.grad(0).narrow(0, 16, 7), at::full({7}, 3.0f)));
}

TEST(FlatParameters, TransformerNamesAndTiedEmbedding) {
  ModelConfig mc;
  mc.vocab_size = 64;
  mc.d_model = 32;
  mc.n_layers = 2;
  mc.n_heads = 4;
  mc.max_seq_len = 16;
  Transformer model(model_spec_from_config(mc));
  model->reset_parameters(1);
  const TrainConfig tc;
  FlatParameters flat = FlatParameters::from_module(*model, tc.no_decay);
  EXPECT_EQ(flat.numel(), parameter_count(model->spec()));
  ASSERT_EQ(flat.num_groups(), 2u);
  int64_t decayed = 0;
  for (const auto& s : flat.slots()) {
    const bool no_decay = s.name.find("bias") != std::string::npos ||
                          s.name.find("ln_") != std::string::npos ||
                          s.name.find("wte") != std::string::npos ||
                          s.name.find("wpe") != std::string::npos;
    EXPECT_EQ(flat.decay(s.group), !no_decay) << s.name;
    decayed += flat.decay(s.group) ? s.numel : 0;
  }
  EXPECT_GT(decayed, 0);
  // A forward/backward fills the buffers and leaves the views in place.
  const at::Tensor ids = at::randint(0, 64, {2, 8}, at::kLong);
  const at::Tensor pos = at::arange(8, at::kLong).repeat({2, 1});
  model->forward(ids, pos, at::Tensor()).sum().backward();
  EXPECT_EQ(flat.rebind_grads(), 0u);
  EXPECT_GT(flat.grad(0).abs().sum().item<float>(), 0.0f);
  EXPECT_GT(flat.grad(1).abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace pft
