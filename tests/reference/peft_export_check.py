"""Checks that Hugging Face PEFT reads what `pft ckpt export` writes for an adapter checkpoint.

    python3 tests/reference/peft_export_check.py --base DIR --adapter DIR --prompt TEXT
        --pft-jsonl FILE

Loads the base (transformers AutoModelForCausalLM, fp32, eager attention) and the exported
adapter directory (adapter_config.json + adapter_model.safetensors) with
peft.PeftModel.from_pretrained, greedy-decodes after the prompt (pft's byte tokenizer: token id =
byte value) as many tokens as pft did, and compares the token ids with "completion_ids" of the
first line of FILE, what `pft generate --model BASE --adapter CKPT --ignore-eos --jsonl` wrote.
Prints one line; exits 1 when they differ.
"""

import argparse
import sys

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--pft-jsonl", required=True)
    a = ap.parse_args()
    import json
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with open(a.pft_jsonl) as f:
        expect = json.loads(f.readline())["completion_ids"]
    base = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.float32,
                                                attn_implementation="eager")
    model = PeftModel.from_pretrained(base, a.adapter).eval()
    ids = torch.tensor([list(a.prompt.encode("utf-8"))])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=len(expect), min_new_tokens=len(expect),
                             do_sample=False, eos_token_id=None, pad_token_id=257)
    got = out[0, ids.shape[1]:].tolist()
    same = got == expect
    print(f"peft_export_check: {'ok' if same else 'DIFFERENT'}: peft {got} pft {expect} "
          f"({type(model.peft_config['default']).__name__})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
