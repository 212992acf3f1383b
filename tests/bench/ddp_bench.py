#!/usr/bin/env python3
"""Reference PyTorch training loop for tests/bench/ddp_bench.sh and tests/gpu/device_check.sh.

The model, data, batch, sequence length, optimizer and step count of a `pft train` run, written
the way a PyTorch user would: a GPT-2 module (pft's architecture: learned positions, LayerNorm,
tanh GELU, tied head, SDPA attention with pft's document mask), torch DistributedDataParallel
(gloo on CPU, nccl on GPU; no_sync() on accumulation micro-batches, gradient_as_bucket_view), the
fused AdamW (foreach where fused is unavailable), clip_grad_norm_ (foreach). Launch with torchrun:

    torchrun --standalone --nproc_per_node 2 tests/bench/ddp_bench.py --vocab 512 --d-model 128 \
        --layers 2 --heads 4 --seq 128 --global-batch 16 --micro-batch 8 --steps 30 --warmup 5

With one process (plain `python3 ddp_bench.py ...`, or torchrun with 1 rank) no process group and
no DDP wrapper are made. --device cuda --dtype bf16 gives bf16 autocast with fp32 weights (pft's
train.precision: bf16); --compile wraps the model in torch.compile.

Data: pft's synthetic stream (src/train/synthetic_data.cpp: SplitMix64 per sample, packed
arithmetic-progression documents), sample for sample the same tokens, positions, documents and
loss masks, generated before the timed loop. The loss is the masked token cross entropy
normalised by the step's global target-token count (pft's Note [loss normalisation]), so the
gradients match pft's objective.

Timing: steps after --warmup, each from the start of its data hand-over to the loss read back
(loss.item(), as pft reads its loss every step), on rank 0. Last line:
    BASELINE tok_per_s=<float> steps=<n> step_s_median=<float>
"""

import argparse
import contextlib
import math
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

M64 = (1 << 64) - 1
NUM_TASKS = 3
MAX_ALPHABET = 64


class SplitMix64:
    def __init__(self, state):
        self.state = state & M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self, n):
        return self.next() % n


