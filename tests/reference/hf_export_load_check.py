"""Loads what `pft ckpt export --format hf` wrote the way a user would, with transformers and peft
themselves, and compares it with pft (tests/model/hf_export_load_test.cpp runs it).

    python3 tests/reference/hf_export_load_check.py --base BASE --text TEXT --prompt PROMPT
        --case METHOD,EXPORT_DIR,PFT_FILE,PFT_JSONL,TASKS [--case ...] [--gguf-tokenizer]

BASE is the model the runs started from (a Hugging Face directory or a GGUF file). Each --case is
one exported checkpoint: its train.method, the export directory, pft's tensors (tensor_io format:
`input_ids` (1, L) the prompt ids pft feeds -- BOS where the tokenizer adds one, then TEXT --,
`text_ids` pft's ids of TEXT, `logits` (1, L, V) of pft's model on input_ids (full fine-tuning:
the checkpoint; adapters: the base with the LoRA updates, unmerged, and no virtual token),
`base_logits` the same for the base model alone, and
for prompt tables `logits.<task>` (1, n + L, V) with the task's n virtual tokens first), the JSON
lines `pft generate ... --ignore-eos --output` wrote for PROMPT (the first task's block), and
the run's tasks separated by `+`.

Checked, for every case (exit 1 on any difference, one line per case):
  - layout: no directory of the export holds both an adapter_config.json and full weights (what
    made from_pretrained apply a merged LoRA twice), and the directories are where
    docs/checkpoint-format.md says: EXPORT itself for full fine-tuning, EXPORT/merged/ +
    EXPORT/adapter/ (LoRA) + EXPORT/adapters/<task>/ (prompt tables) for adapters;
  - training moved pft's logits (`logits` against `base_logits`, the base alone) by more than
    10 x --tol, so that a missing or doubled LoRA cannot pass (not for prompt tuning alone, whose
    merged model is the base);
  - AutoModelForCausalLM.from_pretrained(model dir) attaches no adapter, and its logits equal
    pft's within --tol (max abs, 1e-4) -- for LoRA methods that is the merged model;
  - LoRA: PeftModel.from_pretrained(base, EXPORT/adapter) gives the same logits within --tol;
  - prompt tables: PeftModel.from_pretrained(merged, EXPORT/adapters/<task>) for every task gives
    logits.<task> within --tol, and two tasks' logits differ by more than 10 x --tol (so each
    task's block landed in its own directory);
  - AutoTokenizer.from_pretrained(model dir) encodes TEXT to pft's ids (add_special_tokens=False)
    and has an eos token; with --gguf-tokenizer also transformers' own GGUF tokenizer of BASE
    does (the reference of the tokenizer.json pft builds from a GGUF file), with the same special
    tokens around PROMPT and the same chat template rendering;
  - greedy generation (no eos stop) from PROMPT: the ids pft generated, and their text; for
    models without a prompt adapter also through pipeline("text-generation", model=model dir).
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensor_io  # noqa: E402



def load_base(base):
    from transformers import AutoModelForCausalLM
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    if os.path.isfile(base):  # a GGUF file
        d, name = os.path.split(os.path.abspath(base))
        return AutoModelForCausalLM.from_pretrained(d, gguf_file=name, **kw).eval()
    return AutoModelForCausalLM.from_pretrained(base, **kw).eval()


def layout_problems(export, method, tasks):
    problems = []
    for root, _dirs, files in os.walk(export):
        weights = [f for f in files if f.endswith(".safetensors") and not f.startswith("adapter_")]
        if "adapter_config.json" in files and (weights or "config.json" in files):
            problems.append(f"{root} holds adapter_config.json beside a model")
    lora = "lora" in method
    prompt = "prompt" in method or "prefix" in method
    want = []
    if method == "full":
        want = ["config.json", "model.safetensors"]
    else:
        want = ["merged/config.json", "merged/model.safetensors"]
        if lora:
            want.append("adapter/adapter_config.json")
        if prompt:
            want += [f"adapters/{t}/adapter_config.json" for t in tasks]
    want += [os.path.join("" if method == "full" else "merged", f)
             for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json")]
    problems += [f"missing {w}" for w in want if not os.path.exists(os.path.join(export, w))]
    return problems


def max_diff(a, b):
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max())


def check_case(a, spec, base_model, gguf_tok):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    method, export, pft_file, jsonl, tasks = spec.split(",")
    tasks = tasks.split("+")
    ref = tensor_io.load(pft_file)
    with open(jsonl) as f:
        gen = json.loads(f.readline())
    problems = layout_problems(export, method, tasks)
    lora = "lora" in method
    prompt = "prompt" in method
    model_dir = export if method == "full" else os.path.join(export, "merged")
    figures = []
    ids = ref["input_ids"].long()

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    if getattr(model, "_hf_peft_config_loaded", False):
        problems.append(f"from_pretrained({model_dir}) attached an adapter")
    tol = a.tol
    # What training changed (pft's logits against the base's): far above the tolerance, so that
    # a missing adapter (or a LoRA applied twice) cannot pass.
    moved = max_diff(ref["logits"], ref["base_logits"])
    if method != "prompt_tuning" and not moved > 10 * tol:
        problems.append(f"training moved the logits by {moved:.3g} only: train more")
    with torch.no_grad():
        d = max_diff(model(ids).logits, ref["logits"])
    figures.append(f"trained vs base {moved:.1e}, merged {d:.1e}")
    if not d <= tol:
        problems.append(f"from_pretrained({model_dir}) logits differ from pft's by {d:.3g}")

    if lora:
        with torch.no_grad():  # the base's own parity, for the record (its part of the next figure)
            d = max_diff(base_model(ids).logits, ref["base_logits"])
        figures.append(f"base alone {d:.1e}")
        peft_model = PeftModel.from_pretrained(base_model, os.path.join(export, "adapter")).eval()
        with torch.no_grad():
            d = max_diff(peft_model(ids).logits, ref["logits"])
        peft_model.unload()  # base_model back as it was, for the next case
        figures.append(f"peft lora {d:.1e}")
        if not d <= tol:
            problems.append(f"PeftModel(base, adapter) logits differ from pft's by {d:.3g}")

    generator = model
    if prompt:
        for task in tasks:
            on_merged = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.float32, attn_implementation="eager").eval()
            pm = PeftModel.from_pretrained(on_merged, os.path.join(export, "adapters", task)).eval()
            with torch.no_grad():
                d = max_diff(pm(ids).logits, ref[f"logits.{task}"])
            moved = max_diff(ref[f"logits.{task}"][:, -ids.shape[1]:], ref["logits"])
            figures.append(f"peft prompt {task} {d:.1e} (prompt moves {moved:.1e})")
            if not d <= tol:
                problems.append(f"PeftModel(merged, adapters/{task}) logits differ from pft's "
                                f"by {d:.3g}")
            if task == tasks[0]:
                generator = pm
        if len(tasks) > 1:  # the blocks differ, so a block in another task's directory would fail
            apart = max_diff(ref[f"logits.{tasks[0]}"], ref[f"logits.{tasks[1]}"])
            if not apart > 10 * tol:
                problems.append(f"the blocks of {tasks[0]} and {tasks[1]} give logits only "
                                f"{apart:.3g} apart")

    tok = AutoTokenizer.from_pretrained(model_dir)
    text_ids = ref["text_ids"].tolist()
    got = tok(a.text, add_special_tokens=False).input_ids
    if got != text_ids:
        problems.append(f"AutoTokenizer({model_dir}) encodes TEXT as {got[:12]}..., pft as "
                        f"{text_ids[:12]}...")
    if tok.eos_token is None:
        problems.append(f"AutoTokenizer({model_dir}) has no eos token")
    if gguf_tok is not None:
        if gguf_tok(a.text, add_special_tokens=False).input_ids != got:
            problems.append("transformers' GGUF tokenizer of the base encodes TEXT otherwise")
        if gguf_tok(a.prompt).input_ids != tok(a.prompt).input_ids:
            problems.append("transformers' GGUF tokenizer adds other special tokens to PROMPT")
        chat = [{"role": "user", "content": a.prompt}]
        if not tok.chat_template or tok.apply_chat_template(chat, tokenize=False) != \
                gguf_tok.apply_chat_template(chat, tokenize=False):
            problems.append("the export's chat template is not the GGUF file's")
        figures.append("tokenizer = transformers' GGUF tokenizer (ids, BOS, chat template)")

    expect = gen["completion_ids"]
    prompt_ids = tok(a.prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = generator.generate(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids),
                                 max_new_tokens=len(expect), min_new_tokens=len(expect),
                                 do_sample=False, eos_token_id=None,
                                 pad_token_id=tok.pad_token_id or 0)
    greedy = out[0, -len(expect):].tolist()
    if greedy != expect:
        problems.append(f"greedy ids {greedy}, pft's {expect}")
    text = tok.decode(greedy, skip_special_tokens=False)
    if text != gen["completion"]:
        problems.append(f"greedy text {text!r}, pft's {gen['completion']!r}")
    if not prompt:
        pipe = pipeline("text-generation", model=model_dir, dtype=torch.float32)
        piped = pipe(a.prompt, max_new_tokens=len(expect), min_new_tokens=len(expect),
                     do_sample=False, eos_token_id=None, return_full_text=False,
                     pad_token_id=tok.pad_token_id or 0,
                     clean_up_tokenization_spaces=False)[0]["generated_text"]
        if piped != tok.decode(expect, skip_special_tokens=True):
            problems.append(f"pipeline text {piped!r}, pft's {gen['completion']!r}")
    ok = not problems
    print(f"hf_export_load_check: {method}: {'ok' if ok else 'DIFFERENT'}: "
          f"{', '.join(figures)}; greedy {len(expect)} ids equal: {greedy == expect}"
          + ("" if ok else "; " + "; ".join(problems)))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--case", action="append", required=True)
    ap.add_argument("--gguf-tokenizer", action="store_true")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="max |logit difference| allowed (1e-4; the real SmolLM2 takes 2e-4)")
    a = ap.parse_args()
    torch.manual_seed(0)
    base_model = load_base(a.base)
    gguf_tok = None
    if a.gguf_tokenizer:
        from transformers import AutoTokenizer
        d, name = os.path.split(os.path.abspath(a.base))
        gguf_tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    ok = all([check_case(a, spec, base_model, gguf_tok) for spec in a.case])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
