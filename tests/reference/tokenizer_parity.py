#!/usr/bin/env python3
"""Parity of pft's tokenizers with Hugging Face `tokenizers` (pinned in requirements.txt).

Run by CTest (tests/data/CMakeLists.txt) as
    tokenizer_parity.py --tool build/.../pft_tokenize --gpt2-dir datasets/tokenizers/gpt2 --work-dir DIR

What it does, all generated at test time, deterministically (fixed seeds):
  1. checks src/data/unicode_classes.h is what gen_unicode_classes.py makes, and that its
     classes (letter / number / White_Space / other) are the ones `tokenizers`' regex engine
     uses, for every code point;
  2. builds tokenizer.json files with `tokenizers`: GPT-2 from the bundled encoder.json +
     vocab.bpe (and the same with add_prefix_space), and small BPEs trained on a generated
     corpus with the Llama-3 split regex + ByteLevel(use_regex=False) + ignore_merges (with
     added tokens, lstrip/rstrip and non-special ones), the Qwen2 regex, and SmolLM's
     Digits + ByteLevel;
  3. generates >= 10,000 test strings (many scripts, emoji, digits, punctuation, contractions,
     whitespace runs, newlines/tabs, random code points, long words) and byte strings with
     invalid UTF-8;
  4. runs pft_tokenize on them for every tokenizer (and for the GPT-2 directory spec) and
     requires identical ids:
       - encode(x)              == HF encode(x, add_special_tokens=False) with
                                   encode_special_tokens=True
       - encode_with_specials(x) == HF encode(x, add_special_tokens=False)
       - invalid UTF-8: pft's ids == HF's pre-tokenization of the text with U+FFFD for each bad
         byte, each piece mapped back to its original bytes and run through HF's BPE model
         (Note [invalid UTF-8] in src/data/pretokenizer.h).
Exit status 0 when everything matches; 1 with the first differences printed otherwise.
"""
import argparse
import json
import os
import random
import subprocess
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import gen_unicode_classes  # noqa: E402

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")

NUM_STRINGS = 12000


# ---- 1. Unicode classes ---------------------------------------------------------------------

def check_unicode_classes():
    import io
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        gen_unicode_classes.main()
    header = os.path.join(ROOT, "src", "data", "unicode_classes.h")
    with open(header, encoding="utf-8") as f:
        if f.read() != buf.getvalue():
            return [f"{header} is stale: regenerate it with tests/reference/gen_unicode_classes.py"]
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]
    text = "".join(chr(cp) for cp in cps)
    hf = [0] * len(cps)
    for cls, regex in ((1, r"\p{L}"), (2, r"\p{N}"), (3, r"\s")):
        # "removed" keeps the runs the regex does not match; the rest are its matches.
        split = pre_tokenizers.Split(Regex(regex), behavior="removed")
        covered = 0
        for _, (start, end) in split.pre_tokenize_str(text):
            for i in range(covered, start):
                hf[i] = cls
            covered = end
        for i in range(covered, len(cps)):
            hf[i] = cls
    errors = []
    for i, cp in enumerate(cps):
        ours = gen_unicode_classes.char_class(cp)
        if ours != hf[i]:
            errors.append(f"U+{cp:04X}: class {ours} in unicode_classes.h, {hf[i]} in tokenizers")
    return errors[:20]


# ---- 2. Tokenizers --------------------------------------------------------------------------

