"""Reference check of pft's transformer against Hugging Face transformers.

Reads the fixtures written by tests/model/model_parity_test.cpp from --dir:
    spec.json    the ModelSpec and the parameter names in pft's order
    params.pt    pft's parameters {HF name: tensor} (tensor_io format)
    <case>.pt    one batch: input_ids, position_ids, doc_ids (empty = one document per row),
                 targets, loss_mask, and pft's logits, token_loss, loss and grad.<name> for
                 every parameter
builds GPT2LMHeadModel / LlamaForCausalLM in fp32 with those weights and checks:
    * the parameter names, their order and shapes are Hugging Face's;
    * logits: max abs diff <= 1e-4, with each document of a packed row run *alone* through HF
      (positions from 0), so this also checks pft's document masking;
    * the masked mean cross-entropy: rel diff <= 1e-5, and each document's loss likewise;
    * the gradient of every parameter after backward of that loss: max abs diff <= 1e-4 times
      the gradient's largest magnitude.
Prints one line per check with the measured numbers; exits 1 if any check fails.

    python3 tests/reference/model_reference.py --dir DIR --cases packed,plain
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensor_io  # noqa: E402

LOGITS_ATOL = 1e-4
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4


def build_hf_model(spec):
    """The HF model with pft's architecture, fp32, eager attention, no dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    common = dict(vocab_size=spec["vocab_size"], tie_word_embeddings=spec["tie_embeddings"],
                  bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if spec["family"] == "gpt2":
        config = GPT2Config(n_positions=spec["max_seq_len"], n_embd=spec["d_model"],
                            n_layer=spec["n_layers"], n_head=spec["n_heads"], n_inner=spec["d_ff"],
                            activation_function="gelu_new", layer_norm_epsilon=spec["norm_eps"],
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
        cls = GPT2LMHeadModel
    else:
        config = LlamaConfig(hidden_size=spec["d_model"], intermediate_size=spec["d_ff"],
                             num_hidden_layers=spec["n_layers"],
                             num_attention_heads=spec["n_heads"],
                             num_key_value_heads=spec["n_kv_heads"], head_dim=spec["head_dim"],
                             max_position_embeddings=spec["max_seq_len"],
                             rms_norm_eps=spec["norm_eps"],
                             rope_parameters={"rope_type": "default",
                                              "rope_theta": spec["rope_theta"]},
                             attention_bias=False, mlp_bias=False, **common)
        cls = LlamaForCausalLM
    config._attn_implementation = "eager"
    model = cls(config).to(torch.float32)
    model.eval()  # no dropout (all rates are 0 anyway); gradients still flow
    return model


def segments(doc_row):
    """[(start, end)] of the runs of equal document ids in one row."""
    out, start = [], 0
    for t in range(1, len(doc_row) + 1):
        if t == len(doc_row) or doc_row[t] != doc_row[start]:
            out.append((start, t))
            start = t
    return out


class Checker:
    def __init__(self):
        self.failures = 0

    def check(self, ok, what):
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        self.failures += 0 if ok else 1

    def close(self, what, got, ref, rtol, ref_name):
        """Checks |got - ref| / |ref| <= rtol, printing both values."""
        rel = abs(got - ref) / abs(ref)
        self.check(rel <= rtol, f"{what} pft {got:.8f} {ref_name} {ref:.8f} rel diff {rel:.3e} "
                   f"(<= {rtol:g})")


def run_case(model, names, case, chk):
    b, t = case["input_ids"].shape
    doc_ids = case["doc_ids"]
    packed = doc_ids.numel() > 0
    model.zero_grad(set_to_none=True)
    rows, docs = [], []  # docs: (row, start, end, sum of masked CE, target count)
    for r in range(b):
        spans = segments(doc_ids[r].tolist()) if packed else [(0, t)]
        parts = []
        for s, e in spans:
            out = model(input_ids=case["input_ids"][r:r + 1, s:e],
                        position_ids=case["position_ids"][r:r + 1, s:e], use_cache=False)
            parts.append(out.logits[0])
            docs.append((r, s, e))
        rows.append(torch.cat(parts, 0))
    logits = torch.stack(rows, 0)  # (B, T, V)
    mask = case["loss_mask"]
    token_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), case["targets"].reshape(-1),
        reduction="none").view(b, t)
    loss = (token_loss * mask).sum() / mask.sum()
    loss.backward()

    diff = (logits.detach() - case["logits"]).abs().max().item()
    chk.check(diff <= LOGITS_ATOL, f"logits max abs diff {diff:.3e} (<= {LOGITS_ATOL:g}), "
              f"{len(docs)} documents run alone")
    chk.close("loss", case["loss"].item(), loss.item(), LOSS_RTOL, "hf")
    worst = 0.0
    for r, s, e in docs:
        m = mask[r, s:e]
        if m.sum() == 0:
            continue
        ref_doc = (token_loss[r, s:e] * m).sum().item() / m.sum().item()
        got_doc = (case["token_loss"][r, s:e] * m).sum().item() / m.sum().item()
        worst = max(worst, abs(got_doc - ref_doc) / abs(ref_doc))
    chk.check(worst <= LOSS_RTOL, f"per-document losses: worst rel diff {worst:.3e}")

    params = dict(model.named_parameters())
    worst_name, worst_err = "", 0.0
    for name in names:
        g_ref = params[name].grad
        g_got = case["grad." + name]
        scale = max(g_ref.abs().max().item(), 1e-12)
        err = (g_got - g_ref).abs().max().item() / scale
        if err > worst_err:
            worst_name, worst_err = name, err
        if err > GRAD_RTOL:
            chk.check(False, f"grad {name}: max diff {err:.3e} of scale {scale:.3e}")
    chk.check(worst_err <= GRAD_RTOL, f"{len(names)} gradients: worst relative max diff "
              f"{worst_err:.3e} ({worst_name}) (<= {GRAD_RTOL:g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cases", default="packed,plain")
    args = ap.parse_args()
    torch.manual_seed(0)

    spec = tensor_io.read_json(args.dir, "spec.json")
    names = spec["parameter_names"]
    params = tensor_io.load(os.path.join(args.dir, "params.pt"))
    model = build_hf_model(spec)
    chk = Checker()
    print(f"model_reference: {spec['family']} d={spec['d_model']} L={spec['n_layers']} "
          f"H={spec['n_heads']} KV={spec['n_kv_heads']} V={spec['vocab_size']} "
          f"tied={spec['tie_embeddings']}")

    hf = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    ours = [(n, tuple(params[n].shape)) for n in names]
    chk.check(hf == ours and list(params.keys()) == names,
              f"{len(hf)} parameter names, order and shapes equal Hugging Face's")
    if hf != ours:
        for a, b in zip(hf + [None] * len(ours), ours + [None] * len(hf)):
            if a != b:
                print(f"    hf {a} vs pft {b}")
        return 1
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(params[n])

    for name in args.cases.split(","):
        print(f" case {name}:")
        run_case(model, names, tensor_io.load(os.path.join(args.dir, name + ".pt")), chk)
    print(f"model_reference: {'FAILED' if chk.failures else 'passed'}"
          f"{f' ({chk.failures} failures)' if chk.failures else ''}")
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
