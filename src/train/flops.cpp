#include "train/flops.h"

#include <ATen/cuda/CUDAContext.h>

#include <array>
#include <string_view>

namespace pft {

int64_t matmul_params(const ModelConfig& m) {
  const int64_t C = m.d_model, V = m.vocab_size, L = m.n_layers, F = resolved_d_ff(m);
  const int64_t D = C / m.n_heads, KV = resolved_kv_heads(m) * D, Q = m.n_heads * D;
  // The output head multiplies by V x C whether or not it is tied to the token embedding.
  if (m.family == "gpt2") return L * (C * 3 * C + C * C + 2 * C * F) + V * C;
  return L * (C * Q + 2 * C * KV + Q * C + 3 * C * F) + V * C;
}

double training_flops_per_token(const ModelConfig& m, int64_t seq_len, Method method) {
  const double n = static_cast<double>(matmul_params(m));
  const double attention = 12.0 * static_cast<double>(m.n_layers) *
                           static_cast<double>(seq_len) * static_cast<double>(m.d_model);
  return (is_peft(method) ? 4.0 : 6.0) * n + attention;
}

std::optional<double> gpu_peak_flops(const std::string& device_name, Precision precision) {
  struct Peak {
    std::string_view name;  // a substring of the device name; the first match wins
    double half_tflops;     // dense bf16/fp16 tensor-core peak
    double fp32_tflops;     // plain fp32 (no TF32)
  };
  // NVIDIA's data sheets, dense (no sparsity). H200 has the H100 SXM's compute.
  static constexpr std::array<Peak, 9> kPeaks{{
      {"H100 PCIe", 756.0, 51.2},
      {"H100 NVL", 835.0, 60.0},
      {"H100", 989.4, 66.9},  // SXM5 ("NVIDIA H100 80GB HBM3")
      {"H200 NVL", 835.0, 60.0},  // the PCIe card: the H100 NVL's compute
      {"H200", 989.4, 66.9},
      {"GH200", 989.4, 66.9},
      {"A100", 312.0, 19.5},
      {"L40S", 362.0, 91.6},
      {"A10G", 70.0, 31.2},
  }};
  for (const Peak& p : kPeaks)
    if (device_name.find(p.name) != std::string::npos)
      return (precision == Precision::kFp32 ? p.fp32_tflops : p.half_tflops) * 1e12;
  return std::nullopt;
}

std::string device_name(const std::string& device) {
  if (device.rfind("cuda:", 0) != 0) return "";
  return at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(std::stoi(device.substr(5))))
      ->name;
}

}  // namespace pft
