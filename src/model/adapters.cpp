// Adapters of a frozen transformer (contract: model/adapters.h).
#include "model/adapters.h"

#include <cmath>

#include "core/error.h"
#include "core/format.h"
#include "model/transformer.h"

namespace pft {

AdapterSpec adapter_spec_from_config(const Config& c, const ModelSpec& model, int64_t blocks) {
  AdapterSpec s;
  const Method m = c.train.method;
  s.prompt = has_prompt(m);
  s.prefix = has_prefix(m);
  s.lora = has_lora(m);
  const PeftConfig& p = c.peft;
  s.blocks = p.prompt_shared ? 1 : std::max<int64_t>(blocks, 1);
  s.prompt_tokens = s.prompt ? p.prompt_tokens : 0;
  s.prefix_tokens = s.prefix ? p.prefix_tokens : 0;
  s.prefix_projection = p.prefix_projection;
  s.prefix_hidden = p.prefix_hidden > 0 ? p.prefix_hidden : model.n_kv_heads * model.head_dim;
  s.lora_rank = p.lora_rank;
  s.lora_alpha = p.lora_alpha;
  s.lora_dropout = p.lora_dropout;
  s.lora_targets = p.lora_targets;
  if (s.lora && s.lora_targets.empty())
    s.lora_targets = model.family == ModelFamily::Gpt2 ? std::vector<std::string>{"c_attn"}
                                                       : std::vector<std::string>{"q_proj", "v_proj"};
  return s;
}

std::string method_name(const AdapterSpec& s) {
  std::string out = s.prompt ? "prompt_tuning" : s.prefix ? "prefix_tuning" : "";
  if (s.lora) out += out.empty() ? "lora" : "+lora";
  return out.empty() ? "full" : out;
}

namespace {

bool name_matches(const std::string& module, const std::string& target) {
  return module == target ||
         (module.size() > target.size() && module.ends_with(target) &&
          module[module.size() - target.size() - 1] == '.');
}

at::Tensor zeros(std::vector<int64_t> shape) {
  return at::zeros(shape, at::kFloat).set_requires_grad(true);
}

}  // namespace

Adapters::Adapters(const ModelSpec& model, const AdapterSpec& spec,
                   const std::vector<std::tuple<std::string, int64_t, int64_t, bool>>& lora_modules)
    : spec_(spec),
      d_model_(model.d_model),
      kv_width_(model.n_layers * 2 * model.n_kv_heads * model.head_dim),
      init_std_(model.init_std) {
  if (spec.prompt) prompt_ = zeros({spec.blocks * spec.prompt_tokens, d_model_});
  if (spec.prefix) {
    const int64_t rows = spec.blocks * spec.prefix_tokens;
    const int64_t token_dim = model.n_kv_heads * model.head_dim;
    if (spec.prefix_projection) {
      enc_embedding_ = zeros({rows, token_dim});  // PEFT's token_dim: KV * D
      enc_w1_ = zeros({spec.prefix_hidden, token_dim});
      enc_b1_ = zeros({spec.prefix_hidden});
      enc_w2_ = zeros({kv_width_, spec.prefix_hidden});
      enc_b2_ = zeros({kv_width_});
    } else {
      prefix_ = zeros({rows, kv_width_});
    }
  }
  if (spec.lora) {
    for (const std::string& target : spec.lora_targets) {
      bool found = false;
      for (const auto& [name, in, out, conv1d] : lora_modules)
        found = found || name_matches(name, target);
      if (!found) {
        std::string names;
        for (const auto& m : lora_modules)
          if (std::get<0>(m).find(".0.") != std::string::npos)  // layer 0 shows the pattern
            names += (names.empty() ? "" : ", ") + std::get<0>(m);
        throw InputError(fmt::format(
            "peft.lora_targets: `{}` matches no projection of this {} model; targets match the "
            "end of a module name, e.g. of layer 0: {}",
            target, family_name(model.family), names));
      }
    }
    for (const auto& [name, in, out, conv1d] : lora_modules) {
      bool selected = false;
      for (const std::string& target : spec.lora_targets)
        selected = selected || name_matches(name, target);
      if (selected) lora_.push_back(Lora{name, zeros({spec.lora_rank, in}), zeros({out, spec.lora_rank}), conv1d});
    }
  }
}

std::vector<std::pair<std::string, at::Tensor>> Adapters::named() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (prompt_.defined()) out.emplace_back("prompt_embeddings", prompt_);
  if (prefix_.defined()) out.emplace_back("prefix_embeddings", prefix_);
  if (enc_embedding_.defined()) {
    out.emplace_back("prefix_encoder.embedding.weight", enc_embedding_);
    out.emplace_back("prefix_encoder.transform.0.weight", enc_w1_);
    out.emplace_back("prefix_encoder.transform.0.bias", enc_b1_);
    out.emplace_back("prefix_encoder.transform.2.weight", enc_w2_);
    out.emplace_back("prefix_encoder.transform.2.bias", enc_b2_);
  }
  for (const Lora& l : lora_) {
    out.emplace_back(l.module + ".lora_A.weight", l.a);
    out.emplace_back(l.module + ".lora_B.weight", l.b);
  }
  return out;
}

