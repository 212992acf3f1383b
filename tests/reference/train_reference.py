"""Reference check of pft's optimizer step against PyTorch.

Reads the fixtures written by tests/train/train_parity_test.cpp from --dir:
    spec.json     the ModelSpec and parameter names (as for model_reference.py)
    train.json    steps, micro_batches per step, lr schedule, AdamW settings, grad_clip, no_decay
    params.pt     pft's initial parameters {HF name: tensor} (tensor_io format)
    batches.pt    s{step}.m{micro}.{input_ids, position_ids, targets, loss_mask}
    results.pt    pft's per-step loss, lr, grad_norm and its final parameters final.<name>
builds the Hugging Face model (model_reference.build_hf_model) with those weights and replays
the steps: torch.optim.AdamW (foreach=False) with a decay group and a no-decay group (a name
containing any no_decay substring), the learning rate from the schedule below, the masked loss
sum of every micro-batch divided by the step's total target tokens before backward, and
torch.nn.utils.clip_grad_norm_ when grad_clip > 0. Checks:
    * lr of every step equal to the schedule's (rel <= 1e-12);
    * loss of every step: rel diff <= 1e-5;
    * grad norm before clipping: rel diff <= 1e-4 (and above grad_clip when clipping);
    * every final weight: |pft - torch| <= 1e-4 * |torch| + atol elementwise, atol the larger
      of 1e-2 * lr and twice PyTorch's own fp32-vs-fp64 difference in that tensor (Adam's fp32
      sensitivity, Note [Adam and fp32] below; the count of elements beyond 1e-4 rel alone is
      printed);
      each parameter's whole update (final - initial) within 1e-3 in norm; every one moved.
Prints one line per check with the measured numbers; exits 1 if any check fails.

The schedule (the same formulas as src/train/lr_schedule.h), for 0-based step s:
    s <  W: lr = L * (s + 1) / W
    s >= W: p = min(1, (s - W) / max(1, S - W))
            constant L; linear L * (1 - (1 - m) * p); cosine L * (m + (1 - m) * (1 + cos(pi p)) / 2)

    python3 tests/reference/train_reference.py --dir DIR
"""

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensor_io  # noqa: E402
from model_reference import Checker, build_hf_model  # noqa: E402

LOSS_RTOL = 1e-5
NORM_RTOL = 1e-4
WEIGHT_RTOL = 1e-4
WEIGHT_ATOL_LR = 1e-2  # times the peak lr; see Note [Adam and fp32]
UPDATE_RTOL = 1e-3


def lr_at(step, t):
    peak, warmup, total, m = t["lr"], t["warmup_steps"], t["total_steps"], t["min_lr_ratio"]
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    if t["schedule"] == "constant":
        return peak
    if t["schedule"] == "linear":
        return peak * (1 - (1 - m) * p)
    return peak * (m + (1 - m) * 0.5 * (1 + math.cos(math.pi * p)))


