#include "train/precision.h"

#include <ATen/autocast_mode.h>

#include "core/error.h"
#include "model/transformer.h"  // scalar_type_of

namespace pft {

const char* precision_name(Precision p) { return config::config_text(p); }

AutocastScope::AutocastScope(Precision precision, at::Device device) {
  if (precision == Precision::kFp32) return;
  active_ = true;
  device_type_ = device.type();
  prev_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  prev_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::set_autocast_dtype(device_type_, scalar_type_of(precision));
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, prev_enabled_);
  at::autocast::set_autocast_dtype(device_type_, prev_dtype_);
}

LossScaler::LossScaler(at::Device device, const LossScalerOptions& options) : options_(options) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  scale_ = at::full({}, options.init_scale, f32);
  growth_tracker_ = at::zeros({}, f32.dtype(at::kInt));
  found_inf_ = at::zeros({}, f32);
  inv_scale_ = at::ones({}, f32);
}

double LossScaler::scale_value() const { return scale_.item<double>(); }

bool LossScaler::unscale(const std::vector<at::Tensor>& grads) {
  at::NoGradGuard no_grad;
  found_inf_.zero_();
  at::reciprocal_out(inv_scale_, scale_);
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv_scale_);
  return found_inf_.item<float>() == 0.0f;
}

void LossScaler::update() {
  at::NoGradGuard no_grad;
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, options_.growth_factor,
                         options_.backoff_factor, options_.growth_interval);
}

}  // namespace pft
