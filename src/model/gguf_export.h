// pft -> a GGUF file (ggml / llama.cpp, version 3) that llama.cpp serves and transformers' GGUF
// loader (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`) reads back.
//
// Architecture `llama` only (pft's Llama family). GPT-2 is refused: transformers' GGUF loader
// takes its context length as n_ctx and leaves n_positions at 1024, so a GPT-2 whose position
// table has another size does not load; export those with --format hf.
//
// Metadata (what llama.cpp's convert_hf_to_gguf.py writes for a Llama):
//   general.architecture "llama", general.name, general.file_type (0 all F32, 1 mostly F16,
//   7 mostly Q8_0), general.quantization_version 2;
//   llama.context_length (max_seq_len), embedding_length, block_count, feed_forward_length,
//   attention.head_count, attention.head_count_kv, attention.layer_norm_rms_epsilon,
//   rope.freq_base, rope.dimension_count (head_dim), vocab_size, and attention.key_length /
//   value_length when head_dim differs from d_model / n_heads;
//   tokenizer.ggml.model "gpt2" (byte-level BPE), tokenizer.ggml.pre (Note [pre-tokenizer
//   name]), tokens (one per model id: ids the tokenizer leaves empty are "[PAD<id>]", type
//   unused), token_type (1 normal, 3 control = special added token, 4 user-defined = other
//   added token, 5 unused), merges ("left right"), bos/eos/unknown/padding_token_id where the
//   tokenizer has them (tokenizer_config.json's tokens, else the tokenizer's own; a BOS from the
//   post-processor, else the bos_token_id of a generation_config.json / config.json beside the
//   tokenizer, else the eos as GPT-2 does -- transformers' reader needs one), add_bos_token (the
//   post-processor puts a token before every text), and
//   tokenizer.chat_template (tokenizer_config.json's chat_template, or chat_template.jinja).
//   A tokenizer that is itself a GGUF file (a model from a .gguf, e.g. smollm2-135m-instruct)
//   has its tokenizer.* metadata copied as it is instead.
//
// Tensors (HF name -> GGUF name; shapes as ggml writes them, reversed):
//   model.embed_tokens.weight -> token_embd.weight, model.norm.weight -> output_norm.weight,
//   lm_head.weight -> output.weight (absent with tied embeddings: readers tie it back),
//   model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
//   mlp.{gate,up,down}_proj}.weight -> blk.N.{attn_norm, attn_{q,k,v,output}, ffn_norm,
//   ffn_{gate,up,down}}.weight.
// q_proj and k_proj rows are permuted as llama.cpp does (Note [rope permutation]); readers undo it.
//
// dtype: f32 writes every tensor F32; f16 writes matrices F16 (round to nearest even) and
// vectors (norms) F32; q8_0 writes matrices Q8_0 (blocks of 32 along a row, scale
// d = max|x| / 127 stored as fp16, q = round(x / d) half away from zero, as ggml's
// quantize_row_q8_0_ref), a matrix whose rows are not a multiple of 32 F16, vectors F32.
//
// Rank 0 only; not collective. Errors: InputError naming the tensor, tokenizer file or key.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "model/transformer.h"

namespace pft {

enum class GgufDtype { kF32, kF16, kQ8_0 };

// "f32" | "f16" | "q8_0"; InputError (naming --dtype) otherwise.
GgufDtype parse_gguf_dtype(const std::string& name);
std::string gguf_dtype_name(GgufDtype dtype);

struct GgufExportOptions {
  GgufDtype dtype = GgufDtype::kF32;
  // The tokenizer: a tokenizer.json file, or a directory holding tokenizer.json (or GPT-2's
  // vocab.json + merges.txt); its tokenizer_config.json / chat_template.jinja are read beside it.
  // Required: a GGUF without a vocabulary serves nothing.
  std::filesystem::path tokenizer;
  std::string name = "pft";  // general.name
};

struct GgufExportReport {
  std::filesystem::path file;
  int64_t tensors = 0;
  uint64_t bytes = 0;       // file size
  std::string pre;          // tokenizer.ggml.pre written
  std::string tensor_types; // e.g. "Q8_0 x14, F32 x7"
};

// ggml's Q8_0 of a contiguous fp32 CPU tensor whose last dimension is a multiple of 32: per
// block of 32 values an fp16 scale d = max|x| / 127 then 32 int8 round(x / d) (34 bytes).
std::vector<std::byte> quantize_q8_0(const at::Tensor& t);

// Writes `params` (pft = HF names, tensors on any device; exactly the parameters of a model of
// `spec`) as the GGUF file `out_file` (its directory is created when missing).
GgufExportReport export_gguf_model(const ModelSpec& spec,
                                   const std::vector<std::pair<std::string, at::Tensor>>& params,
                                   const std::filesystem::path& out_file,
                                   const GgufExportOptions& options);

// The same for a live model (LoRA merged beforehand: TransformerImpl::merge_lora). InputError
// when a prompt or prefix adapter is attached (GGUF has no place for it).
GgufExportReport export_gguf_model(const TransformerImpl& model,
                                   const std::filesystem::path& out_file,
                                   const GgufExportOptions& options);

}  // namespace pft
