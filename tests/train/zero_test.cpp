// ZeRO-1 (dist.zero: 1, Note [ZeRO-1] in train/optimizer.h), under mpirun -np 1, 2 and 4 (CPU,
// fp32, MPI backend): the same data-parallel run with the optimizer state sharded and with it
// replicated gives bitwise the same parameters after every step and bitwise the same losses, for
// full fine-tuning (GPT-2, Llama) and for LoRA (rank 4, and a rank-1 LoRA of q_proj only whose
// 64-element buffers leave every rank but the first an empty shard); the parameters are bitwise
// identical across ranks; each rank holds only its shard of the moments (about 1/W of the
// replicated bytes); the moments gathered to rank 0 for a checkpoint are bitwise the replicated
// optimizer's, both gathered whole and through the streamed save (Note [streamed ZeRO-1 save] in
// train/checkpoint_state.h: a real checkpoint file written from rank 0's scratch file, read back,
// every moment dataset bitwise the replicated run's), and the streamed save held no more of the
// moments at once than the all-gather's pieces and the writer's buffer (on gpt2_wide, whose
// moments are many pieces); shard_range's boundaries.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "ckpt/writer.h"
#include "comm/communicator.h"
#include "comm/reducer.h"
#include "config/config.h"
#include "core/rank_env.h"
#include "model/adapters.h"
#include "model/flat_params.h"
#include "model/transformer.h"
#include "train/checkpoint_state.h"
#include "train/optimizer.h"
#include "train/synthetic_data.h"
#include "train/train_step.h"

namespace pft {
namespace {

constexpr int64_t kGlobalBatch = 8;
constexpr int64_t kSeqLen = 32;
constexpr int64_t kSteps = 6;
constexpr double kLr = 2e-3;
constexpr uint64_t kSeed = 5;

const RankEnv& env() {
  static const RankEnv e = discover_rank_env({});
  return e;
}

Communicator& comm() {
  static const std::unique_ptr<Communicator> c = [] {
    DistConfig dist;
    dist.timeout_s = 120;
    return make_communicator(env(), dist);
  }();
  return *c;
}

// "gpt2_wide": a 140,000-token vocabulary, so the tied embedding's group (4.48M elements) has
// shards longer than the 2^20-element pieces the all-gathers move (2 to 3 pieces at 2 and 4
// ranks): the multi-piece path of the parameter and moment gathers.
ModelConfig tiny_model(const std::string& name) {
  const bool wide = name == "gpt2_wide";
  const std::string family = wide ? "gpt2" : name;
  ModelConfig m;
  m.family = family;
  m.vocab_size = wide ? 140000 : 64;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = family == "llama" ? 2 : 0;
  m.max_seq_len = kSeqLen;
  m.tie_embeddings = family == "gpt2";
  return m;
}

// Model (with LoRA when `lora`), flat buffers, AdamW (sharded over `comm` when `zero`), reducer
// and TrainStep, built as the trainer builds them.
struct Rig {
  Transformer model;
  std::shared_ptr<Adapters> adapters;
  std::unique_ptr<FlatParameters> params;
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<Reducer> reducer;
  std::unique_ptr<TrainStep> step;

