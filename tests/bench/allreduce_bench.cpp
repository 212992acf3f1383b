// allreduce_bench: all-reduce of float32 buffers, 4 KiB .. 64 MiB, on the MPI backend.
//
//   launch/pft-mpirun -np 2 build/<dir>/bin/allreduce_bench [max_mib] [--bandwidth-only]
//       [--name NAME]
//
// Table 1 (bandwidth): raw MPI_Allreduce, pft's blocking all_reduce, and async all-reduces kept
// four in flight under each progress mode. Bus bandwidth as nccl-tests defines it:
// busbw = 2 (n-1)/n * bytes / time; times are the slowest rank's, best of a few rounds.
// Tables 2 and 3 (overlap): one async all-reduce issued before a loop of work sized to take
// about as long as the all-reduce, and waited on after it; "hidden" is the share of the
// communication time that disappeared behind the work: (t_comm + t_work - t_both) / t_comm.
// The work is float32 matmuls (the CPU is busy) or sleeps of the same length (the CPU is free,
// as while a GPU computes). Modes: thread (progress thread, yielding), thr+50 (it sleeps 50 us
// between tests), poll (progress only in wait()), poll+test (the loop calls is_completed()
// after every unit of work). Note [mpi progress] in src/comm/mpi_communicator.cpp draws the
// conclusion. --bandwidth-only stops after table 1.
// Last line of table 1's part: `RESULT name=NAME pft=<async-thr> baseline=<Allreduce> unit=GB/s
// ratio=...` at the largest size: pft's gradient all-reduce (async on the progress thread, several
// in flight, as the reducer issues its buckets) against raw MPI_Allreduce of the same bytes on
// the same ranks (NAME defaults to allreduce_<max_mib>MiB; tests/bench/multihost_bench.sh runs
// it across two hosts).
#include <mpi.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/mpi_communicator.h"
#include "config/config.h"
#include "core/leak_check.h"
#include "core/mpi_env.h"
#include "core/rank_env.h"

namespace {

using pft::MpiCommunicator;
using pft::MpiProgressMode;
using pft::MpiProgressOptions;
using pft::ReduceOp;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds `body` takes on the slowest rank; best of `rounds` (ranks start together).
double timed(const std::function<void()>& body, int rounds = 5) {
  double best = 1e30;
  for (int i = 0; i < rounds; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = now_s();
    body();
    double mine = now_s() - start;
    double slowest = 0;
    MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    best = std::min(best, slowest);
  }
  return best;
}

std::string size_label(int64_t bytes) {
  char b[32];
  if (bytes >= (1 << 20)) {
    std::snprintf(b, sizeof(b), "%lld MiB", static_cast<long long>(bytes >> 20));
  } else {
    std::snprintf(b, sizeof(b), "%lld KiB", static_cast<long long>(bytes >> 10));
  }
  return b;
}

struct Modes {
  std::unique_ptr<MpiCommunicator> thread, thread_sleep, poll;
};

}  // namespace

PFT_ASAN_KEEP_LIBRARIES_LOADED()  // the ASan build only (core/leak_check.h)

