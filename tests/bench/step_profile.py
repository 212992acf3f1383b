#!/usr/bin/env python3
"""Where the time of one training step goes (not a test): the ddp_bench `small` shapes on one
rank, one thread, fp32, measured op by op with torch's own kernels, the ones pft also calls.

    python3 tests/bench/step_profile.py [--rows 1024] [--d-model 256] [--vocab 50257]

Times (median of --repeat runs) of the output layer's three GEMMs (logits = h @ wte^T, and the
two backward GEMMs), of the cross entropy over the logits (forward + backward), and of a whole
forward + backward + AdamW step of the same GPT-2 model (tests/bench/ddp_bench.py's module), so
the shares can be read off: docs/performance.md, "Data parallel".
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def timed(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1024, help="tokens per rank per step (4 x 256)")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    h = torch.randn(a.rows, a.d_model)
    w = torch.randn(a.vocab, a.d_model) * 0.02
    logits = h @ w.t()
    dlogits = torch.randn_like(logits)
    target = torch.randint(0, a.vocab, (a.rows,))

    fwd = timed(lambda: h @ w.t(), a.repeat)
    bwd_h = timed(lambda: dlogits @ w, a.repeat)
    bwd_w = timed(lambda: dlogits.t() @ h, a.repeat)

    def ce():
        x = logits.detach().requires_grad_(True)
        F.cross_entropy(x, target, reduction="sum").backward()

    ce_t = timed(ce, a.repeat)

    import ddp_bench  # the reference module, pft's architecture

    model = ddp_bench.GPT2(a.vocab, a.d_model, a.layers, a.heads, a.seq)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    ids = torch.randint(0, a.vocab, (a.rows // a.seq, a.seq))
    pos = torch.arange(a.seq).expand_as(ids)

    def step():
        opt.zero_grad(set_to_none=False)
        out = model(ids, pos, torch.zeros_like(ids))
        F.cross_entropy(out.flatten(0, 1), ids.flatten(), reduction="sum").backward()
        opt.step()

    step_t = timed(step, max(2, a.repeat // 2))
    head = fwd + bwd_h + bwd_w
    print(f"rows {a.rows} d_model {a.d_model} vocab {a.vocab}, 1 thread, fp32 (medians):")
    print(f"  output layer GEMMs : {head:.3f} s (fwd {fwd:.3f}, bwd dX {bwd_h:.3f}, bwd dW {bwd_w:.3f})"
          f" = {100 * head / step_t:.0f}% of the step")
    print(f"  cross entropy f+b  : {ce_t:.3f} s = {100 * ce_t / step_t:.0f}%")
    print(f"  whole step         : {step_t:.3f} s; the rest (4 blocks, embeddings, AdamW): "
          f"{step_t - head - ce_t:.3f} s = {100 * (step_t - head - ce_t) / step_t:.0f}%")
    flops = 3 * 2 * a.rows * a.d_model * a.vocab
    print(f"  output layer GEMM rate: {flops / head / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
