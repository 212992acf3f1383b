"""Reference check of pft's parameter-efficient fine-tuning against Hugging Face PEFT.

Reads the fixtures written by pft's C++ PEFT parity test from --dir:
    spec.json         the ModelSpec (as for model_reference.py / train_reference.py)
    params.pt         the base model's parameters {HF name: tensor} (tensor_io format)
    peft.json         {"method": "lora" | "prompt_tuning" | "prefix_tuning", "num_virtual_tokens",
                       "lora_rank", "lora_alpha", "target_modules", "lr", "beta1", "beta2", "eps",
                       "weight_decay" (must be 0)}
    adapter_init.pt   pft's initial adapter tensors under the names of PEFT's
                      get_peft_model_state_dict (= the tensor names in adapter_model.safetensors)
    batch.pt          input_ids (B, T) int64 (real tokens only), targets (B, T) int64,
                      loss_mask (B, T) float32
    results.pt        pft's logits (B, T, V) at the real tokens before the step, loss (fp64
                      scalar) and final.<name> for every adapter tensor after one AdamW step
peft.json's "base_dtype" "bf16" (default "fp32"): params.pt holds a bf16 base (pft's
model.base_dtype, run under bf16 autocast); the HF model is cast with model.to(torch.bfloat16)
before get_peft_model, whose autocast_adapter_dtype keeps the adapters fp32, so the forward runs
entirely in bf16 but for the adapters (pft keeps the residual stream and norms fp32 and runs the
adapters' matmuls under autocast: the two differ by bf16 rounding), and the BF16 tolerances
below apply.
wraps the Hugging Face model (model_reference.build_hf_model) with peft.get_peft_model, loads
adapter_init with set_peft_model_state_dict, runs one forward (attention_mask of ones, no
position_ids) and one torch.optim.AdamW step (foreach=False, no clipping) on the adapter, and
checks:
    * adapter_init holds exactly PEFT's adapter tensor names and shapes, and was loaded bitwise;
    * logits of the real tokens: max abs diff <= 1e-4;
    * loss = sum(cross_entropy(logits, targets) * loss_mask) / sum(loss_mask): rel diff <= 1e-5;
    * every adapter tensor after the step: |pft - torch| <= 1e-4 * |torch| + 1e-2 * lr
      elementwise, and the whole update (final - initial) within 1e-3 in norm;
    * every base parameter bitwise unchanged, and only adapter tensors trainable.
Prints one line per check with the measured numbers; exits 1 if any check fails.

PEFT's conventions (peft as pinned in requirements.txt), n = num_virtual_tokens, L layers:
    lora           y = base(x) + (alpha / r) * (x @ A^T) @ B^T, A = lora_A (r, in), B = lora_B
                   (out, r) for every Linear / GPT-2 Conv1D whose module name equals a
                   target_modules entry or ends with "." + entry (so GPT-2's "c_proj" is attn.c_proj
                   and mlp.c_proj); fan_in_fan_out only says the Conv1D base weight is (in, out),
                   A and B keep the Linear layout. Names:
                   base_model.model.<HF module>.lora_A.weight / .lora_B.weight.
    prompt_tuning  prompt_embeddings (n, d_model) prepended to the token embeddings; the whole
                   sequence of n + T runs causally through the model, virtual token v at
                   position v and real token t at position n + t (GPT-2's wpe and Llama's RoPE
                   alike); the model returns n + T positions, the first n are dropped here.
    prefix_tuning  prompt_embeddings (n, L * 2 * KV * head_dim) (KV = n_kv_heads), used as a
                   key/value cache before the real tokens: for layer l, head g, virtual token v,
                   dim i: key = E[v, (2l) * KV * hd + g * hd + i], value = E[v, (2l + 1) * KV *
                   hd + g * hd + i]; no RoPE on them; real token t at position n + t, attending
                   to all n prefix entries and the real tokens <= t (GQA: query head j reads
                   kv head j // (n_heads / KV)). prefix_projection=False only.

    python3 tests/reference/peft_reference.py --dir DIR
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensor_io  # noqa: E402
from model_reference import Checker, build_hf_model  # noqa: E402

LOGITS_ATOL = 1e-4
LOSS_RTOL = 1e-5
WEIGHT_RTOL = 1e-4
WEIGHT_ATOL_LR = 1e-2  # times lr: Adam's fp32 noise, Note [Adam and fp32] in train_reference.py
UPDATE_RTOL = 1e-3

# A bf16 base. bf16 keeps 8 significant bits: one unit in the last place of a logit near 0.5 is
# 2^-9 = 2e-3. pft (fp32 residual stream and norms, adapters under autocast) and PEFT (everything
# bf16 but the adapters) round in different places, so they agree to bf16 rounding. Measured on
# the six bf16 cases (peft 0.21.2, torch 2.11, max |logit| 0.39-0.60): logits max abs diff
# 2.0e-3 to 3.9e-3 (1-2 units of the largest logit), loss rel diff 4e-6 to 3.8e-5, update-norm
# diff up to 0.177 (a LoRA B). Adam's first step moves each element by about lr * sign(gradient),
# so an element whose gradient is within the bf16 noise may flip and cost 2 lr: the elementwise
# check is reported but not enforced, and the whole update (final - initial) is compared in norm
# instead (an unrelated gradient would differ by ~1.4). Bounds: about 2.5x, 5x and 1.4x the
# worst measured.
BF16_LOGITS_ATOL = 1e-2
BF16_LOSS_RTOL = 2e-4
BF16_UPDATE_RTOL = 0.25


def peft_config(p, spec):
    """The PEFT config object for peft.json."""
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    if p["method"] == "lora":
        return LoraConfig(r=p["lora_rank"], lora_alpha=p["lora_alpha"],
                          target_modules=list(p["target_modules"]), lora_dropout=0.0,
                          fan_in_fan_out=spec["family"] == "gpt2", bias="none",
                          task_type=TaskType.CAUSAL_LM)
    if p["method"] == "prompt_tuning":
        return PromptTuningConfig(num_virtual_tokens=p["num_virtual_tokens"],
                                  task_type=TaskType.CAUSAL_LM)
    if p["method"] == "prefix_tuning":
        return PrefixTuningConfig(num_virtual_tokens=p["num_virtual_tokens"],
                                  prefix_projection=False, task_type=TaskType.CAUSAL_LM)
    raise ValueError(f"unknown method {p['method']!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()

    import peft
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    spec, p = tensor_io.read_json(args.dir, "spec.json"), tensor_io.read_json(args.dir, "peft.json")
    params = tensor_io.load(os.path.join(args.dir, "params.pt"))
    init = tensor_io.load(os.path.join(args.dir, "adapter_init.pt"))
    batch = tensor_io.load(os.path.join(args.dir, "batch.pt"))
    ours = tensor_io.load(os.path.join(args.dir, "results.pt"))
    method, n_virtual = p["method"], p.get("num_virtual_tokens", 0)
    chk = Checker()
    print(f"peft_reference: {spec['family']} {method} (peft {peft.__version__}) "
          f"L={spec['n_layers']} H={spec['n_heads']} KV={spec['n_kv_heads']} "
          f"batch {tuple(batch['input_ids'].shape)}"
          + (f" r={p['lora_rank']} alpha={p['lora_alpha']} targets={','.join(p['target_modules'])}"
             if method == "lora" else f" virtual tokens={n_virtual}"))
    if p.get("weight_decay", 0.0) != 0.0:
        print("peft_reference: weight_decay must be 0")
        return 1

    bf16 = p.get("base_dtype", "fp32") == "bf16"
    model = build_hf_model(spec)
    base = dict(model.named_parameters())  # the same Parameter objects after wrapping
    if sorted(base) != sorted(params) or any(base[k].shape != params[k].shape for k in base):
        print("peft_reference: params.pt does not hold the HF model's parameter names and shapes")
        return 1
    with torch.no_grad():
        for k, t in base.items():
            t.copy_(params[k])
    if bf16:  # exact: params.pt's values are bf16 already
        if any(params[k].dtype != torch.bfloat16 for k in params):
            print("peft_reference: base_dtype bf16 but params.pt is not bf16")
            return 1
        model.to(torch.bfloat16)
        base = dict(model.named_parameters())
    logits_atol = BF16_LOGITS_ATOL if bf16 else LOGITS_ATOL
    loss_rtol = BF16_LOSS_RTOL if bf16 else LOSS_RTOL
    update_rtol = BF16_UPDATE_RTOL if bf16 else UPDATE_RTOL
    torch.manual_seed(0)  # PEFT's own random init, overwritten below
    model = get_peft_model(model, peft_config(p, spec), autocast_adapter_dtype=True)
    if bf16:
        dtypes = {t.dtype for t in model.parameters() if t.requires_grad}
        chk.check(dtypes == {torch.float32}, f"bf16 base: PEFT's adapters are {dtypes}")
    model.eval()  # no dropout anywhere

    want = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    got = {k: tuple(v.shape) for k, v in init.items()}
    chk.check(want == got, f"adapter_init: {len(got)} tensors with PEFT's names and shapes")
    if want != got:
        for k in sorted(set(want) | set(got)):
            if want.get(k) != got.get(k):
                print(f"    {k}: peft {want.get(k)} pft {got.get(k)}")
        return 1
    result = set_peft_model_state_dict(model, init)
    # prompt_embeddings is loaded into the prompt encoder apart from model.load_state_dict, which
    # therefore reports it as unexpected
    unexpected = [k for k in result.unexpected_keys if k != "prompt_embeddings"]
    loaded = get_peft_model_state_dict(model)
    same = all(torch.equal(loaded[k], init[k]) for k in init)
    chk.check(same and not unexpected,
              f"adapter_init loaded bitwise ({len(unexpected)} unexpected keys)")
    trainable = {k: t for k, t in model.named_parameters() if t.requires_grad}
    frozen_base = all(not t.requires_grad for t in base.values())
    chk.check(frozen_base and len(trainable) == len(init),
              f"{len(trainable)} trainable tensors = the adapter's {len(init)}; "
              f"{len(base)} base parameters frozen")
    if method == "lora" and all(not torch.any(init[k] != 0) for k in init if "lora_B" in k):
        print("    note: every lora_B is zero, so the logits do not depend on the adapter and "
              "lora_A does not move")

    ids, targets, mask = batch["input_ids"], batch["targets"], batch["loss_mask"]
    b, t = ids.shape
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    logits = out.logits
    if method == "prompt_tuning":
        assert logits.shape[1] == n_virtual + t, tuple(logits.shape)
        logits = logits[:, n_virtual:]  # the virtual tokens' own outputs
    assert logits.shape == (b, t, spec["vocab_size"]), tuple(logits.shape)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                            targets.reshape(-1), reduction="none")
    loss = (nll * mask.reshape(-1)).sum() / mask.sum()

    diff = (logits.detach().float() - ours["logits"]).abs().max().item()
    chk.check(diff <= logits_atol, f"logits max abs diff {diff:.3e} (<= {logits_atol:g}) "
              f"over {b}x{t} real tokens (max |logit| {logits.detach().abs().max().item():.3g})")
    chk.close("loss", ours["loss"].item(), loss.item(), loss_rtol, "peft")

    loss.backward()
    opt = torch.optim.AdamW(list(trainable.values()), lr=p["lr"], betas=(p["beta1"], p["beta2"]),
                            eps=p["eps"], weight_decay=0.0, foreach=False, fused=False)
    opt.step()

    final = get_peft_model_state_dict(model)
    missing = [k for k in final if "final." + k not in ours]
    chk.check(not missing, f"results.pt holds final.<name> for all {len(final)} adapter tensors"
              + (f" (missing {missing[:3]})" if missing else ""))
    atol = WEIGHT_ATOL_LR * p["lr"]
    worst, worst_name, worst_upd, worst_upd_name, moved = -1.0, "", 0.0, "", 0
    for k in final:
        if "final." + k not in ours:
            continue
        ref, got, start = final[k].double(), ours["final." + k].double(), init[k].double()
        d = (got - ref).abs()
        excess = (d - WEIGHT_RTOL * ref.abs() - atol).max().item()
        if excess > worst:
            worst, worst_name = excess, k
        if excess > 0 and not bf16:
            chk.check(False, f"{k}: max diff {d.max().item():.3e}, {excess:.3e} beyond "
                      f"{WEIGHT_RTOL:g} rel + {atol:.2e}")
        ref_upd = torch.linalg.vector_norm(ref - start)
        if ref_upd > 0:
            moved += 1
            upd = (torch.linalg.vector_norm((got - start) - (ref - start)) / ref_upd).item()
            if upd > worst_upd:
                worst_upd, worst_upd_name = upd, k
            if upd > update_rtol:
                chk.check(False, f"{k}: update differs by {upd:.3e} (norm, <= {update_rtol:g})")
        print(f"    {k}: max abs diff {d.max().item():.3e}, update norm {ref_upd.item():.3e}")
    chk.check(worst <= 0 or bf16, f"{len(final)} adapter tensors after the step "
              f"{'(bf16 base: not enforced) vs' if bf16 else 'within'} {WEIGHT_RTOL:g} rel "
              f"+ {atol:.1e}; closest call {worst_name} ({worst:+.2e}); {moved} moved, worst "
              f"update-norm diff {worst_upd:.2e} ({worst_upd_name})")

    changed = [k for k, v in base.items() if not torch.equal(v.detach(), params[k])]
    chk.check(not changed, f"{len(base)} base parameters bitwise unchanged"
              + (f" (changed: {changed[:3]})" if changed else ""))
    print(f"peft_reference: {'FAILED' if chk.failures else 'passed'}"
          f"{f' ({chk.failures} failures)' if chk.failures else ''}")
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
