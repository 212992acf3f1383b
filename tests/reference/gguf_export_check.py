"""Checks a GGUF file written by `pft ckpt export --format gguf` against pft's own model.

    gguf_export_check.py --gguf FILE --hf DIR --tokenizer DIR --dtype f32|f16|q8_0 --rtol X
                         [--pft-jsonl FILE --prompt TEXT]

FILE is the GGUF export; DIR (--hf) the same checkpoint exported with `--format hf` (pft's
weights, whose logits equal pft's within 1e-4: hf_parity_test pins that); --tokenizer the
directory of the run's tokenizer.json (+ tokenizer_config.json / chat_template.jinja).

  1. gguf.GGUFReader: version 3; general.architecture llama; every llama.* key equals
     config.json's value; general.file_type; one tensor per HF parameter (output.weight absent
     when tied) with the GGUF name, the reversed HF shape and the type the dtype implies
     (f32: all F32; f16: matrices F16, vectors F32; q8_0: matrices Q8_0, or F16 when a row is
     not a multiple of 32; vectors F32); the tokens, token types, merges and chat template equal
     the tokenizer's.
  2. transformers' GGUF loader (AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)):
     logits on fixed ids within 1e-4 of those of pft's weights rounded as the dtype stores them
     (f32: pft's weights themselves; f16: round to nearest even; q8_0: gguf-py's quantizer and
     dequantizer), and within --rtol * max |logit| of pft's own (the rounding's effect, printed);
     for f32, greedy continuations are the GGUF model's (up to ties: each chosen id an argmax
     within 1e-4 of the file's logits, teacher-forced): 16 ids of pft's weights in transformers,
     and with --pft-jsonl the ids `pft generate --prompt TEXT --ignore-eos --output FILE` wrote
     ("completion_ids").
  3. AutoTokenizer.from_pretrained(dir, gguf_file=...) gives tokenizers' ids on a corpus with
     chat markup, control characters and non-ASCII text.
Prints one line "gguf_export_check: ..." with the figures; exit 1 on any difference.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

CORPUS = [
    "Hello world! The quick brown fox jumps over the lazy dog 12345.",
    "Question: what is 2 + 2? Answer: 4",
    "<|endoftext|>Paris is the capital of France.<|endoftext|>",
    "def main():\n    print('hello')\n\treturn 0\n",
    "tabs\tand\x01control\x7fchars\r\n and   spaces  ",
    "naïve café, Zürich — 東京 🙂 ünïcödé",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--dtype", required=True, choices=["f32", "f16", "q8_0"])
    ap.add_argument("--rtol", type=float, required=True,
                    help="logits vs pft's: max |difference| <= rtol * max |logit|")
    ap.add_argument("--pft-jsonl")
    ap.add_argument("--prompt", default="")
    args = ap.parse_args()

    import gguf
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from safetensors.torch import load_file

    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
            print("FAIL:", what)

    # ---- 1. the file as gguf-py reads it ----
    cfg = json.load(open(os.path.join(args.hf, "config.json")))
    hf = load_file(os.path.join(args.hf, "model.safetensors"))
    reader = gguf.GGUFReader(args.gguf)

    def field(key):
        f = reader.get_field(key)
        return None if f is None else f.contents()

    check(field("GGUF.version") == 3, f"GGUF.version {field('GGUF.version')}")
    check(field("general.architecture") == "llama", "general.architecture")
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    want = {
        "llama.context_length": cfg["max_position_embeddings"],
        "llama.embedding_length": cfg["hidden_size"],
        "llama.block_count": cfg["num_hidden_layers"],
        "llama.feed_forward_length": cfg["intermediate_size"],
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": kv,
        "llama.rope.dimension_count": head_dim,
        "llama.vocab_size": cfg["vocab_size"],
    }
    for k, v in want.items():
        check(field(k) == v, f"{k} = {field(k)}, config.json says {v}")
    for k, v in {"llama.attention.layer_norm_rms_epsilon": cfg["rms_norm_eps"],
                 "llama.rope.freq_base": cfg["rope_theta"]}.items():
        check(field(k) is not None and abs(field(k) - v) <= 1e-6 * abs(v), f"{k} = {field(k)}, want {v}")
    file_type = {"f32": 0, "f16": 1, "q8_0": 7}[args.dtype]
    check(field("general.file_type") == file_type, f"general.file_type {field('general.file_type')}")

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    block = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(cfg["num_hidden_layers"]):
        for h, g in block.items():
            names[f"model.layers.{i}.{h}.weight"] = f"blk.{i}.{g}.weight"
    tensors = {t.name: t for t in reader.tensors}
    expected = {g: h for h, g in names.items() if h in hf}
    check(set(tensors) == set(expected), f"tensor names {sorted(set(tensors) ^ set(expected))}")
    T = gguf.GGMLQuantizationType
    types = {}
    for g, h in expected.items():
        t = tensors.get(g)
        if t is None:
            continue
        shape = list(hf[h].shape)
        check([int(x) for x in t.shape] == shape[::-1], f"{g}: shape {list(t.shape)}, want {shape[::-1]}")
        if len(shape) == 1 or args.dtype == "f32":
            want_type = T.F32
        elif args.dtype == "f16" or shape[-1] % 32 != 0:
            want_type = T.F16
        else:
            want_type = T.Q8_0
        check(t.tensor_type == want_type, f"{g}: type {t.tensor_type.name}, want {want_type.name}")
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1

    tok = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    tj = json.load(open(os.path.join(args.tokenizer, "tokenizer.json")))
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = field("tokenizer.ggml.tokens")
    check(field("tokenizer.ggml.model") == "gpt2", "tokenizer.ggml.model")
    check(len(tokens) == cfg["vocab_size"], f"{len(tokens)} tokens, vocab_size {cfg['vocab_size']}")
    check(all(tokens[i] == t for t, i in vocab.items()), "tokenizer.ggml.tokens differ from the vocab")
    types_of = field("tokenizer.ggml.token_type")
    specials = {a["id"] for a in tj["added_tokens"] if a["special"]}
    check(all((types_of[i] == 3) == (i in specials) for i in range(len(tokens))), "token types")
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    check(field("tokenizer.ggml.merges") == merges, "tokenizer.ggml.merges differ")
    template = None
    tc_path = os.path.join(args.tokenizer, "tokenizer_config.json")
    if os.path.exists(tc_path):
        template = json.load(open(tc_path)).get("chat_template")
    jinja = os.path.join(args.tokenizer, "chat_template.jinja")
    if template is None and os.path.exists(jinja):
        template = open(jinja).read()
    check(field("tokenizer.chat_template") == template, "tokenizer.chat_template")
    pre = field("tokenizer.ggml.pre")

    # ---- 2. transformers' GGUF loader against pft's weights ----
    d, name = os.path.split(os.path.abspath(args.gguf))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    # pft's weights: the HF export's config.json + model.safetensors (not an adapter that may sit
    # beside them).
    ref = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures",)}))
    missing, unexpected = ref.load_state_dict(hf, strict=False)
    check(not unexpected and all(m == "lm_head.weight" for m in missing), f"HF export: {missing} {unexpected}")
    ref.tie_weights()
    ref = ref.float().eval()
    # pft's weights rounded as the file stores them (f16: torch's round to nearest even; q8_0:
    # gguf-py's reference quantizer, then its dequantizer): the GGUF file must give these logits
    # within 1e-4 whatever the dtype, so the only difference from pft is the stated rounding.
    rounded = LlamaForCausalLM(ref.config)
    state = {}
    for k, w in ref.state_dict().items():
        if w.dim() == 2 and args.dtype != "f32":
            if args.dtype == "q8_0" and w.shape[-1] % 32 == 0:
                q = gguf.quants.quantize(w.numpy(), T.Q8_0)
                w = torch.from_numpy(gguf.quants.dequantize(q, T.Q8_0).astype(np.float32))
            else:
                w = w.half().float()
        state[k] = w
    rounded.load_state_dict(state)
    rounded = rounded.float().eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (2, 24), generator=g)
    with torch.no_grad():
        got, exp, exp_rounded = model(ids).logits, ref(ids).logits, rounded(ids).logits
    diff = (got - exp).abs().max().item()
    scale = exp.abs().max().item()
    diff_rounded = (got - exp_rounded).abs().max().item()
    check(diff_rounded <= 1e-4, f"logits differ from the {args.dtype}-rounded weights' by "
                                f"{diff_rounded:.3g} > 1e-4")
    check(diff <= args.rtol * scale, f"logits differ by {diff:.3g} > {args.rtol:g} * max|logit| {scale:.3g}")
    # Greedy continuations, compared up to ties: every id the reference chose is an argmax
    # (within 1e-4) of the GGUF model's logits at its position, teacher-forced. (A barely trained
    # model has near-equal logits; the reader's rms_norm_eps is the f32 one, so an exact tie may
    # break the other way.)
    def is_greedy_of_gguf(prompt_ids, continuation):
        seq = torch.tensor([list(prompt_ids) + list(continuation)])
        with torch.no_grad():
            logits = model(seq).logits[0]
        p = len(prompt_ids)
        return all(logits[p - 1 + i, t] >= logits[p - 1 + i].max() - 1e-4
                   for i, t in enumerate(continuation))

    prompt = ids[0, :8].tolist()
    with torch.no_grad():
        greedy_ref = ref.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                                  min_new_tokens=16, pad_token_id=0)[0, 8:].tolist()
    same_greedy = is_greedy_of_gguf(prompt, greedy_ref)
    if args.dtype == "f32":
        check(same_greedy, f"greedy {greedy_ref} of pft's weights is not the GGUF model's")
    pft_greedy = "-"
    if args.pft_jsonl and args.dtype == "f32":
        p_tokens = json.loads(open(args.pft_jsonl).readline())["completion_ids"]
        p_ids = tok.encode(args.prompt).ids  # with the tokenizer's BOS, as pft generate
        ok = is_greedy_of_gguf(p_ids, p_tokens)
        pft_greedy = "same" if ok else "differs"
        check(ok, f"pft generate's greedy {p_tokens} is not the GGUF model's")

    # ---- 3. the tokenizer transformers builds from the file ----
    gtok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    n_ids = 0
    for text in CORPUS:
        a = gtok(text, add_special_tokens=False)["input_ids"]
        b = tok.encode(text, add_special_tokens=False).ids
        n_ids += len(b)
        check(a == b, f"token ids of {text!r}: {a} != {b}")

    print(f"gguf_export_check: {args.dtype}: {len(tensors)} tensors "
          f"({', '.join(f'{k} x{v}' for k, v in sorted(types.items()))}), pre {pre}, "
          f"logits max|diff| vs pft {diff:.3g} (max|logit| {scale:.3g}, relative {diff / scale:.3g} "
          f"<= {args.rtol:g}), vs pft's weights rounded to {args.dtype} {diff_rounded:.3g} (<= 1e-4), "
          f"greedy-16 {'same' if same_greedy else 'differs'}, "
          f"pft generate {pft_greedy}, {n_ids} token ids of {len(CORPUS)} texts "
          f"{'identical' if not any('token ids' in f for f in failures) else 'DIFFER'}"
          f"{'' if not failures else f'; {len(failures)} FAILURES'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
