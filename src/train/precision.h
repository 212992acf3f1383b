// Mixed precision: the compute dtype of forward passes, and dynamic loss scaling for fp16.
//
// Master weights, gradients and optimizer state always stay fp32 in the flat buffers; bf16 and
// fp16 only change the dtype autocast runs matmuls and friends in (CPU: at::autocast on
// DeviceType::CPU; CUDA: on DeviceType::CUDA). The loss itself is computed in fp32
// (train/loss.h). fp16's narrow range needs the loss multiplied by a scale before backward and
// the gradients divided by it after; the scale halves whenever a gradient overflows (that step
// is skipped) and doubles after `growth_interval` clean steps - torch.amp.GradScaler's rule,
// with the same kernels.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace pft {

// Precision (fp32, bf16, fp16) is train.precision's enum (config/config.h).
// "fp32" | "bf16" | "fp16".
const char* precision_name(Precision p);

// RAII: autocast to bf16/fp16 on `device`'s type for the scope's lifetime (no-op for fp32).
// Restores the previous state and clears the cast-weight cache when the outermost scope ends,
// so casts of weights the optimizer changed are never reused. Thread-local, like autocast.
class AutocastScope {
 public:
  AutocastScope(Precision precision, at::Device device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_type_ = c10::DeviceType::CPU;
  bool prev_enabled_ = false;
  c10::ScalarType prev_dtype_ = c10::ScalarType::BFloat16;
};

struct LossScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

// Dynamic loss scale for fp16. State lives on the device (no sync to read it for scaling).
class LossScaler {
 public:
  LossScaler(at::Device device, const LossScalerOptions& options = {});

  const at::Tensor& scale() const { return scale_; }  // 0-dim float32 on the device
  double scale_value() const;                             // syncs

  // Divides every grad by the scale in place and records whether any value is inf/nan.
  // Returns true when all are finite (then step). Syncs with the device.
  bool unscale(const std::vector<at::Tensor>& grads);

  // Backs the scale off after an overflow, or grows it after growth_interval clean steps.
  // Call once per optimizer step, after unscale().
  void update();

  // Checkpoint state: scale and the count of clean steps since the last change.
  at::Tensor& growth_tracker() { return growth_tracker_; }

 private:
  LossScalerOptions options_;
  at::Tensor scale_;           // 0-dim float32
  at::Tensor growth_tracker_;  // (1,) int32
  at::Tensor found_inf_;       // (1,) float32
  at::Tensor inv_scale_;       // (1,) float32
};

}  // namespace pft
