// GGUF files (core/gguf.h) -> pft models: the architecture as a ModelSpec and the dequantized
// weights under pft's (Hugging Face) parameter names.
//
// Architectures (general.architecture), read from `<arch>.*` metadata:
//   llama  (SmolLM/SmolLM2, Llama 2/3 without RoPE scaling, TinyLlama, ...) -> family Llama:
//          embedding_length, block_count, feed_forward_length, attention.head_count,
//          attention.head_count_kv (default head_count), attention.key_length (head_dim, default
//          embedding_length / head_count), attention.layer_norm_rms_epsilon, rope.freq_base
//          (default 10000), context_length; vocab from token_embd's shape; tied embeddings when
//          there is no output.weight. Refused: RoPE scaling (rope.scaling.type other than none,
//          a rope_freqs tensor), experts (expert_count > 0), rope.dimension_count != head_dim,
//          any bias tensor.
//   gpt2   -> family Gpt2: the same keys with attention.layer_norm_epsilon; position_embd.
//   qwen2 and everything else are refused naming general.architecture (qwen2: its q/k/v
//          projections have biases, which pft's Llama family does not compute).
//
// Tensor names (llama.cpp's) -> pft's:
//   token_embd.weight                 model.embed_tokens.weight / transformer.wte.weight
//   position_embd.weight              transformer.wpe.weight (gpt2)
//   blk.N.attn_q / attn_k / attn_v    self_attn.q_proj / k_proj / v_proj (llama)
//   blk.N.attn_qkv                    attn.c_attn (gpt2, weight and bias)
//   blk.N.attn_output                 self_attn.o_proj / attn.c_proj
//   blk.N.ffn_gate / ffn_up / ffn_down   mlp.gate_proj / up_proj / down_proj; gpt2: ffn_up ->
//                                     mlp.c_fc, ffn_down -> mlp.c_proj
//   blk.N.attn_norm / ffn_norm        input_layernorm / post_attention_layernorm; gpt2: ln_1/ln_2
//   output_norm                       model.norm / transformer.ln_f
//   output.weight                     lm_head.weight (absent = tied)
// GGML dimensions are reversed with respect to torch shapes (gguf::TensorInfo::shape()).
// Note [GGUF Q/K permutation]: llama.cpp's convert_hf_to_gguf.py reorders the rows of q_proj
// and k_proj within each head from HF's rotate_half layout (first half, second half) to
// interleaved pairs; pft undoes it exactly as transformers' GGUF loader does
// (reshape (heads, D/2, 2, C) -> swap the middle axes -> (heads * D, C); k with the KV heads).
// gpt2's Conv1D weights were transposed to (out, in) by the converter; pft transposes them back.
//
// Memory: tensors are dequantized one at a time into one reusable fp32 buffer and copied into
// the model, so loading needs the fp32 model plus the largest tensor.
//
// Errors: InputError naming the file and the key or tensor (unsupported architecture or type,
// missing or unexpected tensor, wrong shape).
#pragma once

#include <filesystem>
#include <string>

#include "core/gguf.h"
#include "model/hf_import.h"

namespace pft {

// True when `path` is a GGUF file (by its magic, so any extension works).
bool is_gguf_model(const std::filesystem::path& path);

// The architecture, stop tokens, prompt prefix (BOS when tokenizer.ggml.add_bos_token) and chat
// template of a GGUF file, in HfModelInfo's shape (model_type "llama" / "gpt2", dir = the file,
// dtype = the stored tensor types, e.g. "Q4_1+Q8_0+F32"). Allocates nothing.
HfModelInfo read_gguf_model_info(const gguf::File& file);
HfModelInfo read_gguf_model_info(const std::filesystem::path& path);

// Dequantizes every tensor of `file` into `model` (whose spec must be the file's; any device).
HfLoadReport load_gguf_weights(TransformerImpl& model, const gguf::File& file);
HfLoadReport load_gguf_weights(TransformerImpl& model, const std::filesystem::path& path);

}  // namespace pft
