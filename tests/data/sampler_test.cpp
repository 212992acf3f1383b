// Sampler and loader order guarantees (data/sampler.h, data/loader.h), run under mpirun with 1, 2
// and 4 ranks:
//   - each epoch of a task stream is a permutation; the PRNG is pinned (portable order);
//   - the union over ranks of the micro-batches of steps [0, K) equals the 1-rank stream, slot by
//     slot and byte for byte; every task's samples are consumed exactly once, in order;
//   - resuming at step k from a saved state, or by seeking, on this world size continues the
//     exact 1-rank stream;
//   - evaluation sharding covers every item exactly once with equal round counts on all ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "core/error.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "store_test_util.h"

namespace pft {
namespace {

using testing_store::MemorySource;

int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Every rank's int64 records, concatenated in rank order, on every rank.
std::vector<int64_t> allgather(const std::vector<int64_t>& mine) {
  const int n = world_size();
  const int count = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(n)), displs(static_cast<size_t>(n));
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
  int total = 0;
  for (int i = 0; i < n; ++i) {
    displs[static_cast<size_t>(i)] = total;
    total += counts[static_cast<size_t>(i)];
  }
  std::vector<int64_t> all(static_cast<size_t>(total));
  MPI_Allgatherv(mine.data(), count, MPI_INT64_T, all.data(), counts.data(), displs.data(),
                 MPI_INT64_T, MPI_COMM_WORLD);
  return all;
}

TEST(Sampler, EpochsArePermutationsAndPinned) {
  TaskSampler s(1234, "add", 10, 3);
  for (int64_t e = 0; e < 3; ++e) {
    std::set<int64_t> seen;
    for (int64_t i = 0; i < 10; ++i) {
      const SampleRef r = s.at(e * 10 + i);
      EXPECT_EQ(r.epoch, e);
      EXPECT_EQ(r.slot, (r.example + e) % 3);  // round robin over templates by epoch
      seen.insert(r.example);
    }
    EXPECT_EQ(seen.size(), 10u);
  }
  // Pinned: the order must not change with the platform, compiler or standard library.
  std::vector<int64_t> first;
  for (int64_t i = 0; i < 10; ++i) first.push_back(s.at(i).example);
  EXPECT_EQ(first, (std::vector<int64_t>{4, 1, 7, 0, 2, 6, 9, 3, 5, 8}));
  EXPECT_EQ(derive_seed(1234, "order", "add", 0), 0x0943e74823ec58c1ULL);
  // Random access equals sequential access (the cache is not part of the state).
  TaskSampler t(1234, "add", 10, 3);
  EXPECT_EQ(t.at(25).example, s.at(25).example);
  EXPECT_EQ(t.at(3).example, s.at(3).example);
}

TEST(Sampler, UniformBelowIsUnbiasedEnough) {
  std::mt19937_64 g(42);
  std::vector<int64_t> hist(7);
  for (int i = 0; i < 70000; ++i) ++hist[static_cast<size_t>(uniform_below(g, 7))];
  for (int64_t h : hist) EXPECT_NEAR(static_cast<double>(h), 10000.0, 400.0);
}

TEST(Sampler, MixtureIsExamplesProportionalAndDeterministic) {
  const TaskMixture m(5, {100, 300, 0, 600});
  std::vector<int64_t> hist(4);
  for (int64_t step = 0; step < 2000; ++step)
    for (int64_t slot = 0; slot < 10; ++slot) ++hist[static_cast<size_t>(m.task_of(step, slot))];
  EXPECT_EQ(hist[2], 0);
  EXPECT_NEAR(static_cast<double>(hist[0]) / 20000, 0.1, 0.01);
  EXPECT_NEAR(static_cast<double>(hist[1]) / 20000, 0.3, 0.015);
  EXPECT_NEAR(static_cast<double>(hist[3]) / 20000, 0.6, 0.015);
  const TaskMixture again(5, {100, 300, 0, 600});
  for (int64_t step = 0; step < 50; ++step) EXPECT_EQ(m.task_of(step, 3), again.task_of(step, 3));
}

// data.mixing: the weights of each strategy against hand-computed values.
TEST(Sampler, MixingStrategiesWeights) {
  const std::vector<int64_t> n = {100, 2500, 0, 10000};
  EXPECT_EQ(mixture_weights(n, {"proportional", 0, 1.0, {}}), (std::vector<int64_t>{100, 2500, 0, 10000}));
  EXPECT_EQ(mixture_weights(n, {"proportional", 1000, 1.0, {}}), (std::vector<int64_t>{100, 1000, 0, 1000}));
  EXPECT_EQ(mixture_weights(n, {"uniform", 0, 1.0, {}}), (std::vector<int64_t>{1, 1, 0, 1}));
  // T = 2: sqrt(n) = 10, 50, -, 100 -> 2^30 * (0.1, 0.5, 0, 1).
  const int64_t top = int64_t{1} << 30;
  EXPECT_EQ(mixture_weights(n, {"temperature", 0, 2.0, {}}),
            (std::vector<int64_t>{std::llround(top * 0.1), top / 2, 0, top}));
  // T = 1 is proportional (up to the integer scaling).
  const std::vector<int64_t> t1 = mixture_weights(n, {"temperature", 0, 1.0, {}});
  EXPECT_NEAR(static_cast<double>(t1[0]) / static_cast<double>(t1[3]), 0.01, 1e-9);
  // The drawn shares follow the weights: T = 2 gives the small task 10 / 160 of the slots.
  const TaskMixture m(5, mixture_weights(n, {"temperature", 0, 2.0, {}}));
  std::vector<int64_t> hist(4);
  for (int64_t step = 0; step < 2000; ++step)
    for (int64_t slot = 0; slot < 10; ++slot) ++hist[static_cast<size_t>(m.task_of(step, slot))];
  EXPECT_NEAR(static_cast<double>(hist[0]) / 20000, 10.0 / 160, 0.01);
  EXPECT_EQ(hist[2], 0);
  EXPECT_THROW(mixture_weights({0, 0}, {"uniform", 0, 1.0, {}}), InputError);
  EXPECT_THROW(mixture_weights(n, {"zipf", 0, 1.0, {}}), InputError);
  // fixed: the given weights, scaled to 2^30 at the largest; a task without examples gets 0.
  EXPECT_EQ(mixture_weights(n, {"fixed", 0, 1.0, {1.0, 3.0, 5.0, 4.0}}),
            (std::vector<int64_t>{top / 4, 3 * (top / 4), 0, top}));
  EXPECT_EQ(mixture_weights(n, {"fixed", 0, 1.0, {0.0, 1e-12, 1.0, 2.0}}),
            (std::vector<int64_t>{0, 1, 0, top}));  // a positive weight never rounds to 0
  try {
    mixture_weights(n, {"fixed", 0, 1.0, {1.0, 2.0}});
    ADD_FAILURE() << "two weights for four tasks accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("data.mixing_weights: 2 weight(s) for 4 task(s)"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(mixture_weights(n, {"fixed", 0, 1.0, {1.0, -1.0, 1.0, 1.0}}), InputError);
  // round_robin: whole steps per task, the tasks with examples in turn.
  const std::vector<int64_t> rr = mixture_weights(n, {"round_robin", 0, 1.0, {}});
  EXPECT_EQ(rr, (std::vector<int64_t>{1, 1, 0, 1}));
  const TaskMixture turns(5, rr, /*round_robin=*/true);
  const std::vector<int32_t> expected = {0, 1, 3, 0, 1, 3, 0};
  for (int64_t step = 0; step < 7; ++step)
    for (int64_t slot = 0; slot < 5; ++slot)
      EXPECT_EQ(turns.task_of(step, slot), expected[static_cast<size_t>(step)])
          << "step " << step << " slot " << slot;
}

// Three tasks of different sizes (small ones wrap epochs within the test) and template counts.
struct Tasks {
  MemorySource a{37, 2, 2, 40, 1}, b{11, 1, 5, 90, 2}, c{5, 3, 2, 20, 3};
  std::vector<LoaderTask> list() { return {{"a", &a}, {"b", &b}, {"c", &c}}; }
};

LoaderOptions options(int world, int rank) {
  LoaderOptions o;
  o.seed = 77;
  o.seq_len = 64;
  o.micro_batch_size = 2;
  o.global_batch_size = 16;  // 8 slots: 8, 4 or 2 per rank on 1, 2, 4 ranks
  o.world_size = world;
  o.rank = rank;
  o.pad_id = 255;
  return o;
}

constexpr int64_t kSteps = 12;

// Records (step, slot, row, task, template, example, sample) of every document in a micro-batch,
// then its rows hash.
void record(int64_t step, int64_t slot, const PackedRows& rows, std::vector<int64_t>& out) {
  for (size_t r = 0; r < rows.docs.size(); ++r)
    for (const DocRef& d : rows.docs[r])
      out.insert(out.end(),
                 {step, slot, static_cast<int64_t>(r), d.task, d.template_id, d.example, d.sample});
  out.insert(out.end(), {step, slot, -1, -1, -1, -1,
                         static_cast<int64_t>(testing_store::rows_hash(rows) >> 1)});
}

using Tuples = std::vector<std::array<int64_t, 7>>;

Tuples to_tuples(const std::vector<int64_t>& flat) {
  Tuples t(flat.size() / 7);
  for (size_t i = 0; i < t.size(); ++i)
    std::copy_n(flat.begin() + static_cast<std::ptrdiff_t>(7 * i), 7, t[i].begin());
  std::sort(t.begin(), t.end());
  return t;
}

// The 1-rank stream of steps [from, to), every slot, computed locally.
Tuples reference(int64_t from, int64_t to, LoaderState* state_at_from = nullptr) {
  Tasks tasks;
  TaskLoader one(tasks.list(), options(1, 0));
  one.seek(from);
  if (state_at_from) *state_at_from = one.state();
  std::vector<int64_t> flat;
  PackedRows rows;
  for (int64_t s = from; s < to; ++s) {
    one.plan_next_step();
    for (int64_t m = 0; m < one.micro_batches_per_rank(); ++m) {
      one.fill(m, rows);
      record(s, m, rows, flat);
    }
  }
  return to_tuples(flat);
}

// This world's stream of steps [from, to) from `loader`, gathered from every rank.
Tuples distributed(TaskLoader& loader, int64_t from, int64_t to) {
  std::vector<int64_t> flat;
  PackedRows rows;
  const int64_t a = loader.micro_batches_per_rank();
  for (int64_t s = from; s < to; ++s) {
    loader.plan_next_step();
    EXPECT_EQ(loader.planned_step(), s);
    for (int64_t m = 0; m < a; ++m) {
      loader.fill(m, rows);
      record(s, world_rank() * a + m, rows, flat);
    }
  }
  return to_tuples(allgather(flat));
}

TEST(Loader, RanksSplitOneGlobalStream) {
  Tasks tasks;
  TaskLoader loader(tasks.list(), options(world_size(), world_rank()));
  EXPECT_EQ(loader.micro_batches_per_rank() * world_size(), loader.slots_per_step());
  const Tuples got = distributed(loader, 0, kSteps);
  const Tuples want = reference(0, kSteps);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "the union over " << world_size()
                           << " ranks differs from the 1-rank stream";

  // Every task's samples [0, cursor) were consumed exactly once (no skip, no duplicate).
  std::map<int64_t, std::vector<int64_t>> samples;
  for (const auto& t : got)
    if (t[2] >= 0) samples[t[3]].push_back(t[6]);
  for (int32_t k = 0; k < loader.num_tasks(); ++k) {
    std::vector<int64_t>& v = samples[k];
    std::sort(v.begin(), v.end());
    ASSERT_EQ(static_cast<int64_t>(v.size()), loader.state().next_sample[static_cast<size_t>(k)])
        << "task " << k;
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], static_cast<int64_t>(i));
  }
  // The small tasks wrapped into later epochs, so the test covers epoch boundaries.
  EXPECT_GT(loader.state().next_sample[2], 2 * 5);
  EXPECT_GT(loader.pad_fraction(), 0.0);
  EXPECT_LT(loader.pad_fraction(), 0.25);
}

