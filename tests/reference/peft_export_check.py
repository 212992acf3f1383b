"""Checks that Hugging Face PEFT reads what `pft ckpt export` writes for an adapter checkpoint.

    python3 tests/reference/peft_export_check.py --base DIR --adapter DIR --prompt TEXT
        --pft-jsonl FILE --new-tokens N [--virtual-tokens N]

Loads the base (transformers AutoModelForCausalLM, fp32, eager attention) and the exported
adapter directory (adapter_config.json + adapter_model.safetensors) with
peft.PeftModel.from_pretrained, greedy-decodes after the prompt (pft's byte tokenizer: token id =
byte value) as many tokens as pft did, and compares the token ids with "completion_ids" of the
first line of FILE, what `pft generate --model BASE --adapter CKPT --ignore-eos --jsonl` wrote.

So that it cannot pass on an empty or half-read export, it also requires:
  - exactly --new-tokens ids from pft and from PEFT (an empty completion would compare equal);
  - with --virtual-tokens N (prompt / prefix tuning): adapter_config.json's num_virtual_tokens,
    the rows of the file's `prompt_embeddings` and the loaded PeftModel's config all equal N, and
    the loaded embedding table is the file's, bit for bit (PEFT really reads the N tokens);
  - without it (LoRA): a LoRA config, lora_A and lora_B tensors in the file, and loaded lora_B
    matrices that are not all zero (PEFT's init: the trained weights did arrive).
Prints one line; exits 1 when anything differs.
"""

import argparse
import json
import os
import sys

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--pft-jsonl", required=True)
    ap.add_argument("--new-tokens", type=int, required=True,
                    help="how many ids pft generated (--max-new-tokens with --ignore-eos)")
    ap.add_argument("--virtual-tokens", type=int, default=0,
                    help="prompt / prefix tuning: the adapter's virtual tokens (0: LoRA)")
    a = ap.parse_args()
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    problems = []
    with open(a.pft_jsonl) as f:
        expect = json.loads(f.readline())["completion_ids"]
    if len(expect) != a.new_tokens:
        problems.append(f"pft generated {len(expect)} ids, expected {a.new_tokens}")
    with open(os.path.join(a.adapter, "adapter_config.json")) as f:
        config = json.load(f)
    tensors = load_file(os.path.join(a.adapter, "adapter_model.safetensors"))
    table = tensors.get("prompt_embeddings")
    if a.virtual_tokens:
        if config.get("num_virtual_tokens") != a.virtual_tokens:
            problems.append(f"adapter_config.json num_virtual_tokens "
                            f"{config.get('num_virtual_tokens')}, expected {a.virtual_tokens}")
        if table is None or table.shape[0] != a.virtual_tokens:
            problems.append(f"prompt_embeddings {None if table is None else tuple(table.shape)}, "
                            f"expected {a.virtual_tokens} rows")
    else:
        if config.get("peft_type") != "LORA":
            problems.append(f"peft_type {config.get('peft_type')}, expected LORA")
        if table is not None or not any(".lora_A." in k for k in tensors) \
                or not any(".lora_B." in k for k in tensors):
            problems.append(f"expected LoRA tensors only, got {sorted(tensors)[:6]}")
    base = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.float32,
                                                attn_implementation="eager")
    model = PeftModel.from_pretrained(base, a.adapter).eval()
    ids = torch.tensor([list(a.prompt.encode("utf-8"))])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=len(expect), min_new_tokens=len(expect),
                             do_sample=False, eos_token_id=None, pad_token_id=257)
    got = out[0, ids.shape[1]:].tolist()
    loaded = model.peft_config["default"]
    if a.virtual_tokens:
        if getattr(loaded, "num_virtual_tokens", None) != a.virtual_tokens:
            problems.append(f"PEFT loaded num_virtual_tokens "
                            f"{getattr(loaded, 'num_virtual_tokens', None)}")
        weight = model.prompt_encoder["default"].embedding.weight.detach()
        if table is not None and (weight.shape != table.shape or not torch.equal(weight, table)):
            problems.append(f"PEFT's prompt table {tuple(weight.shape)} is not the file's")
    else:
        b = [p for n, p in model.named_parameters() if ".lora_B." in n]
        if not b or all(float(p.abs().max()) == 0.0 for p in b):
            problems.append("PEFT loaded no trained LoRA B matrix (all zero or none)")
    if got != expect:
        problems.append("PEFT's tokens differ from pft's")
    ok = not problems
    print(f"peft_export_check: {'ok' if ok else 'DIFFERENT'}: peft {got} pft {expect} "
          f"({type(loaded).__name__}, {a.virtual_tokens} virtual tokens)"
          + ("" if ok else "; " + "; ".join(problems)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