  // `lora_rank` 0: full fine-tuning; 1: rank-1 LoRA of q_proj only (buffers of 64 elements, so
  // every rank but the first has an empty shard); otherwise LoRA of that rank.
  Rig(const ModelConfig& mc, int lora_rank, bool zero) : model(model_spec_from_config(mc)) {
    model->reset_parameters(kSeed);
    model->train();
    if (lora_rank > 0) {
      for (at::Tensor& p : model->parameters()) p.set_requires_grad(false);
      AdapterSpec a;
      a.blocks = SyntheticTokenSource::kNumTasks;
      a.lora = true;
      a.lora_rank = lora_rank;
      a.lora_alpha = 8.0;
      a.lora_dropout = 0.1;  // each rank its own masks; both runs reseed the same way
      a.lora_targets = lora_rank == 1            ? std::vector<std::string>{"q_proj"}
                       : mc.family == "gpt2" ? std::vector<std::string>{"c_attn", "mlp.c_proj"}
                                             : std::vector<std::string>{"q_proj", "v_proj"};
      adapters = std::make_shared<Adapters>(model->spec(), a, model->lora_candidates());
      adapters->reset_parameters(kSeed, "random", model->parameters().front(), {});
      model->attach_adapters(adapters);
      // A no-decay group too (a second group buffer): the first LoRA's tensors.
      params = std::make_unique<FlatParameters>(adapters->named(),
                                                std::vector<std::string>{"h.0.", "layers.0."});
    } else {
      params = std::make_unique<FlatParameters>(
          FlatParameters::from_module(*model, TrainConfig{}.no_decay));
    }
    optimizer = std::make_unique<AdamW>(*params, AdamWOptions{0.9, 0.95, 1e-8, 0.1},
                                        zero ? &comm() : nullptr);
    reducer = std::make_unique<Reducer>(*params, comm(), ReducerOptions{16.0 / 1024, 4.0 / 1024, {}});
    reducer->broadcast_parameters();
    TrainStepOptions o;
    o.grad_clip = 1.0;
    o.num_tasks = SyntheticTokenSource::kNumTasks;
    o.comm = &comm();
    o.reducer = reducer.get();
    step = std::make_unique<TrainStep>(
        [this](const Batch& b) {
          return model->forward(b.input_ids, b.position_ids, b.doc_ids, b.task_ids);
        },
        *params, *optimizer, o);
  }
};

struct RunResult {
  std::vector<double> losses;
  std::vector<std::vector<at::Tensor>> params;  // per step, a copy of every group buffer
  int64_t state_bytes = 0;
  std::vector<int64_t> state_numel;  // exp_avg elements per group
  std::vector<int64_t> group_numel;
  bool sharded = false;
  std::vector<AdamW::HostMoments> moments;  // whole (rank 0 when sharded: gathered)
  // Sharded, rank 0: the checkpoint the streamed save wrote, read back; what it held at once.
  std::optional<ckpt::Contents> saved, saved_borrowing;  // spilled whole; own shard read live
  int64_t held_bytes = 0;               // the gather's buffers (GatheredMoments::held_bytes)
  uint64_t stream_buffer_bytes = 0;     // the writer's (WriteStats)
  std::vector<FlatParameters::Slot> slots;
};

// The streamed ZeRO-1 save as the Checkpointer runs it (collective): gather_moments_for_save to a
// scratch file on rank 0, checkpoint_contents streaming the moments from it, write_checkpoint,
// then read the file back (rank 0).
// `borrow`: rank 0's own shard read from the live state (a synchronous save) instead of spilled.
void streamed_save(const Rig& rig, RunResult& r, bool borrow) {
  const bool root = comm().rank() == 0;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("pft-zero-test-" + std::to_string(getpid()));
  const GatheredMoments gathered = gather_moments_for_save(*rig.optimizer, *rig.params, root, dir,
                                                           "zero_test.moments", borrow);
  if (!root) return;
  ASSERT_FALSE(gathered.error) << *gathered.error;
  EXPECT_EQ(gathered.own_shard_live, borrow);
  // Spilled: every element but (borrowing) rank 0's own shard's.
  int64_t want_spilled = 0;
  for (size_t g = 0; g < rig.optimizer->num_groups(); ++g) {
    const AdamW::GroupState& s = rig.optimizer->state(g);
    want_spilled += 2 * 4 * (rig.params->data(g).numel() - (borrow ? s.hi - s.lo : 0));
  }
  EXPECT_EQ(gathered.spilled_bytes, want_spilled);
  EXPECT_EQ(gathered.spill_bytes, want_spilled);
  Config config;
  TrainProgress progress;
  progress.step = kSteps;
  progress.data_source = "synthetic";
  const ckpt::Contents c =
      checkpoint_contents(config, comm().size(), *rig.params, *rig.optimizer, nullptr, progress,
                          gather_rng_states(nullptr, false), /*snapshot=*/false, &gathered);
  const std::filesystem::path file = dir / "step.h5";
  const ckpt::WriteStats st = ckpt::write_checkpoint(file, c);
  (borrow ? r.saved_borrowing : r.saved) = ckpt::read_checkpoint(file);
  if (!borrow) {
    r.held_bytes = gathered.held_bytes;
    r.stream_buffer_bytes = st.stream_buffer_bytes;
  }
  std::filesystem::remove_all(dir);
}

RunResult train(const ModelConfig& mc, int lora, bool zero) {
  const int n = comm().size(), me = comm().rank();
  // One intra-op thread, as the CLI runs (run.threads=1): with several, OpenMP may hand a
  // reduction a different thread count under load, and two runs of the same process then differ
  // in their last bits whatever the optimizer does (seen once at np 1, where both runs take the
  // same code path).
  at::set_num_threads(1);
  at::manual_seed(kSeed * 1000 + static_cast<uint64_t>(me));  // the LoRA dropout stream
  Rig rig(mc, lora, zero);
  const int64_t micro = kGlobalBatch / n;
  SyntheticTokenSource source(SyntheticDataOptions{kSeed, mc.vocab_size, kSeqLen, micro, true},
                              at::kCPU);
  Batch batch = source.make_batch();
  RunResult r;
  for (int64_t s = 0; s < kSteps; ++s) {
    const int64_t tokens = source.fill(first_sample_index(s, kGlobalBatch, me, n, 0, micro), batch);
    r.losses.push_back(rig.step->run({batch}, {tokens}, kLr).loss);
    std::vector<at::Tensor> copy;
    for (const at::Tensor& d : rig.params->datas()) copy.push_back(d.detach().clone());
    r.params.push_back(std::move(copy));
    EXPECT_NO_THROW(rig.reducer->check_parameters_in_sync(s + 1)) << "step " << s + 1;
  }
  r.state_bytes = rig.optimizer->state_bytes();
  if (rig.optimizer->sharded()) {
    r.moments = rig.optimizer->gather_moments_to_root();  // collective
    EXPECT_EQ(r.moments.size(), me == 0 ? rig.optimizer->num_groups() : 0u);
    streamed_save(rig, r, /*borrow=*/false);  // collective
    streamed_save(rig, r, /*borrow=*/true);
    r.slots = rig.params->slots();
  } else {
    for (size_t g = 0; g < rig.optimizer->num_groups(); ++g)
      r.moments.push_back({rig.optimizer->state(g).exp_avg.clone(),
                           rig.optimizer->state(g).exp_avg_sq.clone()});
  }
  r.sharded = rig.optimizer->sharded();
  for (size_t g = 0; g < rig.optimizer->num_groups(); ++g) {
    r.state_numel.push_back(rig.optimizer->state(g).exp_avg.numel());
    r.group_numel.push_back(rig.params->data(g).numel());
    const auto [lo, hi] = AdamW::shard_range(rig.params->data(g).numel(), n, me);
    EXPECT_EQ(rig.optimizer->state(g).lo, zero ? lo : 0);
    EXPECT_EQ(rig.optimizer->state(g).hi, zero ? hi : rig.params->data(g).numel());
  }
  return r;
}

bool bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && at::equal(a.view(at::kInt), b.view(at::kInt));
}

class Zero : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Zero, ShardedStateGivesBitwiseTheReplicatedRun) {
  const auto& [family, lora] = GetParam();
  const ModelConfig mc = tiny_model(family);
  const int n = comm().size(), me = comm().rank();
  const RunResult replicated = train(mc, lora, false);
  const RunResult sharded = train(mc, lora, true);
  EXPECT_FALSE(replicated.sharded);
  EXPECT_EQ(sharded.sharded, n > 1);
  if (lora == 1 && n > 1) {  // the case of empty shards: rank n-1 updates nothing
    for (const int64_t numel : sharded.group_numel) {
      const auto [lo, hi] = AdamW::shard_range(numel, n, n - 1);
      EXPECT_EQ(lo, hi) << numel;
    }
  }
  ASSERT_EQ(sharded.params.size(), replicated.params.size());
  for (size_t s = 0; s < sharded.params.size(); ++s) {
    EXPECT_EQ(sharded.losses[s], replicated.losses[s]) << "step " << s + 1;  // bitwise
    for (size_t g = 0; g < sharded.params[s].size(); ++g)
      EXPECT_TRUE(bitwise_equal(sharded.params[s][g], replicated.params[s][g]))
          << "step " << s + 1 << ", group " << g;
  }
  if (me == 0 || n == 1) {
    ASSERT_EQ(sharded.moments.size(), replicated.moments.size());
    for (size_t g = 0; g < sharded.moments.size(); ++g) {
      EXPECT_TRUE(bitwise_equal(sharded.moments[g].exp_avg, replicated.moments[g].exp_avg)) << g;
      EXPECT_TRUE(bitwise_equal(sharded.moments[g].exp_avg_sq, replicated.moments[g].exp_avg_sq))
          << g;
    }
  }
  // The streamed save's checkpoint: every moment dataset bitwise the replicated optimizer's
  // slice, and on rank 0 nothing near the whole moments held at once.
  if (me == 0 && n > 1) {
    ASSERT_TRUE(sharded.saved.has_value() && sharded.saved_borrowing.has_value());
    int64_t moment_bytes = 0;
    for (const FlatParameters::Slot& slot : sharded.slots) {
      for (int m = 0; m < 2; ++m) {
        const std::string path = ckpt::child_path(
            m == 0 ? ckpt::kOptimizerExpAvg : ckpt::kOptimizerExpAvgSq, slot.name);
        const at::Tensor& whole = m == 0 ? replicated.moments[slot.group].exp_avg
                                         : replicated.moments[slot.group].exp_avg_sq;
        const at::Tensor want = whole.narrow(0, slot.offset, slot.numel).contiguous();
        for (const ckpt::Contents* saved : {&*sharded.saved, &*sharded.saved_borrowing}) {
          const ckpt::Dataset& d = saved->at(path);
          EXPECT_EQ(d.shape, slot.shape) << path;
          ASSERT_EQ(d.bytes.size(), want.nbytes()) << path;
          EXPECT_EQ(std::memcmp(d.bytes.data(), want.data_ptr(), want.nbytes()), 0)
              << path << (saved == &*sharded.saved ? " (spilled)" : " (own shard live)");
        }
        moment_bytes += static_cast<int64_t>(want.nbytes());
      }
    }
    // The gather's reused buffers: W pieces received and one sent, of 2^20 fp32 elements at most;
    // the writer's: one piece of WriteOptions::stream_piece_bytes (rounded to rows).
    constexpr int64_t kPieceBytes = int64_t{4} << 20;
    EXPECT_GT(sharded.held_bytes, 0);
    EXPECT_LE(sharded.held_bytes, (n + 1) * kPieceBytes);
    EXPECT_LE(sharded.stream_buffer_bytes, ckpt::WriteOptions{}.stream_piece_bytes);
    if (family == "gpt2_wide") {  // many pieces: the bounds above are far below the moments
      EXPECT_GE(moment_bytes, 8 * kPieceBytes);
      EXPECT_LT(sharded.held_bytes + static_cast<int64_t>(sharded.stream_buffer_bytes),
                moment_bytes);
    }
    std::printf("[ zero     ] streamed save on rank 0: moments %lld B, held at once: gather "
                "buffers %lld B + writer buffer %llu B\n",
                static_cast<long long>(moment_bytes), static_cast<long long>(sharded.held_bytes),
                static_cast<unsigned long long>(sharded.stream_buffer_bytes));
  }
  // It trained (the comparison is not of two untouched models).
  EXPECT_FALSE(bitwise_equal(sharded.params.front()[0], sharded.params.back()[0]));