def synthetic_row(seed, sample, vocab, seq):
    """One packed row of pft's synthetic stream: (input, target, mask, position, doc) lists."""
    k = min(vocab, MAX_ALPHABET)
    min_len = max(2, seq // 8)
    max_len = max(min_len, seq // 2)
    rng = SplitMix64(((seed * 0xD1B54A32D192ED03) & M64) ^ (((sample + 1) * 0x9E3779B97F4A7C15) & M64))
    rng.next()
    tok, pos, doc = [], [], []
    d_index = 0
    while len(tok) < seq + 1:
        length = min_len + rng.uniform(max_len - min_len + 1)
        start = rng.uniform(k)
        stride = 1 + rng.uniform(NUM_TASKS)
        j = 0
        while j < length and len(tok) < seq + 1:
            t = (start + j * stride) % k
            if rng.uniform(20) == 0:
                t = rng.uniform(k)
            tok.append(t)
            pos.append(j)
            doc.append(d_index)
            j += 1
        d_index += 1
    same = [doc[t] == doc[t + 1] for t in range(seq)]
    return (tok[:seq], [tok[t + 1] if same[t] else 0 for t in range(seq)],
            [1.0 if s else 0.0 for s in same], pos[:seq], doc[:seq])


def make_batch(seed, first, rows, vocab, seq, device):
    cols = list(zip(*[synthetic_row(seed, first + r, vocab, seq) for r in range(rows)]))
    inputs, targets, mask, pos, doc = cols
    return dict(
        input_ids=torch.tensor(inputs, dtype=torch.long, device=device),
        targets=torch.tensor(targets, dtype=torch.long, device=device),
        loss_mask=torch.tensor(mask, dtype=torch.float32, device=device),
        position_ids=torch.tensor(pos, dtype=torch.long, device=device),
        doc_ids=torch.tensor(doc, dtype=torch.int32, device=device),
    )


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.attn_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.attn_proj(a.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab, d, layers, heads, max_seq):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(max_seq, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                nn.init.normal_(p, std=0.02 / (math.sqrt(2 * layers) if "proj" in name else 1))
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, input_ids, position_ids, doc_ids):
        t = input_ids.shape[1]
        # pft's Note [document masking]: causal & same document, one mask per forward.
        causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril_()
        mask = (doc_ids.unsqueeze(2) == doc_ids.unsqueeze(1)).logical_and_(causal).unsqueeze(1)
        x = self.wte(input_ids) + self.wpe(position_ids)
        for block in self.h:
            x = block(x, mask)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head


NO_DECAY = ("bias", "norm", "ln_", "wte", "wpe")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    accumulation = args.global_batch // (args.micro_batch * world)
    assert accumulation * args.micro_batch * world == args.global_batch, "batch does not divide"

    torch.manual_seed(args.seed)
    model = GPT2(args.vocab, args.d_model, args.layers, args.heads, args.seq).to(device)
    decay = [p for n, p in model.named_parameters() if not any(s in n for s in NO_DECAY)]
    no_decay = [p for n, p in model.named_parameters() if any(s in n for s in NO_DECAY)]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
        fused = "fused"
    except (RuntimeError, ValueError):
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)
        fused = "foreach"
    ddp = model
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if args.device == "cuda" else None,
            gradient_as_bucket_view=True, broadcast_buffers=False)
    fwd = torch.compile(ddp) if args.compile else ddp

    # The whole run's data, before the clock starts (pft makes its batches inside its step).
    # Every rank builds the step's whole global batch: its target-token count (which pft
    # all-reduces) is then known without communication, and the rank keeps its own rows.
    share = args.global_batch // world
    steps = []
    for s in range(args.steps):
        rows = make_batch(args.seed, s * args.global_batch, args.global_batch, args.vocab, args.seq,
                          device)
        total = int(rows["loss_mask"].sum().item())
        micro = []
        for m in range(accumulation):
            first = rank * share + m * args.micro_batch
            micro.append({k: v[first:first + args.micro_batch].contiguous() for k, v in rows.items()})
        steps.append((micro, total))

    autocast = torch.autocast(device_type=args.device, dtype=torch.bfloat16,
                              enabled=args.dtype == "bf16")
    times, losses = [], []
    for s, (micro, total) in enumerate(steps):
        t0 = time.perf_counter()
        loss_sum = 0.0
        local_tokens = 0.0
        for m, b in enumerate(micro):
            last = m + 1 == len(micro)
            ctx = ddp.no_sync() if (world > 1 and not last) else contextlib.nullcontext()
            with ctx:
                with autocast:
                    logits = fwd(b["input_ids"], b["position_ids"], b["doc_ids"])
                ce = F.cross_entropy(logits.float().view(-1, args.vocab), b["targets"].view(-1),
                                     reduction="none")
                masked_sum = (ce * b["loss_mask"].view(-1)).sum()
                # DDP averages over ranks; * world makes it the gradient of the global mean.
                (masked_sum * (world / total)).backward()
                loss_sum += masked_sum.detach()
                local_tokens += b["loss_mask"].sum()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss_sum / local_tokens))  # this rank's mean (report only)
        times.append(time.perf_counter() - t0)
    timed = times[args.warmup:]
    tokens = args.global_batch * args.seq * len(timed)
    tok_s = tokens / sum(timed)
    if rank == 0:
        print(f"baseline: torch {torch.__version__}, {world} rank(s) on {args.device}, "
              f"{torch.get_num_threads()} thread(s), {args.dtype}, AdamW {fused}, "
              f"compile={args.compile}; rank-0 loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        print(f"BASELINE tok_per_s={tok_s:.1f} steps={len(timed)} "
              f"step_s_median={statistics.median(timed):.4f}", flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
