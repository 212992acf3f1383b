#!/usr/bin/env python3
"""Checkpoint benchmark: write throughput against dd, and the training stall per save.

Write throughput comes from the ckpt_bench binary (tests/bench/ckpt_bench.cpp: the trainer's
synchronous save path for a 124M-parameter GPT-2 with its AdamW state, alternating with dd of the
same byte count into the same directory, medians of 5 rounds). Then it runs `pft train` twice on a GPT-2 of 124M parameters (d_model 768, 12 layers, vocab 50,257) on
the CPU, saving a checkpoint every 3 steps, once with checkpoint.async=false and once with
checkpoint.async=true, then reads the {"kind":"checkpoint"} and {"kind":"train"} lines of
metrics.jsonl:

  ckpt_write        (ckpt_bench) checkpoint bytes / write time (HDF5 write + checksums + fsync +
                    rename + fsync of the directory), against `dd if=/dev/zero bs=4M conv=fsync`
                    of the same byte count into the same directory (MB/s)
  ckpt_stall        training stall per save (median), async (pft) against sync (baseline), s
  ckpt_stall_step   async stall per save (pft) against the median training step time (baseline)

usage: ckpt_bench.py [--bin build/cpu/bin] [--dir /tmp/pft-ckpt-bench] [--steps 9]
Prints RESULT lines (docs/performance.md). Needs ~6 GiB of RAM and ~3 GiB of disk in --dir.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = ["model.family=gpt2", "model.d_model=768", "model.n_layers=12", "model.n_heads=12",
         "model.vocab_size=50257", "model.max_seq_len=1024", "data.seq_len=64",
         "train.global_batch_size=1", "train.micro_batch_size=1", "train.warmup_steps=1",
         "run.log_every=1", "checkpoint.keep_last=1"]


def train(pft, run_dir, steps, every, async_mode, threads):
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = MODEL + [f"train.steps={steps}", f"checkpoint.every_steps={every}",
                    f"checkpoint.async={'true' if async_mode else 'false'}",
                    f"run.dir={run_dir}", f"run.threads={threads}"]
    cmd = [pft, "train", os.path.join(ROOT, "configs/quickstart.yaml")]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"pft train failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    saves, steps_s, params = [], [], 0
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "checkpoint":
                saves.append(rec)
            elif rec["kind"] == "train":
                steps_s.append(rec["step_time_s"])
            elif rec["kind"] == "start":
                params = rec["parameters"]
    return saves, steps_s, params


def result(name, pft, base, unit):
    print(f"RESULT name={name} pft={pft:.4g} baseline={base:.4g} unit={unit} ratio={pft / base:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/cpu/bin"))
    ap.add_argument("--dir", default="/tmp/pft-ckpt-bench")
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    pft = os.path.join(a.bin, "pft")
    write = subprocess.run([os.path.join(a.bin, "ckpt_bench"), a.dir], capture_output=True,
                           text=True)
    if write.returncode != 0:
        sys.exit(f"ckpt_bench failed:\n{write.stdout}\n{write.stderr}")
    print(write.stdout, end="")

    sync_saves, sync_steps, params = train(pft, os.path.join(a.dir, "sync"), a.steps, a.every,
                                           False, a.threads)
    shutil.rmtree(os.path.join(a.dir, "sync"), ignore_errors=True)
    async_saves, async_steps, _ = train(pft, os.path.join(a.dir, "async"), a.steps, a.every,
                                        True, a.threads)
    shutil.rmtree(os.path.join(a.dir, "async"), ignore_errors=True)
    assert params >= 100_000_000, params
    nbytes = statistics.median(s["bytes"] for s in sync_saves)
    print(f"# {params} parameters, {len(sync_saves)} saves of {nbytes / 1e6:.0f} MB per mode; "
          f"sync write_s {[round(s['write_s'], 2) for s in sync_saves]}, "
          f"async write_s {[round(s['write_s'], 2) for s in async_saves]}")
    sync_stall = statistics.median(s["stall_s"] for s in sync_saves)
    async_stall = statistics.median(s["stall_s"] for s in async_saves)
    # Steps that did not overlap a background save: the plain step time.
    step_time = statistics.median(sync_steps[1:])
    print(f"# stalls sync {[round(s['stall_s'], 3) for s in sync_saves]}, async "
          f"{[round(s['stall_s'], 3) for s in async_saves]}; step times sync "
          f"{[round(t, 2) for t in sync_steps]}, async {[round(t, 2) for t in async_steps]}")
    result("ckpt_stall", async_stall, sync_stall, "s")
    result("ckpt_stall_step", async_stall, step_time, "s")


if __name__ == "__main__":
    main()