int64_t Adapters::numel() const {
  int64_t n = 0;
  for (const auto& [name, t] : named()) n += t.numel();
  return n;
}

void Adapters::reset_parameters(uint64_t seed, const std::string& prompt_init,
                                const at::Tensor& embedding, const std::vector<int32_t>& text_ids) {
  at::NoGradGuard no_grad;
  const auto normal = [&](at::Tensor& t, const std::string& name, double std) {
    auto gen = init_generator(seed, name);
    t.copy_(at::empty(t.sizes(), at::kFloat).normal_(0.0, std, gen));
  };
  if (prompt_.defined()) {
    const int64_t rows = prompt_.size(0);
    if (prompt_init == "random") {
      normal(prompt_, "prompt_embeddings", init_std_);
    } else {
      at::Tensor ids;
      if (prompt_init == "text") {
        if (text_ids.empty())
          throw InputError("peft.prompt_init_text: prompt_init `text` needs a non-empty text");
        // Repeated to fill each block (PEFT's TEXT init), the same text in every block.
        std::vector<int64_t> rows_ids(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r)
          rows_ids[static_cast<size_t>(r)] =
              text_ids[static_cast<size_t>(r % spec_.prompt_tokens) % text_ids.size()];
        ids = at::tensor(rows_ids, at::kLong);
      } else {  // vocab: rows of random token ids (PEFT's SAMPLE_VOCAB)
        auto gen = init_generator(seed, "prompt_embeddings");
        ids = at::randint(embedding.size(0), {rows}, gen, at::kLong);
      }
      prompt_.copy_(embedding.detach().to(at::kCPU).index_select(0, ids));
    }
  }
  if (prefix_.defined()) normal(prefix_, "prefix_embeddings", init_std_);
  if (enc_embedding_.defined()) {
    normal(enc_embedding_, "prefix_encoder.embedding.weight", init_std_);
    normal(enc_w1_, "prefix_encoder.transform.0.weight", init_std_);
    enc_b1_.zero_();
    normal(enc_w2_, "prefix_encoder.transform.2.weight", init_std_);
    enc_b2_.zero_();
  }
  for (Lora& l : lora_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(l.a.size(1)));
    auto gen = init_generator(seed, l.module + ".lora_A.weight");
    l.a.copy_(at::empty(l.a.sizes(), at::kFloat).uniform_(-bound, bound, gen));
    l.b.zero_();
  }
}

at::Tensor Adapters::fold_prefix() const {
  if (prefix_.defined()) return prefix_;
  PFT_ASSERT(enc_embedding_.defined(), "fold_prefix: no prefix adapter");
  return at::linear(at::tanh(at::linear(enc_embedding_, enc_w1_, enc_b1_)), enc_w2_, enc_b2_);
}

void Adapters::to(at::Device device) {
  at::NoGradGuard no_grad;
  for (at::Tensor* t : {&prompt_, &prefix_, &enc_embedding_, &enc_w1_, &enc_b1_, &enc_w2_, &enc_b2_})
    if (t->defined()) *t = t->to(device).detach().set_requires_grad(true);
  for (Lora& l : lora_) {
    l.a = l.a.to(device).detach().set_requires_grad(true);
    l.b = l.b.to(device).detach().set_requires_grad(true);
  }
}

}  // namespace pft