TEST(Loader, ResumeOnAnyWorldSizeContinuesTheStream) {
  for (const int64_t k : {int64_t{1}, int64_t{5}, int64_t{9}}) {
    LoaderState saved;
    const Tuples want = reference(k, kSteps, &saved);  // state saved by a 1-rank run at step k

    // Restore the 1-rank state on this world size.
    Tasks tasks;
    TaskLoader restored(tasks.list(), options(world_size(), world_rank()));
    restored.restore(saved);
    EXPECT_TRUE(distributed(restored, k, kSteps) == want) << "restore at step " << k;

    // Seek (replay the plans) on this world size: the same state, the same stream.
    Tasks tasks2;
    TaskLoader sought(tasks2.list(), options(world_size(), world_rank()));
    sought.seek(k);
    EXPECT_EQ(sought.state(), saved);
    EXPECT_TRUE(distributed(sought, k, kSteps) == want) << "seek to step " << k;

    // A state saved by this world size resumes on 1 rank (the check above, reversed).
    Tasks tasks3;
    TaskLoader here(tasks3.list(), options(world_size(), world_rank()));
    for (int64_t s = 0; s < k; ++s) here.plan_next_step();
    EXPECT_EQ(here.state(), saved);
  }
}

TEST(Loader, RestoreRejectsOtherTasks) {
  Tasks tasks;
  TaskLoader loader(tasks.list(), options(1, 0));
  const LoaderState two_tasks{3, {1, 2}};
  EXPECT_THROW(loader.restore(two_tasks), InputError);
}