  // This rank's moments: its shard of each group, ceil(numel / W) rounded up to 64 at most;
  // over the ranks the shards cover each buffer exactly once.
  int64_t replicated_numel = 0, bound = 0;
  for (size_t g = 0; g < sharded.group_numel.size(); ++g) {
    const int64_t numel = sharded.group_numel[g];
    const int64_t per = ((numel + n - 1) / n + 63) / 64 * 64;
    EXPECT_LE(sharded.state_numel[g], per) << "group " << g;
    EXPECT_EQ(replicated.state_numel[g], numel);
    const int64_t total =
        static_cast<int64_t>(comm().all_reduce_scalar(sharded.state_numel[g], ReduceOp::kSum));
    EXPECT_EQ(total, numel) << "group " << g;
    replicated_numel += numel;
    bound += per;
  }
  const int64_t step_bytes = 4 * static_cast<int64_t>(sharded.group_numel.size());
  EXPECT_EQ(replicated.state_bytes, 8 * replicated_numel + step_bytes);
  EXPECT_LE(sharded.state_bytes, 8 * bound + step_bytes);
  if (n == 1) {
    EXPECT_EQ(sharded.state_bytes, replicated.state_bytes);
  }
  const int64_t most = comm().all_reduce_scalar(sharded.state_bytes, ReduceOp::kMax);
  if (me == 0)
    std::printf("[ zero     ] %s%s world %d: optimizer state per rank %lld B (largest rank), "
                "replicated %lld B, ratio %.4f (1/W = %.4f); %zu groups\n",
                family.c_str(), lora == 0 ? "" : lora == 1 ? "+lora1" : "+lora", n, static_cast<long long>(most),
                static_cast<long long>(replicated.state_bytes),
                static_cast<double>(most) / static_cast<double>(replicated.state_bytes), 1.0 / n,
                sharded.group_numel.size());
}

