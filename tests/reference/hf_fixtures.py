"""Hugging Face model directories for pft's import / generate / export tests, and the check of
pft's exports.

    hf_fixtures.py make --out DIR
        Writes tiny random models with transformers (pinned in requirements.txt), each in
        DIR/<variant>/ as save_pretrained writes it (config.json, safetensors, generation_config
        .json, tokenizer.json + tokenizer_config.json from a byte-level BPE trained here), plus
        DIR/<variant>/reference.pt (tensor_io format) computed by transformers in fp32 from the
        saved files:
          input_ids (2, 16), logits (2, 16, V)          plain forward, positions 0..15
          greedy_prompt (1, 8), greedy_tokens (1, 32)   generate(do_sample=False), no eos stop
          penalized_tokens (1, 32)                      the same with repetition_penalty 1.3
          batch_ids (2, 9) left-padded, batch_mask (2, 9), batch_tokens (2, 32)
                                                        batched greedy with attention_mask
          text_ids (1, n)                               tokenizer(TEXT).input_ids (BOS included
                                                        where the tokenizer adds one)
        and DIR/manifest.json listing the variants.
        Variants: gpt2 (tied), gpt2_sharded (index + shards), gpt2_fp16, gpt2_base (GPT2Model
        names, no "transformer." prefix), llama_gqa (GQA, head_dim != hidden/heads, untied,
        rope_theta 5e5, BOS-adding tokenizer), llama_gqa_sharded, smollm_bf16 (tied, SmolLM-style,
        bf16 on disk).

    hf_fixtures.py check-export --dir EXPORTED --ref DIR/<variant>
        Loads EXPORTED with AutoModelForCausalLM (fp32) and AutoTokenizer, and checks: logits on
        reference.pt's input_ids within 1e-4 of the reference, greedy generation identical, and
        the tokenizer's ids for TEXT identical. Exit 1 on any difference.
"""

import argparse
import json
import os
import shutil
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensor_io  # noqa: E402

LOGITS_ATOL = 1e-4
NEW_TOKENS = 32
REPETITION_PENALTY = 1.3
TEXT = "Hello world! The quick brown fox jumps over the lazy dog 12345."

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, general Kenobi.",
    "Question: what is 2 + 2? Answer: 4",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "def main():\n    print('hello')\n    return 0\n",
    "Numbers: 12345 67890 3.14159 2.71828",
] * 20