int main(int argc, char** argv) {
  pft::MpiEnvironment mpi_env;
  pft::RankEnv env = pft::discover_rank_env({});
  int64_t max_mib = 64;
  bool bandwidth_only = false;
  std::string result_name;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--bandwidth-only") == 0) {
      bandwidth_only = true;
    } else if (std::strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
      result_name = argv[++i];
    } else if (std::atoll(argv[i]) > 0) {
      max_mib = std::atoll(argv[i]);
    } else {
      std::fprintf(stderr, "allreduce_bench: unknown argument '%s'; usage: allreduce_bench "
                   "[max_mib] [--bandwidth-only] [--name NAME]\n", argv[i]);
      return 2;
    }
  }
  if (result_name.empty()) result_name = "allreduce_" + std::to_string(max_mib) + "MiB";
  const bool root = env.world_rank == 0;
  const int n = env.world_size;

  pft::DistConfig dist;
  Modes m;
  {
    MpiProgressOptions o;
    o.mode = MpiProgressMode::kThread;
    m.thread = std::make_unique<MpiCommunicator>(env, dist, o);
    o.poll_sleep_us = 50;
    m.thread_sleep = std::make_unique<MpiCommunicator>(env, dist, o);
    o.mode = MpiProgressMode::kPoll;
    o.poll_sleep_us = 0;
    m.poll = std::make_unique<MpiCommunicator>(env, dist, o);
  }
  if (root) {
    double load[3] = {0, 0, 0};
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
      std::fclose(f);
    }
    std::printf(
        "allreduce_bench: %d ranks on %s (%u cores, load average %.2f), %d torch "
        "thread(s) per rank, float32\n\n",
        n, env.host.c_str(), std::thread::hardware_concurrency(), load[0], env.threads);
  }

  std::vector<int64_t> sizes;
  for (int64_t b = 4 << 10; b <= (max_mib << 20); b *= 4) sizes.push_back(b);

  // ---- Table 1: bandwidth -----------------------------------------------------------------
  const double bus = n > 1 ? 2.0 * (n - 1) / n : 1.0;
  if (root) {
    std::printf("busbw GB/s   %10s %10s %10s %10s %11s %10s\n", "Allreduce", "Iallreduce",
                "blocking", "async-thr", "async-thr50", "async-poll");
  }
  constexpr int kInFlight = 4;
  double last_raw_gbs = 0, last_pft_gbs = 0;  // the largest size: the RESULT line
  for (int64_t bytes : sizes) {
    const int64_t numel = bytes / 4;
    const int iters = static_cast<int>(std::clamp<int64_t>((256LL << 20) / bytes, 4, 200));
    std::vector<at::Tensor> bufs;
    for (int i = 0; i < kInFlight; ++i) bufs.push_back(at::ones({numel}));
    const double per = 1.0 / iters;
    const double raw = timed([&] {
                         for (int i = 0; i < iters; ++i)
                           MPI_Allreduce(MPI_IN_PLACE, bufs[0].data_ptr(), static_cast<int>(numel),
                                         MPI_FLOAT, MPI_SUM, pft::world_comm(env));
                       }) *
                       per;
    const double raw_nb =
        timed([&] {
          for (int i = 0; i < iters; ++i) {
            MPI_Request r;
            MPI_Iallreduce(MPI_IN_PLACE, bufs[0].data_ptr(), static_cast<int>(numel), MPI_FLOAT,
                           MPI_SUM, pft::world_comm(env), &r);
            MPI_Wait(&r, MPI_STATUS_IGNORE);
          }
        }) *
        per;
    const double blocking = timed([&] {
                              for (int i = 0; i < iters; ++i)
                                m.thread->all_reduce(bufs[0], ReduceOp::kSum);
                            }) *
                            per;
    auto async_with = [&](MpiCommunicator& c) {
      return timed([&] {
               std::vector<std::unique_ptr<pft::Work>> works(kInFlight);
               for (int i = 0; i < iters; ++i) {
                 auto& slot = works[i % kInFlight];
                 if (slot) slot->wait();
                 slot = c.all_reduce_async(bufs[i % kInFlight], ReduceOp::kSum);
               }
               for (auto& w : works)
                 if (w) w->wait();
             }) *
             per;
    };
    const double thr = async_with(*m.thread);
    const double thr50 = async_with(*m.thread_sleep);
    const double poll = async_with(*m.poll);
    auto gbs = [&](double t) { return bus * static_cast<double>(bytes) / t / 1e9; };
    last_raw_gbs = gbs(raw);
    last_pft_gbs = gbs(thr);
    if (root)
      std::printf("%-12s %10.2f %10.2f %10.2f %10.2f %11.2f %10.2f\n", size_label(bytes).c_str(),
                  gbs(raw), gbs(raw_nb), gbs(blocking), gbs(thr), gbs(thr50), gbs(poll));
  }

  if (root)
    std::printf("RESULT name=%s pft=%.3f baseline=%.3f unit=GB/s ratio=%.3f\n",
                result_name.c_str(), last_pft_gbs, last_raw_gbs, last_pft_gbs / last_raw_gbs);
  std::fflush(stdout);
  if (bandwidth_only) {
    m.thread.reset();
    m.thread_sleep.reset();
    m.poll.reset();
    pft::release_rank_env(env);
    return 0;
  }

  // ---- Tables 2 and 3: overlap -------------------------------------------------------------
  // One unit of work: a 128x128 float32 matmul (on the CPU), or a sleep of the same length
  // (work that leaves the CPU free: GPU kernels of a rank whose MPI backend stages CUDA tensors,
  // I/O). Rank 0 calibrates the matmul and shares its length, so every rank does the same work.
  const at::Tensor a = at::rand({128, 128});
  const at::Tensor b = at::rand({128, 128});
  at::Tensor c = at::empty({128, 128});
  for (int i = 0; i < 20; ++i) at::mm_out(c, a, b);
  double unit_s = timed([&] {
                    for (int i = 0; i < 200; ++i) at::mm_out(c, a, b);
                  }) /
                  200;
  MPI_Bcast(&unit_s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  const auto matmul = [&] { at::mm_out(c, a, b); };
  const auto sleep = [&] { std::this_thread::sleep_for(std::chrono::duration<double>(unit_s)); };

  constexpr int kRounds = 9;  // interleaved, best of each: background load hits all alike
  const auto overlap_table = [&](const char* title, const std::function<void()>& unit) {
    if (root) {
      std::printf("\noverlap, %s; best of %d interleaved rounds\n", title, kRounds);
      std::printf("%-7s %8s %8s | ms with both: %7s %7s %7s %9s | hidden %%: %6s %6s %6s %9s\n",
                  "size", "comm ms", "work ms", "thread", "thr+50", "poll", "poll+test", "thread",
                  "thr+50", "poll", "poll+test");
    }
    for (int64_t bytes : sizes) {
      if (bytes < (1 << 20)) continue;
      at::Tensor buf = at::ones({bytes / 4});
      double t_comm = timed([&] { m.thread->all_reduce(buf, ReduceOp::kSum); });
      int units = std::max(1, static_cast<int>(t_comm / unit_s));
      MPI_Bcast(&units, 1, MPI_INT, 0, MPI_COMM_WORLD);
      const auto work = [&](const std::function<void()>& between) {
        for (int i = 0; i < units; ++i) {
          unit();
          between();
        }
      };
      auto overlapped = [&](MpiCommunicator& comm, bool test_between) {
        return timed(
            [&] {
              auto w = comm.all_reduce_async(buf, ReduceOp::kSum);
              work([&] {
                if (test_between) w->is_completed();
              });
              w->wait();
            },
            1);
      };
      double t_work = 1e30;
      double best[4] = {1e30, 1e30, 1e30, 1e30};
      for (int round = 0; round < kRounds; ++round) {
        t_comm = std::min(t_comm, timed([&] { m.thread->all_reduce(buf, ReduceOp::kSum); }, 1));
        t_work = std::min(t_work, timed([&] { work([] {}); }, 1));
        best[0] = std::min(best[0], overlapped(*m.thread, false));
        best[1] = std::min(best[1], overlapped(*m.thread_sleep, false));
        best[2] = std::min(best[2], overlapped(*m.poll, false));
        best[3] = std::min(best[3], overlapped(*m.poll, true));
      }
      auto hidden = [&](double t_both) { return 100.0 * (t_comm + t_work - t_both) / t_comm; };
      if (root)
        std::printf("%-7s %8.2f %8.2f | %21.2f %7.2f %7.2f %9.2f | %16.0f %6.0f %6.0f %9.0f\n",
                    size_label(bytes).c_str(), t_comm * 1e3, t_work * 1e3, best[0] * 1e3,
                    best[1] * 1e3, best[2] * 1e3, best[3] * 1e3, hidden(best[0]), hidden(best[1]),
                    hidden(best[2]), hidden(best[3]));
    }
  };
  overlap_table("work = CPU matmuls (every core busy)", matmul);
  overlap_table("work off the CPU (sleeps, as while a GPU computes)", sleep);

  m.thread.reset();
  m.thread_sleep.reset();
  m.poll.reset();
  pft::release_rank_env(env);
  return 0;
}