INSTANTIATE_TEST_SUITE_P(Methods, Zero,
                         ::testing::Values(std::make_tuple("gpt2", 0),
                                           std::make_tuple("llama", 0),
                                           std::make_tuple("gpt2", 4),
                                           std::make_tuple("llama", 4),
                                           std::make_tuple("llama", 1),
                                           std::make_tuple("gpt2_wide", 0)));

// Rank 0's real memory during a streamed ZeRO-1 save (Note [streamed ZeRO-1 save] in
// train/checkpoint_state.h), not a count the code keeps of itself: the peak resident set
// (VmHWM, reset by writing 5 to /proc/self/clear_refs) grows during the streamed gather and the
// checkpoint write by well under the moments' bytes, while the same measurement around the whole
// in-memory gather (gather_moments_to_root) grows by at least them, so the bound can fail. One
// 16M-element parameter (128 MiB of moments; more than gpt2_wide's 36 MiB, which the fixed
// buffers would come close to at 4 ranks), not trained: the moments' values do not matter here.
// Measured on the 2-core development machine: the streamed save grew 28.2 MiB at 2 ranks and
// 37.6 MiB at 4 (the gather alone 12.3 and 21.8 MiB: its (W + 1) reused pieces of 4 MiB), the
// same with 64 MiB of moments, so it does not grow with them; the whole gather 128.0 MiB. Allocations of 1 MiB and more are mmapped from here on (a fixed
// M_MMAP_THRESHOLD), so a large buffer touches fresh pages instead of reusing resident heap the
// training of other tests left free, which would hide it from VmHWM.
int64_t status_kib(const char* key) {  // a "VmXXX:   123 kB" line of /proc/self/status, in KiB
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key)));
  return -1;
}