def make_tokenizer(out_dir, bos):
    """A byte-level BPE (GPT-2 style) of ~300 ids; with `bos`, a <s> token the tokenizer puts
    before every text (TemplateProcessing, as Llama's). Saved through transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>"] + (["<s>"] if bos else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    kwargs = dict(eos_token="<|endoftext|>")
    if bos:
        bos_id = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                           special_tokens=[("<s>", bos_id)])
        kwargs["bos_token"] = "<s>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.save_pretrained(out_dir)
    return fast


def build_model(variant, vocab, eos_id, bos_id):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(zlib.crc32(variant.encode()))
    ids = dict(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=None)
    if variant.startswith("gpt2"):
        config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                            initializer_range=0.1, **ids)
        return GPT2LMHeadModel(config)
    if variant.startswith("llama_gqa"):
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=176,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             head_dim=24, max_position_embeddings=128, rms_norm_eps=1e-6,
                             rope_theta=500000.0, tie_word_embeddings=False,
                             initializer_range=0.1, **ids)
    else:  # smollm: tied, 6 heads over 2 key/value heads, SmolLM's rope_theta
        config = LlamaConfig(vocab_size=vocab, hidden_size=96, intermediate_size=256,
                             num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
                             max_position_embeddings=128, rms_norm_eps=1e-5,
                             rope_theta=100000.0, tie_word_embeddings=True,
                             initializer_range=0.1, **ids)
    return LlamaForCausalLM(config)


def load_fp32(path):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    return model


def greedy(model, ids, mask=None, pad_id=0, repetition_penalty=1.0):
    model.generation_config.eos_token_id = None  # always NEW_TOKENS tokens
    model.generation_config.pad_token_id = pad_id
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                             max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             repetition_penalty=repetition_penalty)
    return out[:, ids.shape[1]:]


def reference(model, tokenizer, vocab):
    g = torch.Generator().manual_seed(7)
    input_ids = torch.randint(0, vocab, (2, 16), generator=g)
    with torch.no_grad():
        logits = model(input_ids=input_ids, position_ids=torch.arange(16).expand(2, 16)).logits
    greedy_prompt = torch.randint(0, vocab, (1, 8), generator=g)
    a = torch.randint(0, vocab, (5,), generator=g)
    b = torch.randint(0, vocab, (9,), generator=g)
    batch_ids = torch.zeros(2, 9, dtype=torch.long)
    batch_mask = torch.zeros(2, 9, dtype=torch.long)
    batch_ids[0, 4:], batch_mask[0, 4:] = a, 1
    batch_ids[1], batch_mask[1] = b, 1
    return {
        "input_ids": input_ids,
        "logits": logits.float(),
        "greedy_prompt": greedy_prompt,
        "greedy_tokens": greedy(model, greedy_prompt),
        "penalized_tokens": greedy(model, greedy_prompt, repetition_penalty=REPETITION_PENALTY),
        "batch_ids": batch_ids,
        "batch_mask": batch_mask,
        "batch_tokens": greedy(model, batch_ids, batch_mask),
        "text_ids": torch.tensor([tokenizer(TEXT)["input_ids"]]),
    }


def make(out):
    from transformers import GPT2Model

    os.makedirs(out, exist_ok=True)
    variants = ["gpt2", "gpt2_sharded", "gpt2_fp16", "gpt2_base", "llama_gqa",
                "llama_gqa_sharded", "smollm_bf16"]
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest):
        os.remove(manifest)  # written last: its presence means every variant is complete
    for variant in variants:
        d = os.path.join(out, variant)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        bos = variant.startswith("llama")
        tokenizer = make_tokenizer(d, bos)
        vocab = len(tokenizer)
        eos_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        bos_id = tokenizer.convert_tokens_to_ids("<s>") if bos else eos_id
        model = build_model(variant, vocab, eos_id, bos_id)
        if variant.endswith("fp16"):
            model = model.to(torch.float16)
        elif variant.endswith("bf16"):
            model = model.to(torch.bfloat16)
        shard = "40KB" if variant.endswith("sharded") else "5GB"
        model.save_pretrained(d, max_shard_size=shard)
        if variant == "gpt2_base":
            # The body alone (GPT2Model names, as the original OpenAI files on the Hub).
            model.transformer.save_pretrained(d)
        model = load_fp32(d)
        tensor_io.save(os.path.join(d, "reference.pt"), reference(model, tokenizer, vocab))
        files = sorted(f for f in os.listdir(d) if f.endswith((".safetensors", ".json")))
        print(f"hf_fixtures: {variant}: vocab {vocab}, {', '.join(files)}")
    with open(manifest, "w") as f:
        json.dump({"variants": variants, "new_tokens": NEW_TOKENS, "text": TEXT}, f)
    return 0


def check_export(exported, ref_dir):
    from transformers import AutoTokenizer

    ref = tensor_io.load(os.path.join(ref_dir, "reference.pt"))
    model = load_fp32(exported)
    failures = 0

    def check(ok, what):
        nonlocal failures
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        failures += 0 if ok else 1

    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"],
                       position_ids=torch.arange(16).expand(2, 16)).logits
    diff = (logits - ref["logits"]).abs().max().item()
    check(diff <= LOGITS_ATOL, f"transformers on the export: logits max abs diff {diff:.3e} "
          f"(<= {LOGITS_ATOL:g})")
    tokens = greedy(model, ref["greedy_prompt"])
    check(torch.equal(tokens, ref["greedy_tokens"]), f"greedy {NEW_TOKENS} tokens identical")
    tokenizer = AutoTokenizer.from_pretrained(exported)
    ids = tokenizer(TEXT)["input_ids"]
    check(ids == ref["text_ids"][0].tolist(), "AutoTokenizer on the export: same ids for TEXT")
    print(f"hf_fixtures check-export: {'FAILED' if failures else 'passed'}")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    c = sub.add_parser("check-export")
    c.add_argument("--dir", required=True)
    c.add_argument("--ref", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.cmd == "make":
        return make(args.out)
    return check_export(args.dir, args.ref)


if __name__ == "__main__":
    sys.exit(main())