def replay(model, params, batches, t, dtype):
    """The reference trajectory in `dtype`: per-step loss and grad norm, final weights (fp64)."""
    model = model.to(dtype)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(params[n].to(dtype))
    named = list(model.named_parameters())
    decay = [p for n, p in named if not any(s and s in n for s in t["no_decay"])]
    no_decay = [p for n, p in named if any(s and s in n for s in t["no_decay"])]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"],
                            foreach=False, fused=False)
    all_params = [p for _, p in named]
    out = {"loss": [], "grad_norm": []}
    for s in range(t["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(s, t)
        opt.zero_grad(set_to_none=True)
        micro = [{k: batches[f"s{s}.m{m}.{k}"]
                  for k in ("input_ids", "position_ids", "targets", "loss_mask")}
                 for m in range(t["micro_batches"])]
        total = sum(b["loss_mask"].sum() for b in micro).to(dtype)
        loss_sum = 0.0
        for b in micro:
            logits = model(input_ids=b["input_ids"], position_ids=b["position_ids"],
                           use_cache=False).logits
            # fp32 log-softmax in the fp32 run, as pft; fp64 in the fp64 run
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).to(torch.promote_types(dtype, torch.float32)),
                b["targets"].reshape(-1), reduction="none")
            masked = (nll * b["loss_mask"].reshape(-1).to(nll.dtype)).sum()
            (masked / total).backward()
            loss_sum += masked.item()
        if t["grad_clip"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(all_params, t["grad_clip"]).item()
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in all_params])).item()
        opt.step()
        out["loss"].append(loss_sum / total.item())
        out["grad_norm"].append(norm)
    out["final"] = {n: p.detach().double() for n, p in named}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()

    spec, t = tensor_io.read_json(args.dir, "spec.json"), tensor_io.read_json(args.dir, "train.json")
    params = tensor_io.load(os.path.join(args.dir, "params.pt"))
    batches = tensor_io.load(os.path.join(args.dir, "batches.pt"))
    ours = tensor_io.load(os.path.join(args.dir, "results.pt"))
    model = build_hf_model(spec)
    chk = Checker()
    print(f"train_reference: {spec['family']} steps={t['steps']} micro_batches={t['micro_batches']} "
          f"grad_clip={t['grad_clip']}")

    base_names = list(spec["parameter_names"])
    assert [n for n, _ in model.named_parameters()] == base_names, "parameter order differs"
    ref32 = replay(model, params, batches, t, torch.float32)
    ref64 = replay(build_hf_model(spec), params, batches, t, torch.float64)

    for s in range(t["steps"]):
        lr, loss, norm = lr_at(s, t), ref32["loss"][s], ref32["grad_norm"][s]
        got_lr, got_loss, got_norm = (ours[k][s].item() for k in ("lr", "loss", "grad_norm"))
        chk.check(abs(got_lr - lr) <= 1e-12 * lr, f"step {s}: lr pft {got_lr:.10e} torch {lr:.10e}")
        chk.close(f"step {s}: loss", got_loss, loss, LOSS_RTOL, "torch")
        rel = abs(got_norm - norm) / norm
        clipping = t["grad_clip"] > 0
        chk.check(rel <= NORM_RTOL and (not clipping or norm > t["grad_clip"]),
                  f"step {s}: grad norm pft {got_norm:.6f} torch {norm:.6f} rel diff {rel:.3e}"
                  + (f" (clipped to {t['grad_clip']:g})" if clipping else ""))

    # Note [Adam and fp32]: Adam divides by sqrt(v), so an element whose gradient is a near
    # cancellation (|g| ~ eps, e.g. -8e-9 against a typical 6e-4) moves by a rounding-dependent
    # fraction of lr. Such elements differ between any two fp32 computations of the same step --
    # PyTorch's own fp32 and fp64 runs differ by up to a few percent of lr on them -- so the
    # elementwise bound has an absolute part: the larger of WEIGHT_ATOL_LR * lr and twice
    # PyTorch's own fp32-vs-fp64 difference in that tensor. Each tensor's whole update must also
    # agree to UPDATE_RTOL in norm, which is what catches a wrong decay group, eps, beta or lr.
    beyond_rtol = total = 0
    worst_excess, worst_name, worst_update, worst_update_name, torch_noise = -1.0, "", 0.0, "", 0.0
    for n in base_names:
        start, ref, got = params[n].double(), ref32["final"][n], ours["final." + n].double()
        noise = (ref - ref64["final"][n]).abs().max().item()
        torch_noise = max(torch_noise, noise)
        atol = max(WEIGHT_ATOL_LR * t["lr"], 2 * noise)
        diff = (got - ref).abs()
        beyond_rtol += int((diff > WEIGHT_RTOL * ref.abs() + 1e-7).sum())
        total += ref.numel()
        excess = (diff - WEIGHT_RTOL * ref.abs() - atol).max().item()
        if excess > worst_excess:
            worst_excess, worst_name = excess, n
        if excess > 0:
            chk.check(False, f"weight {n}: {excess:.3e} beyond {WEIGHT_RTOL:g} rel + {atol:.2e}")
        update = torch.linalg.vector_norm((got - start) - (ref - start)) / \
            torch.linalg.vector_norm(ref - start).clamp_min(1e-30)
        if update.item() > worst_update:
            worst_update, worst_update_name = update.item(), n
        if update.item() > UPDATE_RTOL or not torch.any(ref != start):
            chk.check(False, f"weight {n}: update differs by {update.item():.3e} (norm) or did not move")
    chk.check(True, f"{len(base_names)} updated weights within {WEIGHT_RTOL:g} rel + atol; "
              f"{beyond_rtol} of {total} elements beyond {WEIGHT_RTOL:g} rel alone; closest call "
              f"{worst_name} ({worst_excess:+.2e}); worst update-norm diff {worst_update:.2e} "
              f"({worst_update_name}); PyTorch fp32 vs fp64 worst weight diff {torch_noise:.2e}")
    print(f"train_reference: {'FAILED' if chk.failures else 'passed'}"
          f"{f' ({chk.failures} failures)' if chk.failures else ''}")
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
