// Data-parallel equivalence, under mpirun -np 1, 2 and 4: the same train.global_batch_size (8
// sequences of the synthetic stream) split over the ranks, with one micro-batch per rank or with
// two accumulation micro-batches, trains the same model as one process that sees the whole batch
// at once: per-step losses within 1e-5 relative for 20 steps, and the parameters bitwise
// identical across ranks after every step (the reducer's desync detector, plus a direct
// comparison of rank 0's bytes). The reference run is made in the same process, without a
// communicator, so every rank count checks against the same single-process numbers. GPT-2 and
// Llama, with small bucket caps so the gradients travel in several buckets, issued from the
// hooks during backward.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/reducer.h"
#include "config/config.h"
#include "core/rank_env.h"
#include "model/flat_params.h"
#include "model/transformer.h"
#include "train/optimizer.h"
#include "train/synthetic_data.h"
#include "train/train_step.h"

namespace pft {
namespace {

constexpr int64_t kGlobalBatch = 8;
constexpr int64_t kSeqLen = 32;
constexpr int64_t kSteps = 20;
constexpr double kLr = 2e-3;
constexpr uint64_t kSeed = 5;

const RankEnv& env() {
  static const RankEnv e = discover_rank_env({});
  return e;
}

ModelConfig tiny_model(const std::string& family) {
  ModelConfig m;
  m.family = family;
  m.vocab_size = 64;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = family == "llama" ? 2 : 0;
  m.max_seq_len = kSeqLen;
  m.tie_embeddings = family == "gpt2";
  return m;
}

// Model, flat buffers, AdamW, and (when `comm` is given) the reducer and a TrainStep over them,
// built as the trainer builds them.
struct Rig {
  Transformer model;
  FlatParameters params;
  AdamW optimizer;
  std::unique_ptr<Reducer> reducer;
  std::unique_ptr<TrainStep> step;

  Rig(const ModelConfig& mc, Communicator* comm)
      : model(make_model(mc)),
        params(FlatParameters::from_module(*model, TrainConfig{}.no_decay)),
        optimizer(params, AdamWOptions{0.9, 0.95, 1e-8, 0.1}) {
    TrainStepOptions o;
    o.grad_clip = 1.0;
    o.num_tasks = SyntheticTokenSource::kNumTasks;
    if (comm != nullptr) {
      // Caps of a few KiB: several buckets per group, a first bucket smaller still.
      reducer = std::make_unique<Reducer>(params, *comm, ReducerOptions{16.0 / 1024, 4.0 / 1024, {}});
      reducer->broadcast_parameters();
      o.comm = comm;
      o.reducer = reducer.get();
    }
    step = std::make_unique<TrainStep>(
        [this](const Batch& b) { return model->forward(b.input_ids, b.position_ids, b.doc_ids); },
        params, optimizer, o);
  }

  static Transformer make_model(const ModelConfig& mc) {
    Transformer m(model_spec_from_config(mc));
    m->reset_parameters(kSeed);
    m->train();
    return m;
  }
};

// Losses of kSteps steps of one process over the whole global batch.
std::vector<double> reference_losses(const ModelConfig& mc) {
  Rig rig(mc, nullptr);
  SyntheticTokenSource source(SyntheticDataOptions{kSeed, mc.vocab_size, kSeqLen, kGlobalBatch, true},
                              at::kCPU);
  Batch batch = source.make_batch();
  std::vector<double> losses;
  for (int64_t s = 0; s < kSteps; ++s) {
    const int64_t tokens = source.fill(first_sample_index(s, kGlobalBatch, 0, 1, 0, kGlobalBatch), batch);
    losses.push_back(rig.step->run({batch}, {tokens}, kLr).loss);
  }
  return losses;
}

// Rank 0's parameter bytes equal this rank's (on every rank).
bool same_bytes_as_rank0(Communicator& comm, FlatParameters& params) {
  bool same = true;
  for (size_t g = 0; g < params.num_groups(); ++g) {
    at::Tensor theirs = params.data(g).detach().clone();
    comm.broadcast(theirs, 0);
    same = same && at::equal(theirs.view(at::kInt), params.data(g).detach().view(at::kInt));
  }
  return comm.all_reduce_scalar(int64_t{same ? 0 : 1}, ReduceOp::kMax) == 0;
}

class DdpEquivalence : public ::testing::TestWithParam<std::string> {};

TEST_P(DdpEquivalence, SameGlobalBatchSameLossesOverRanksAndAccumulation) {
  const ModelConfig mc = tiny_model(GetParam());
  const std::vector<double> want = reference_losses(mc);
  DistConfig dist;
  dist.timeout_s = 120;
  const std::unique_ptr<Communicator> comm = make_communicator(env(), dist);
  const int n = comm->size(), me = comm->rank();
  ASSERT_EQ(kGlobalBatch % (2 * n), 0);

  for (const int64_t accumulation : {int64_t{1}, int64_t{2}}) {
    SCOPED_TRACE("world " + std::to_string(n) + ", accumulation " + std::to_string(accumulation));
    const int64_t micro = kGlobalBatch / (n * accumulation);
    Rig rig(mc, comm.get());
    SyntheticTokenSource source(SyntheticDataOptions{kSeed, mc.vocab_size, kSeqLen, micro, true},
                                at::kCPU);
    std::vector<Batch> batches;
    std::vector<int64_t> tokens(static_cast<size_t>(accumulation));
    for (int64_t m = 0; m < accumulation; ++m) batches.push_back(source.make_batch());
    double worst = 0;
    for (int64_t s = 0; s < kSteps; ++s) {
      for (int64_t m = 0; m < accumulation; ++m)
        tokens[static_cast<size_t>(m)] = source.fill(
            first_sample_index(s, kGlobalBatch, me, n, m, micro), batches[static_cast<size_t>(m)]);
      const StepResult r = rig.step->run(batches, tokens, kLr);
      const double want_loss = want[static_cast<size_t>(s)];
      worst = std::max(worst, std::abs(r.loss - want_loss) / want_loss);
      EXPECT_NEAR(r.loss, want_loss, 1e-5 * want_loss) << "step " << s + 1;
      // Two ranks or more wait for the all-reduces (a timed wait, never exactly 0); one rank
      // communicates nothing.
      if (n >= 2)
        EXPECT_GT(r.comm_time_s, 0.0) << "step " << s + 1;
      else
        EXPECT_EQ(r.comm_time_s, 0.0) << "step " << s + 1;
      // Every parameter has a gradient in this model: every bucket left during backward.
      EXPECT_EQ(rig.reducer->last_step().launched_in_backward,
                static_cast<int64_t>(rig.reducer->buckets().size()));
      EXPECT_NO_THROW(rig.reducer->check_parameters_in_sync(s + 1)) << "step " << s + 1;
      EXPECT_TRUE(same_bytes_as_rank0(*comm, rig.params)) << "step " << s + 1;
    }
    EXPECT_GT(rig.reducer->buckets().size(), 4u);
    EXPECT_EQ(rig.step->rebound_grads(), 0);
    EXPECT_EQ(rig.reducer->rebound_grads(), 0);
    if (me == 0)
      std::printf("[ equiv    ] %s world %d accumulation %lld: max relative loss difference %.3g "
                  "over %lld steps (%zu buckets)\n",
                  GetParam().c_str(), n, static_cast<long long>(accumulation), worst,
                  static_cast<long long>(kSteps), rig.reducer->buckets().size());
  }
}

INSTANTIATE_TEST_SUITE_P(Families, DdpEquivalence, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace pft