// Resets VmHWM to the current resident set; returns it in bytes, or -1 when the kernel refuses.
int64_t reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  if (!f) return -1;
  return status_kib("VmHWM:") * 1024;
}

TEST(ZeroSaveMemory, StreamedSaveHoldsFarLessThanTheMoments) {
  const int n = comm().size();
  const bool root = comm().rank() == 0;
  if (n == 1) GTEST_SKIP() << "not sharded at one rank";
#if defined(__SANITIZE_ADDRESS__)
  // ASan's allocator has no mallopt, and its shadow memory and quarantine are in VmHWM: the
  // measurement is the cpu build's.
  GTEST_SKIP() << "peak resident memory is not measurable under ASan";
#endif
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
  at::set_num_threads(1);
  constexpr int64_t kNumel = int64_t{16} << 20;
  at::Tensor w = at::randn({kNumel});
  w.set_requires_grad(true);
  FlatParameters params({{"w", w}}, {});
  AdamW optimizer(params, AdamWOptions{0.9, 0.95, 1e-8, 0.1}, &comm());
  const int64_t moment_bytes = 2 * 4 * kNumel;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("pft-zero-memory-" + std::to_string(getpid()));
  // Every rank runs both collectives; rank 0 measures.
  int64_t base = root ? reset_peak_rss() : 0;
  if (root && base < 0) std::printf("[ zero     ] /proc/self/clear_refs refused: not measured\n");
  int64_t streamed_growth = 0, gather_growth = 0;
  {
    const GatheredMoments gathered =
        gather_moments_for_save(optimizer, params, root, dir, "zero_memory.moments");
    if (root) gather_growth = status_kib("VmHWM:") * 1024 - base;
    EXPECT_FALSE(gathered.error) << *gathered.error;  // no ASSERT: the other ranks gather on
    if (root && !gathered.error) {
      Config config;
      TrainProgress progress;
      progress.step = 1;
      progress.data_source = "synthetic";
      const ckpt::Contents c =
          checkpoint_contents(config, n, params, optimizer, nullptr, progress,
                              gather_rng_states(nullptr, false), /*snapshot=*/false, &gathered);
      ckpt::write_checkpoint(dir / "step.h5", c);
      streamed_growth = status_kib("VmHWM:") * 1024 - base;
    }
  }
  std::filesystem::remove_all(dir);
  base = root ? reset_peak_rss() : 0;
  int64_t whole_growth = 0;
  {
    const std::vector<AdamW::HostMoments> whole = optimizer.gather_moments_to_root();
    if (root) {
      ASSERT_EQ(whole.size(), 1u);
      whole_growth = status_kib("VmHWM:") * 1024 - base;
    }
  }
  if (!root || base < 0) return;
  std::printf("[ zero     ] world %d, rank 0 peak resident growth: streamed save %lld B (the "
              "gather alone %lld B), whole gather %lld B; moments %lld B\n",
              n, static_cast<long long>(streamed_growth), static_cast<long long>(gather_growth),
              static_cast<long long>(whole_growth),
              static_cast<long long>(moment_bytes));
  // Streamed: the gather's (W + 1) * 4 MiB, the writer's 4 MiB and what HDF5 allocates while
  // writing (about 13 MiB more here), under half the moments (64 MiB).
  EXPECT_LT(streamed_growth, moment_bytes / 2);
  // Whole: every moment resident at once (the margin: pages the kernel had not yet counted).
  EXPECT_GE(whole_growth, moment_bytes * 9 / 10);
  EXPECT_GT(whole_growth, 2 * streamed_growth);
}

