// Checkpoint write throughput: the synchronous save path of the trainer (train/checkpointing.h's
// checkpoint_contents borrowing the live flat buffers -> ckpt::write_checkpoint: HDF5 write,
// checksums, fsync, rename, fsync of the directory) for a GPT-2 of 124M parameters with its AdamW
// state, against `dd if=/dev/zero bs=4M conv=fsync` of the same byte count into the same
// directory. Rounds alternate pft and dd (the disk's state drifts on a shared machine); medians.
//
//   build/<dir>/bin/ckpt_bench [DIR=/tmp/pft-ckpt-bench] [ROUNDS=5]
// Prints `RESULT name=ckpt_write ...` (docs/performance.md). tests/bench/ckpt_bench.py runs it
// and adds the training-stall figures.
//
//   build/<dir>/bin/ckpt_bench DIR ROUNDS seal [D_MODEL=512] [N_LAYERS=6]
// The cost of the whole-file seal (Note [file seal], core/hdf5.cpp): save and full load
// (read_checkpoint, every dataset) of the same checkpoint with the seal (pft) and without
// (baseline, WriteOptions::seal = false), alternating; medians. Prints `RESULT
// name=ckpt_seal_save ...` and `name=ckpt_seal_load ...` in seconds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ckpt/reader.h"
#include "ckpt/writer.h"
#include "config/config.h"
#include "model/flat_params.h"
#include "model/transformer.h"
#include "train/checkpointing.h"
#include "train/optimizer.h"

namespace fs = std::filesystem;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double dd_seconds(const fs::path& file, uint64_t bytes) {
  const uint64_t count = std::max<uint64_t>(1, (bytes + (4u << 20) - 1) / (4u << 20));
  const std::string cmd = "dd if=/dev/zero of=" + file.string() +
                          " bs=4M count=" + std::to_string(count) + " conv=fsync status=none";
  const auto t0 = std::chrono::steady_clock::now();
  if (std::system(cmd.c_str()) != 0) std::exit(3);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fs::remove(file);
  return s * static_cast<double>(bytes) / static_cast<double>(count * (4u << 20));
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path dir = argc > 1 ? argv[1] : "/tmp/pft-ckpt-bench";
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const bool seal_mode = argc > 3 && std::string(argv[3]) == "seal";
  const std::string d_model = argc > 4 ? argv[4] : (seal_mode ? "512" : "768");
  const std::string n_layers = argc > 5 ? argv[5] : (seal_mode ? "6" : "12");
  fs::create_directories(dir);
  const pft::Config config = pft::parse_config(
      "model: {family: gpt2, d_model: " + d_model + ", n_layers: " + n_layers +
          ", n_heads: " + (seal_mode ? "8" : "12") + ", vocab_size: 50257}\n"
          "train: {steps: 10, global_batch_size: 1, lr: 0.0003}\n",
      "ckpt_bench.yaml");
  pft::Transformer model(pft::model_spec_from_config(config.model));
  model->reset_parameters(1234);
  pft::FlatParameters params = pft::FlatParameters::from_module(*model, config.train.no_decay);
  pft::AdamW optimizer(params, pft::AdamWOptions{});
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {  // moments that are not all zero
    optimizer.state(g).exp_avg.copy_(params.data(g)).mul_(0.1);
    optimizer.state(g).exp_avg_sq.copy_(params.data(g)).square_();
  }
  pft::TrainProgress progress;
  progress.step = 10;
  progress.data_source = "synthetic";
  const auto rng = pft::gather_rng_states(nullptr, false);

  if (seal_mode) {
    std::vector<double> save[2], load[2];  // [0] sealed, [1] unsealed
    uint64_t file_bytes = 0;
    for (int r = 0; r < rounds; ++r) {
      for (int unsealed = 0; unsealed < 2; ++unsealed) {
        const pft::ckpt::Contents c = pft::checkpoint_contents(
            config, 1, params, optimizer, nullptr, progress, rng, /*snapshot=*/false);
        const fs::path file = dir / "bench_seal.h5";
        pft::ckpt::WriteOptions wo;
        wo.seal = unsealed == 0;
        const pft::ckpt::WriteStats st = pft::ckpt::write_checkpoint(file, c, wo);
        file_bytes = st.file_bytes;
        save[unsealed].push_back(st.seconds);
        const auto t0 = std::chrono::steady_clock::now();
        const pft::ckpt::Contents back = pft::ckpt::read_checkpoint(file);
        load[unsealed].push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        fs::remove(file);
        std::printf("# round %d %s: save %.3f s, load %.3f s\n", r + 1,
                    unsealed ? "unsealed" : "sealed", save[unsealed].back(),
                    load[unsealed].back());
      }
    }
    std::printf("# %lld parameters; checkpoint file %llu bytes\n",
                static_cast<long long>(params.numel()),
                static_cast<unsigned long long>(file_bytes));
    const double ss = median(save[0]), su = median(save[1]), ls = median(load[0]),
                 lu = median(load[1]);
    std::printf("RESULT name=ckpt_seal_save pft=%.3f baseline=%.3f unit=s ratio=%.3f\n", ss, su,
                ss / su);
    std::printf("RESULT name=ckpt_seal_load pft=%.3f baseline=%.3f unit=s ratio=%.3f\n", ls, lu,
                ls / lu);
    return 0;
  }

  std::vector<double> pft_mbps, dd_mbps;
  uint64_t bytes = 0;
  for (int r = 0; r < rounds; ++r) {
    const pft::ckpt::Contents c = pft::checkpoint_contents(config, 1, params, optimizer, nullptr,
                                                           progress, rng, /*snapshot=*/false);
    const fs::path file = dir / "bench_step.h5";
    const pft::ckpt::WriteStats st = pft::ckpt::write_checkpoint(file, c);
    bytes = st.data_bytes;
    fs::remove(file);
    pft_mbps.push_back(static_cast<double>(st.data_bytes) / 1e6 / st.seconds);
    dd_mbps.push_back(static_cast<double>(st.data_bytes) / 1e6 /
                      dd_seconds(dir / "dd.bin", st.data_bytes));
    std::printf("# round %d: pft %.0f MB/s, dd %.0f MB/s\n", r + 1, pft_mbps.back(),
                dd_mbps.back());
  }
  std::printf("# %lld parameters; %llu bytes per checkpoint (model + AdamW moments)\n",
              static_cast<long long>(params.numel()), static_cast<unsigned long long>(bytes));
  const double p = median(pft_mbps), d = median(dd_mbps);
  std::printf("RESULT name=ckpt_write pft=%.1f baseline=%.1f unit=MB/s ratio=%.3f\n", p, d, p / d);
  return 0;
}
