// Hugging Face model directories -> pft: config.json to a ModelSpec, safetensors weights into a
// Transformer, and what generation needs (eos / bos ids, the tokenizer's prompt prefix).
//
// A model directory (what `save_pretrained` writes, or a Hub snapshot) holds:
//   config.json                      architecture (model_type gpt2 or llama), read here
//   model.safetensors                the weights, or
//   model.safetensors.index.json     + model-0000x-of-0000y.safetensors shards
//   generation_config.json           eos / bos / pad ids (optional)
//   tokenizer.json, tokenizer_config.json, ...   the tokenizer (data/tokenizer.h loads them)
//
// Families (Note [HF layout] in model/transformer.h: pft's parameter names are HF's):
//   gpt2   GPT2LMHeadModel: n_embd, n_layer, n_head, n_inner, n_positions, layer_norm_epsilon,
//          activation_function gelu_new (or gelu_pytorch_tanh), tied lm_head by default. Conv1D
//          weights are (in, out) in the file and in pft, so they copy without a transpose.
//          Checkpoints saved from GPT2Model (no "transformer." prefix, as the original OpenAI
//          files on the Hub) load too; their attn.bias / attn.masked_bias buffers are skipped.
//   llama  LlamaForCausalLM (Llama 2/3 layouts without RoPE scaling, SmolLM, TinyLlama, ...):
//          hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
//          num_key_value_heads (GQA), head_dim, rms_norm_eps, rope_theta (or
//          rope_parameters.rope_theta), max_position_embeddings, tie_word_embeddings (default
//          false). Anything pft does not compute the same way (attention/MLP biases, RoPE
//          scaling, another activation) is refused naming the config.json key.
//
// Weights: every parameter of the model must be in the checkpoint with the shape config.json
// implies; a stored dtype of F32, F16, BF16 or F64 is converted to the model's fp32. With tied
// embeddings a stored lm_head.weight is ignored (HF ties it too). A tensor the model has no place
// for is an error, except the buffers named above.
//
// Errors: InputError naming the file and the key or tensor (config.json missing or malformed, an
// unsupported setting, a missing tensor, a wrong shape or dtype, a bad safetensors file).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/transformer.h"

namespace pft {

struct HfModelInfo {
  std::filesystem::path dir;
  std::string model_type;    // "gpt2" | "llama"
  std::string architecture;  // architectures[0], e.g. "LlamaForCausalLM" ("" when absent)
  std::string dtype;         // config.json dtype / torch_dtype ("bfloat16", ...; "" when absent)
  ModelSpec spec;
  // Stop tokens: generation_config.json's eos_token_id (an id or a list), else config.json's;
  // may be empty.
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> bos_token_id, pad_token_id;
  // Ids the tokenizer puts before every text (tokenizer.json's TemplateProcessing post-processor,
  // e.g. Llama's <|begin_of_text|>); HF's tokenizer(text) adds them, pft's encode does not.
  std::vector<int32_t> prompt_prefix_ids;
  bool has_tokenizer = false;  // tokenizer.json or vocab.json + merges.txt present
  // The Jinja chat template (chat_template.jinja, or tokenizer_config.json's chat_template; a
  // GGUF file's tokenizer.chat_template); "" when there is none.
  std::string chat_template;
};

// Reads config.json (+ generation_config.json, tokenizer.json's post-processor). Allocates
// nothing. Throws InputError naming the file and key.
// Every function below that takes a model `dir` also takes a GGUF file (model/gguf_import.h:
// the same information from its metadata, the weights dequantized) or a known model name
// (model/known_models.h), resolved first.
HfModelInfo read_hf_model_info(const std::filesystem::path& dir);

// The ids tokenizer.json's TemplateProcessing post-processor puts before every text (see
// HfModelInfo::prompt_prefix_ids); empty when it has none. Throws InputError for a malformed file.
std::vector<int32_t> tokenizer_prompt_prefix(const std::filesystem::path& tokenizer_json);

// The parameters (HF names, pft's order) and shapes a model of `spec` has; what
// TransformerImpl::named_parameters() returns, without allocating it.
std::vector<std::pair<std::string, std::vector<int64_t>>> hf_parameter_layout(
    const ModelSpec& spec);

// What load_hf_weights did (for the log line).
struct HfLoadReport {
  int64_t tensors = 0;               // parameters filled
  uint64_t bytes = 0;                // stored bytes read
  size_t files = 0;                  // safetensors files opened
  std::string dtypes;                // stored dtypes, e.g. "BF16" or "F32+F16"
  std::vector<std::string> skipped;  // tensors present but not used (tied head, buffers)
  double seconds = 0.0;
};

// Copies the weights of `dir` (a model directory, or one .safetensors file) into `model`, whose
// spec must be the directory's. Works on any device (copies convert dtype and device). Throws
// InputError as described at the top of this file; `model` may be partly filled then.
HfLoadReport load_hf_weights(TransformerImpl& model, const std::filesystem::path& dir);

// read_hf_model_info + a Transformer on the CPU (fp32) + load_hf_weights.
Transformer load_hf_model(const std::filesystem::path& dir, HfModelInfo* info = nullptr,
                          HfLoadReport* report = nullptr);

// ---- Training from a pretrained model (model.from_pretrained) ------------------------------
// Note [pretrained architecture]
// With model.from_pretrained: DIR, DIR/config.json decides the architecture (a GGUF file: its
// metadata; a known model name is first resolved to its file, model/known_models.h). Before
// anything else uses the config, apply_pretrained_architecture() writes it into config.model (family,
// vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff, max_seq_len, norm_eps, rope_theta,
// tie_embeddings, init_std), so the model, the resolved config in the run directory and the
// architecture record of checkpoints all describe the pretrained model. A model.* key the
// config sets itself must agree (else InputError naming it and both values); data.tokenizer,
// when the config does not set it, becomes DIR (its tokenizer.json; a GGUF file's own
// tokenizer). Relative paths are relative
// to the working directory. A model whose head_dim differs from hidden_size / heads loads for
// generation but is refused for training (model.* cannot express it).
// Throws InputError "file:line:col: error: model.from_pretrained: ..." for a directory that is
// not a loadable model. No-op without from_pretrained.
void apply_pretrained_architecture(Config& config);

// Fills `model` (built from the config above; any device) with model.from_pretrained's weights
// and logs one line (rank 0). No-op without from_pretrained. Throws InputError naming the key
// and the tensor.
void load_pretrained_weights(TransformerImpl& model, const Config& config);

}  // namespace pft
