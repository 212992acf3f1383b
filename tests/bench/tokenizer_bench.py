#!/usr/bin/env python3
"""Tokenizer encode throughput: pft vs Hugging Face `tokenizers`, one thread each.

    tests/bench/tokenizer_bench.py [--tool build/tok/tests/data/pft_tokenize]
                                   [--tokenizer datasets/tokenizers/gpt2] [--mb 12]

Generates a deterministic corpus of >= 10 MB (English-like text drawn from the GPT-2 vocab's
words with Zipf frequencies, numbers and punctuation, plus multilingual, emoji and code lines),
encodes it line by line with
  - pft:  pft_tokenize bench (Tokenizer::encode_append, one call per line, one thread),
  - HF:   Tokenizer.encode per line, encode_batch and encode_batch_fast, with
          TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1 (single thread),
checks the ids are identical, and prints MB/s (best of 3 passes each; input bytes / seconds).
The last line is
    RESULT name=tokenizer pft=<MB/s> baseline=<MB/s> unit=MB/s ratio=<pft/baseline>
where the baseline is the fastest of the single-thread HF variants.
"""
import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import array  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import tokenizer_parity  # noqa: E402  (the multilingual word pools)


def english_words(gpt2_dir):
    with open(os.path.join(gpt2_dir, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    words = sorted(t[1:] for t in vocab if t.startswith("Ġ") and t[1:].isalpha() and t[1:].isascii())
    return words


def make_corpus(target_bytes, words, seed=7):
    rng = random.Random(seed)
    weights = [1.0 / (i + 10) for i in range(len(words))]  # Zipf-like
    rng.shuffle(words)
    lines = []
    size = 0
    while size < target_bytes:
        r = rng.random()
        if r < 0.8:  # English-like prose
            n = rng.randrange(8, 120)
            ws = rng.choices(words, weights, k=n)
            parts = []
            for i, w in enumerate(ws):
                if i == 0 or rng.random() < 0.06:
                    w = w.capitalize()
                parts.append(w)
                x = rng.random()
                if x < 0.05:
                    parts.append(", ")
                elif x < 0.09:
                    parts.append(". ")
                elif x < 0.1:
                    parts.append(f" {rng.randrange(100000)} ")
                elif x < 0.105:
                    parts.append("'s ")
                else:
                    parts.append(" ")
            line = "".join(parts).strip() + "."
        elif r < 0.9:  # multilingual and emoji
            line = " ".join(rng.choice(tokenizer_parity.ALL_WORDS) for _ in range(rng.randrange(5, 40)))
        else:  # code
            indent = "    " * rng.randrange(0, 4)
            line = indent + " ".join(rng.choice(tokenizer_parity.WORDS["code"] + words[:200])
                                     for _ in range(rng.randrange(3, 15)))
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return lines


def hf_tokenizer(spec):
    if os.path.isdir(spec) and os.path.exists(os.path.join(spec, "encoder.json")):
        tok = Tokenizer(models.BPE.from_file(os.path.join(spec, "encoder.json"),
                                             os.path.join(spec, "vocab.bpe")))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(["<|endoftext|>"])
        return tok
    return Tokenizer.from_file(spec if spec.endswith(".json") else os.path.join(spec, "tokenizer.json"))


def best_of(passes, fn):
    best = None
    out = None
    for _ in range(passes):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", help="pft_tokenize (default: the newest build/*/tests/data/pft_tokenize)")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "datasets", "tokenizers", "gpt2"))
    ap.add_argument("--mb", type=float, default=12.0, help="corpus size in MB (>= 10)")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    tool = args.tool
    if tool is None:
        found = sorted(glob.glob(os.path.join(ROOT, "build", "*", "tests", "data", "pft_tokenize")),
                       key=os.path.getmtime)
        if not found:
            sys.exit("no pft_tokenize built; build the pft_tokenize target or pass --tool")
        tool = found[-1]

    gpt2_dir = os.path.join(ROOT, "datasets", "tokenizers", "gpt2")
    lines = make_corpus(int(args.mb * 1e6), english_words(gpt2_dir))
    nbytes = sum(len(l.encode("utf-8")) for l in lines)
    mb = nbytes / 1e6
    print(f"corpus: {len(lines)} lines, {mb:.2f} MB; tokenizer {args.tokenizer}; pft tool {tool}")

    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = os.path.join(tmp, "corpus.txt")
        ids_path = os.path.join(tmp, "ids.bin")
        with open(corpus_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        proc = subprocess.run([tool, "bench", args.tokenizer, corpus_path, ids_path, str(args.passes)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"pft_tokenize failed:\n{proc.stderr}")
        pft_mbps = float(proc.stdout.split("pft_encode_mb_per_s=")[1].split()[0])
        raw = array.array("i")
        with open(ids_path, "rb") as f:
            raw.frombytes(f.read())
    pft_ids = []
    pos = 0
    while pos < len(raw):
        n = raw[pos]
        pft_ids.append(raw[pos + 1:pos + 1 + n].tolist())
        pos += 1 + n

    tok = hf_tokenizer(args.tokenizer)
    t_line, hf_ids = best_of(args.passes, lambda: [tok.encode(l, add_special_tokens=False).ids for l in lines])
    t_batch, batch_ids = best_of(args.passes, lambda: [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)])
    t_fast, fast_ids = best_of(args.passes, lambda: [e.ids for e in tok.encode_batch_fast(lines, add_special_tokens=False)])
    if not (hf_ids == batch_ids == fast_ids):
        sys.exit("HF variants disagree among themselves")
    mismatches = sum(a != b for a, b in zip(hf_ids, pft_ids)) + abs(len(hf_ids) - len(pft_ids))
    ntok = sum(len(x) for x in hf_ids)
    print(f"ids: {ntok} tokens; pft vs HF: {'identical' if mismatches == 0 else f'{mismatches} lines differ'}")
    rates = {"HF encode per line": mb / t_line, "HF encode_batch": mb / t_batch,
             "HF encode_batch_fast": mb / t_fast}
    print(f"pft encode per line      : {pft_mbps:8.2f} MB/s")
    for k, v in rates.items():
        print(f"{k:25s}: {v:8.2f} MB/s")
    if mismatches:
        print("FAILED: ids differ")
        return 1
    baseline = max(rates.values())
    print(f"RESULT name=tokenizer pft={pft_mbps:.2f} baseline={baseline:.2f} unit=MB/s "
          f"ratio={pft_mbps / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