TEST(EvalShard, EveryItemExactlyOnceWithoutHangs) {
  const int w = world_size(), r = world_rank();
  for (const int64_t n : {0, 1, 3, 5, 7, 13, 100}) {
    for (const int64_t batch : {1, 2, 3}) {
      const EvalShard shard(n, w, r, batch);
      int64_t rounds_min = 0, rounds_max = 0;
      const int64_t rounds = shard.rounds();
      MPI_Allreduce(&rounds, &rounds_min, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
      MPI_Allreduce(&rounds, &rounds_max, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
      ASSERT_EQ(rounds_min, rounds_max) << "ranks disagree on the number of rounds";
      std::vector<int64_t> mine;
      for (int64_t k = 0; k < rounds; ++k) {
        const EvalBatch b = shard.batch(k);
        // Every rank joins the round's collective, with or without items ("no more" = empty).
        int64_t size = b.size(), total = 0;
        MPI_Allreduce(&size, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        EXPECT_GT(total, 0);
        for (int64_t i = b.begin; i < b.end; ++i) mine.push_back(i);
      }
      EXPECT_EQ(static_cast<int64_t>(mine.size()), shard.local_items());
      std::vector<int64_t> all = allgather(mine);
      std::sort(all.begin(), all.end());
      ASSERT_EQ(static_cast<int64_t>(all.size()), n) << "n=" << n << " batch=" << batch;
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(all[static_cast<size_t>(i)], i);
    }
  }
}

}  // namespace
}  // namespace pft