def gpt2_tokenizer(gpt2_dir, add_prefix_space):
    tok = Tokenizer(models.BPE.from_file(os.path.join(gpt2_dir, "encoder.json"),
                                         os.path.join(gpt2_dir, "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def trained_tokenizer(pre_tokenizer, corpus, ignore_merges, vocab_size, specials, extra_added):
    """A small BPE trained on `corpus`. With ignore_merges, whole words the merges would not
    produce are added to the vocab (as in Llama-3's tiktoken-converted vocab), so that the
    flag changes results; `extra_added` are added after that (HF numbers added tokens from the
    vocab's size on)."""
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    data = json.loads(tok.to_str())
    data["model"]["ignore_merges"] = ignore_merges
    if ignore_merges:
        # The most frequent pre-tokenized pieces of the corpus that are not tokens yet.
        vocab = data["model"]["vocab"]
        counts = {}
        for line in corpus:
            for piece, _ in tok.pre_tokenizer.pre_tokenize_str(line):
                if piece not in vocab:
                    counts[piece] = counts.get(piece, 0) + 1
        next_id = 1 + max(list(vocab.values()) + [a["id"] for a in data["added_tokens"]])
        for piece, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:300]:
            vocab[piece] = next_id
            next_id += 1
    tok = Tokenizer.from_str(json.dumps(data))
    if extra_added:
        tok.add_tokens(extra_added)
    return tok


def save_and_reload(tok, path):
    """Saves `tok` as path and reloads it, so HF and pft read the very same file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(tok.to_str())
    return Tokenizer.from_file(path)


# ---- 3. Test strings ------------------------------------------------------------------------

WORDS = {
    "latin": ["the", "quick", "brown", "fox", "Hello", "world", "tokenizer", "naïve", "café",
              "Straße", "façade", "über", "coöperate", "résumé", "ŁÓDŹ", "Ångström", "ǅemal",
              "ſtate", "ﬁne", "İstanbul", "ꞵeta"],
    "cyrillic": ["Здравствуй", "мир", "привет", "Ёжик", "съешь", "ещё", "українська", "ђак"],
    "greek": ["Καλημέρα", "κόσμε", "ΑΒΓΔ", "ψυχή", "ϐϑϒ"],
    "arabic": ["مرحبا", "بالعالم", "العربية", "ﷺ", "كتاب"],
    "hebrew": ["שלום", "עולם", "עִבְרִית"],
    "devanagari": ["नमस्ते", "दुनिया", "हिन्दी", "क्षत्रिय"],
    "thai": ["สวัสดี", "ชาวโลก", "ภาษาไทย"],
    "cjk": ["你好", "世界", "漢字", "中文分词", "𠀀𠀁", "龘"],
    "japanese": ["こんにちは", "カタカナ", "ひらがな", "ｶﾀｶﾅ", "日本語"],
    "korean": ["안녕하세요", "세계", "한국어", "ᄀᄁ"],
    "other_scripts": ["ᏣᎳᎩ", "ትግርኛ", "ქართული", "Հայերեն", "ᠮᠣᠩᠭᠣᠯ", "ꦗꦮ", "𐌰𐌱𐌲", "ᚠᚢᚦ",
                      "ᜀᜁ", "ⴰⵣⵓⵍ", "𓀀𓀁", "ꓐꓑ", "𞤀𞤁", "ꯃꯩ"],
    "emoji": ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "🇺🇳", "✨", "❤️", "🙂", "🧑🏿‍🚀", "😀😃😄", "#️⃣",
              "🏳️‍🌈", "☕", "🦀"],
    "digits": ["0", "7", "42", "123", "1234", "12345678901234", "3.14159", "1,000,000", "٠١٢٣",
               "१२३", "๑๒๓", "１２３", "²³", "½", "Ⅻ", "ⅷ", "①②", "𝟘𝟙", "〇", "፲"],
    "punct": [".", ",", "!", "?", "...", "!!", "?!", "--", "—", "–", "(", ")", "[", "]", "{", "}",
              "\"", "'", "`", "«", "»", "“", "”", "‘", "’", "¿", "¡", "@", "#", "$", "%", "^",
              "&", "*", "_", "+", "=", "<", ">", "/", "\\", "|", "~", ";", ":", "§", "©", "®",
              "™", "€", "£", "¥", "→", "∑", "√", "∞", "·", "•", "。", "、", "！", "？", "「", "」",
              "\u200b", "\u200d", "\ufeff", "\u00ad", "\u0301", "e\u0301", "\ufffd", "<|", "|>",
              "<s>", "</s>", "<|endoftext", "endoftext|>"],
    "contractions": ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve",
                     "'LL", "'D", "'ſ", "n't", "I'm", "you're", "it's", "we've", "they'll",
                     "he'd", "'", "''", "'x", "'llama", "'sa", "O'Neil", "rock'n'roll"],
    "code": ["def", "main()", "{", "}", "x = 1;", "if (a && b)", "return", "std::vector<int>",
             "#include", "// comment", "/* c */", "0xFF", "1e-9", "a_b_c", "camelCase",
             "snake_case", "<div>", "</div>", "&amp;", "http://example.com/a?b=c&d=e"],
}
SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ",
          " \t ", "\u00a0", "\u3000", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\u2003",
          "\u202f", "\u205f", "\x1c", "\x1d", "\x1e", "\x1f", "\u1680", " \r\n\r\n ", "        "]
ALL_WORDS = [w for ws in WORDS.values() for w in ws]


def random_codepoint(rng):
    while True:
        r = rng.random()
        if r < 0.5:
            cp = rng.randrange(0x20, 0x3000)
        elif r < 0.8:
            cp = rng.randrange(0x3000, 0x20000)
        else:
            cp = rng.randrange(0x20000, 0x110000)
        if not 0xD800 <= cp < 0xE000:
            return chr(cp)


def random_string(rng):
    kind = rng.random()
    parts = []
    if kind < 0.55:  # words from everywhere, joined by assorted whitespace
        for _ in range(rng.randrange(1, 14)):
            group = rng.choice(list(WORDS.values()))
            parts.append(rng.choice(group))
            if rng.random() < 0.25:
                parts.append(rng.choice(WORDS["punct"]))
            parts.append(" " if rng.random() < 0.6 else rng.choice(SPACES))
        if rng.random() < 0.5:
            parts.pop()
    elif kind < 0.7:  # raw random code points with whitespace
        for _ in range(rng.randrange(1, 20)):
            parts.append(random_codepoint(rng) if rng.random() < 0.8 else rng.choice(SPACES))
    elif kind < 0.8:  # ASCII soup: letters, digits, punctuation, whitespace
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '\t\n\r.,;:!?-_()[]{}\"/\\"
        parts.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))))
    elif kind < 0.9:  # English-like sentences with contractions and numbers
        for _ in range(rng.randrange(3, 25)):
            w = rng.choice(WORDS["latin"] + WORDS["contractions"] + WORDS["digits"] + WORDS["code"])
            parts.append(w)
            parts.append(rng.choice([" ", " ", " ", "", "  ", "\n", ", ", ". "]))
    elif kind < 0.95:  # whitespace-heavy
        for _ in range(rng.randrange(1, 10)):
            parts.append(rng.choice(SPACES) * rng.randrange(1, 5))
            if rng.random() < 0.6:
                parts.append(rng.choice(ALL_WORDS))
    else:  # long pieces: over the 128-byte heap threshold and the 256-byte cache limit
        unit = rng.choice(["ab", "abc", "x", "é", "你", "ز", "1", "!", " ", "\n", "xyzzy",
                           "ab1", "👍"])
        parts.append(unit * rng.randrange(40, 400))
        if rng.random() < 0.5:
            parts.append(" " + rng.choice(ALL_WORDS))
    return "".join(parts)


def test_strings(seed):
    rng = random.Random(seed)
    fixed = ["Hello world", "", " ", "  ", "\n", "a", "I'm here", "Hello world\n\n\n",
             "   leading", "trailing   ", "a\u00a0\u00a0b", "x\u3000\u3000\u3000y", "'s'S'ſ"]
    return fixed + [random_string(rng) for _ in range(NUM_STRINGS - len(fixed))]


def special_strings(seed, added):
    rng = random.Random(seed)
    out = []
    for _ in range(1500):
        parts = []
        for _ in range(rng.randrange(1, 8)):
            r = rng.random()
            if r < 0.35:
                parts.append(rng.choice(added))
            elif r < 0.5:
                parts.append(rng.choice(SPACES))
            else:
                parts.append(rng.choice(ALL_WORDS))
            if rng.random() < 0.3:
                parts.append(" ")
        out.append("".join(parts))
    return out


def invalid_utf8_strings(seed):
    rng = random.Random(seed)
    bad_bits = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe2\x82",
                b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf0\x9f\x98", b"\xf8\x88\x80\x80\x80",
                b"\xe0\x80\x80", b"\xc2"]
    out = []
    for _ in range(1000):
        parts = []
        for _ in range(rng.randrange(1, 8)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(bad_bits))
            elif r < 0.55:
                parts.append(bytes([rng.randrange(256) for _ in range(rng.randrange(1, 6))]))
            elif r < 0.7:
                parts.append(rng.choice(SPACES).encode())
            else:
                parts.append(rng.choice(ALL_WORDS).encode())
        out.append(b"".join(parts))
    return out


# ---- 4. Running and comparing ---------------------------------------------------------------

def run_tool(tool, spec, cases, work_dir, name, specials, roundtrip=True):
    cases_path = os.path.join(work_dir, f"{name}.cases")
    out_path = os.path.join(work_dir, f"{name}.ids")
    with open(cases_path, "w") as f:
        for c in cases:
            f.write(c.hex() + "\n")
    cmd = [tool, "encode", spec, cases_path, out_path] + (["--specials"] if specials else [])
    if not roundtrip:
        cmd.append("--no-roundtrip")  # add_prefix_space: decode gives the added spaces too
    try:  # a hung tool fails the test, naming the command (CTest's TIMEOUT bounds the whole run)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"FAILED: {' '.join(cmd)}: still running after 300 s")
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)}\n{proc.stderr}")
    with open(out_path) as f:
        return [[int(x) for x in line.split()] for line in f.read().split("\n")[:-1]]


def hf_encode(tok, texts, specials):
    tok.encode_special_tokens = not specials
    try:
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    finally:
        tok.encode_special_tokens = False


def hf_encode_invalid(tok, data):
    """HF-equivalent ids for byte strings with invalid UTF-8: pre-tokenize with U+FFFD for each
    bad byte, map the pieces back to the original bytes, encode each with the BPE model."""
    mapping = _byte_to_unicode()
    s = data.decode("utf-8", "surrogateescape")  # one lone surrogate per bad byte
    replaced = "".join("\ufffd" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in s)
    ids = []
    for _, (start, end) in tok.pre_tokenizer.pre_tokenize_str(replaced):
        piece = s[start:end].encode("utf-8", "surrogateescape")
        mapped = "".join(mapping[b] for b in piece)
        ids.extend(t.id for t in tok.model.tokenize(mapped))
    return ids


def _byte_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def compare(name, texts, expected, got, failures):
    bad = 0
    for i, (t, e, g) in enumerate(zip(texts, expected, got)):
        if e != g:
            bad += 1
            if bad <= 5:
                failures.append(f"[{name}] case {i}: {t!r}\n    HF : {e}\n    pft: {g}")
    if len(expected) != len(got):
        failures.append(f"[{name}] {len(got)} results for {len(expected)} cases")
        bad += 1
    print(f"{name}: {len(texts) - bad}/{len(texts)} identical", flush=True)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="the pft_tokenize executable")
    ap.add_argument("--gpt2-dir", required=True, help="directory with encoder.json + vocab.bpe")
    ap.add_argument("--work-dir", required=True, help="scratch directory (created)")
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    failures = []

    errors = check_unicode_classes()
    print(f"unicode classes: {'OK' if not errors else f'{len(errors)}+ differences'}", flush=True)
    failures += [f"[unicode] {e}" for e in errors]

    texts = test_strings(args.seed)
    assert len(texts) >= 10000
    encoded = [t.encode("utf-8") for t in texts]
    corpus = test_strings(args.seed + 1)[:6000] + [" ".join(ALL_WORDS)] * 20

    added = [AddedToken("<mask>", lstrip=True, rstrip=True, special=True, normalized=False),
             AddedToken("<|tool|>", special=False, normalized=True),
             AddedToken("  ", special=False, normalized=False)]
    configs = {
        "gpt2": (gpt2_tokenizer(args.gpt2_dir, False), None),
        "gpt2_prefix_space": (gpt2_tokenizer(args.gpt2_dir, True), None),
        "llama3": (trained_tokenizer(
            pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
            corpus, True, 3000, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], added),
            True),
        "qwen2": (trained_tokenizer(
            pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
            corpus, False, 2000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None), False),
        "smollm": (trained_tokenizer(
            pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
            corpus, False, 2000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None), False),
    }
    total_bad = 0
    for name, (tok, ignore_merges) in configs.items():
        path = os.path.join(args.work_dir, name, "tokenizer.json")
        tok = save_and_reload(tok, path)
        specs = [path] + ([args.gpt2_dir] if name == "gpt2" else [])
        added_contents = [a.content for a in tok.get_added_tokens_decoder().values()]
        with_specials = special_strings(args.seed + 2, added_contents + ["<|endoftext|>"])
        expected_plain = hf_encode(tok, texts, specials=False)
        if ignore_merges:
            data = json.loads(tok.to_str())
            data["model"]["ignore_merges"] = False
            without = hf_encode(Tokenizer.from_str(json.dumps(data)), texts, specials=False)
            changed = sum(a != b for a, b in zip(expected_plain, without))
            print(f"{name}: ignore_merges changes {changed} of {len(texts)} encodings")
            if changed == 0:
                failures.append(f"[{name}] ignore_merges changes nothing: the test lost its teeth")
        expected_special = hf_encode(tok, with_specials, specials=True)
        expected_special_plain = hf_encode(tok, with_specials, specials=False)
        for spec in specs:
            label = f"{name} ({'directory' if spec == args.gpt2_dir else 'tokenizer.json'})"
            roundtrip = name != "gpt2_prefix_space"
            got = run_tool(args.tool, spec, encoded, args.work_dir, name, False, roundtrip)
            total_bad += compare(f"{label} encode", texts, expected_plain, got, failures)
            ws = [t.encode("utf-8") for t in with_specials]
            # <mask> has lstrip/rstrip: the whitespace it swallows does not decode back.
            got = run_tool(args.tool, spec, ws, args.work_dir, name + "_sp", True,
                           roundtrip and name != "llama3")
            total_bad += compare(f"{label} encode_with_specials", with_specials, expected_special,
                                 got, failures)
            got = run_tool(args.tool, spec, ws, args.work_dir, name + "_sp_plain", False,
                           roundtrip)
            total_bad += compare(f"{label} encode (added tokens in text)", with_specials,
                                 expected_special_plain, got, failures)
        if name in ("gpt2", "llama3", "qwen2", "smollm"):
            # hf_encode_invalid knows no added tokens: use the file without the non-special ones.
            data = json.loads(tok.to_str())
            data["added_tokens"] = [a for a in data["added_tokens"] if a["special"]]
            plain_path = os.path.join(args.work_dir, name, "tokenizer_no_added.json")
            with open(plain_path, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False)
            plain_tok = Tokenizer.from_file(plain_path)
            bad_bytes = invalid_utf8_strings(args.seed + 3)
            expected = [hf_encode_invalid(plain_tok, b) for b in bad_bytes]
            got = run_tool(args.tool, plain_path, bad_bytes, args.work_dir, name + "_invalid",
                           False)
            total_bad += compare(f"{name} invalid UTF-8", bad_bytes, expected, got, failures)

    if failures:
        print("\n".join(failures))
        print(f"FAILED: {total_bad} differences (and {len(errors)} unicode class differences)")
        return 1
    print("tokenizer parity: all identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