// Shards: aligned to 64 elements, contiguous, covering [0, numel), none longer than the first.
TEST(ZeroShards, BoundariesAlignedAndCovering) {
  for (const int64_t numel : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{65},
                              int64_t{1000}, int64_t{4096}, int64_t{100003}})
    for (const int world : {1, 2, 3, 4, 7, 8}) {
      int64_t next = 0;
      const int64_t first = AdamW::shard_range(numel, world, 0).second;
      for (int r = 0; r < world; ++r) {
        const auto [lo, hi] = AdamW::shard_range(numel, world, r);
        EXPECT_EQ(lo, next) << numel << " over " << world << ", rank " << r;
        EXPECT_LE(lo, hi);
        EXPECT_LE(hi - lo, first);
        if (r + 1 < world) {
          EXPECT_TRUE(hi % 64 == 0 || hi == numel) << numel << " " << world;
        }
        next = hi;
      }
      EXPECT_EQ(next, numel);
    }
  EXPECT_EQ(AdamW::shard_range(1000, 4, 0), std::make_pair(int64_t{0}, int64_t{256}));
  EXPECT_EQ(AdamW::shard_range(1000, 4, 3), std::make_pair(int64_t{768}, int64_t{1000}));
  EXPECT_EQ(AdamW::shard_range(100, 4, 1), std::make_pair(int64_t{64}, int64_t{100}));
  EXPECT_EQ(AdamW::shard_range(100, 4, 2), std::make_pair(int64_t{100}, int64_t{100}));
}

}  // namespace
}  // namespace pft
