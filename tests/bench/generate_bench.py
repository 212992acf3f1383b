#!/usr/bin/env python3
"""Transformers' side of tests/bench/generate_bench.sh: the model, the prompts, the baseline.

    generate_bench.py prepare --gguf FILE --out DIR --prompts N
        Loads FILE with transformers' GGUF loader (dequantized, fp32) and writes DIR/model (a
        Hugging Face directory: save_pretrained of the model and its tokenizer) and
        DIR/prompts.txt: N prompts of varied length (deterministic), tokenized by that tokenizer,
        one line of space-separated ids each -- what both sides generate from.
    generate_bench.py run --model DIR --prompts FILE --out FILE --batch B --max-new-tokens M
                          --threads T
        Greedy `generate` (do_sample=False, use_cache=True, fp32, SDPA attention) of the prompts
        in pft's batches (sorted by length, longest first, B per batch), left-padded with an attention mask (each row keeps its own
        positions, as pft does), exactly M new tokens per prompt (no eos stop: eos_token_id is
        cleared), T torch threads. Writes the new ids, one line per prompt in file order, and prints
            BASELINE tok_per_s=<float> new_tokens=<n> seconds=<float>
        timing the generate calls only (tokenization and padding are outside).
    generate_bench.py compare A B
        Prints how many lines (prompts) of two id files are identical.
"""

import argparse
import os
import sys
import time


def prepare(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import torch

    d, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    out = os.path.join(args.out, "model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # Varied lengths (about 10 to 90 tokens), like the prompts of a held-out evaluation.
    subjects = ["the moon", "a small river", "prime numbers", "the French revolution",
                "photosynthesis", "a cup of tea", "the stock market", "an old lighthouse",
                "machine learning", "the city of Lyon", "volcanoes", "a chess opening"]
    asks = ["Write one sentence about {}.",
            "Explain {} to a child in simple words, and give one example.",
            "List three facts about {}. Keep each fact short and do not repeat yourself.",
            "Here is a topic: {}. Write a short title for an essay about it, then a first "
            "paragraph that introduces the topic, mentions why it matters to most people, and "
            "ends with a question for the reader."]
    lines = []
    for i in range(args.prompts):
        text = asks[(i // len(subjects)) % len(asks)].format(subjects[i % len(subjects)])
        text = f"Question {i + 1}. " + text + " Answer:" * (1 + i % 3)
        ids = tok(text)["input_ids"]
        lines.append(" ".join(str(t) for t in ids))
    with open(os.path.join(args.out, "prompts.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    lengths = [len(l.split()) for l in lines]
    print(f"prepared {out} and {len(lines)} prompts of {min(lengths)}..{max(lengths)} tokens")


def run(args):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    model.eval()
    pad = 0
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = pad
    prompts = [[int(t) for t in l.split()] for l in open(args.prompts) if l.strip()]
    # pft's batches (Generator::generate_all): longest first, ties in file order.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs, new_tokens, seconds = [None] * len(prompts), 0, 0.0
    with torch.inference_mode():
        for first in range(0, len(prompts), args.batch):
            rows = [prompts[i] for i in order[first:first + args.batch]]
            longest = max(len(r) for r in rows)
            ids = torch.tensor([[pad] * (longest - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (longest - len(r)) + [1] * len(r) for r in rows])
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 use_cache=True, max_new_tokens=args.max_new_tokens,
                                 min_new_tokens=0, eos_token_id=None, pad_token_id=pad)
            seconds += time.perf_counter() - t0
            new = out[:, longest:]
            new_tokens += new.numel()
            for i, row in zip(order[first:first + args.batch], new):
                outputs[i] = " ".join(str(int(t)) for t in row)
    with open(args.out, "w") as f:
        f.write("\n".join(outputs) + "\n")
    print(f"BASELINE tok_per_s={new_tokens / seconds:.1f} new_tokens={new_tokens} "
          f"seconds={seconds:.3f}")


def compare(args):
    a = [l.split() for l in open(args.a) if l.strip()]
    b = [l.split() for l in open(args.b) if l.strip()]
    same = sum(x == y for x, y in zip(a, b))
    print(f"identical {same} {max(len(a), len(b))}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("--gguf", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--prompts", type=int, default=256)
    s = sub.add_parser("run")
    s.add_argument("--model", required=True)
    s.add_argument("--prompts", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--max-new-tokens", type=int, default=32)
    s.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("compare")
    s.add_argument("a")
    s.add_argument("b")
    args = p.parse_args()
    {"prepare": prepare, "run": run, "compare": compare}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
