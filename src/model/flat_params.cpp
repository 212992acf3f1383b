#include "model/flat_params.h"

#include <algorithm>
#include <optional>
#include <unordered_set>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

bool matches_any(const std::string& name, const std::vector<std::string>& patterns) {
  for (const std::string& p : patterns)
    if (!p.empty() && name.find(p) != std::string::npos) return true;
  return false;
}

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

}  // namespace

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, at::Tensor>>& named,
                               const std::vector<std::string>& no_decay) {
  // 1. Keep each trainable tensor once (tied weights appear under two names), assign groups.
  std::unordered_set<const void*> seen;
  std::vector<int64_t> group_size;
  std::optional<at::Device> device;
  for (const auto& [name, p] : named) {
    if (!p.defined() || !p.requires_grad()) continue;
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    if (!device) device = p.device();
    PFT_ASSERT(p.device() == *device,
               fmt::format("parameter {} is on {}, others on {}", name, p.device().str(), device->str()));
    const bool decay = !matches_any(name, no_decay);
    const c10::ScalarType dtype = p.scalar_type();
    size_t g = 0;
    while (g < groups_.size() && !(groups_[g].decay == decay && groups_[g].dtype == dtype)) ++g;
    if (g == groups_.size()) {
      groups_.push_back(Group{{}, {}, decay, dtype, {}});
      group_size.push_back(0);
    }
    const int64_t align = std::max<int64_t>(1, kAlignBytes / static_cast<int64_t>(c10::elementSize(dtype)));
    Slot s;
    s.name = name;
    s.param = p;
    s.group = g;
    s.offset = round_up(group_size[g], align);
    s.numel = p.numel();
    s.shape = p.sizes().vec();
    group_size[g] = s.offset + s.numel;
    numel_ += s.numel;
    groups_[g].slots.push_back(slots_.size());
    slots_.push_back(std::move(s));
  }

  // 2. Allocate the buffers, copy values in, re-point data and grad at views.
  for (size_t g = 0; g < groups_.size(); ++g) {
    const auto options = at::TensorOptions().dtype(groups_[g].dtype).device(*device);
    groups_[g].data = at::zeros({group_size[g]}, options);
    groups_[g].grad = at::zeros({group_size[g]}, options);
  }
  at::NoGradGuard no_grad;
  for (Slot& s : slots_) {
    Group& group = groups_[s.group];
    at::Tensor view = group.data.narrow(0, s.offset, s.numel).view(s.shape);
    view.copy_(s.param.detach());
    s.param.set_data(view);
    s.param.mutable_grad() = grad_view(s);
  }
}

FlatParameters FlatParameters::from_module(torch::nn::Module& module,
                                           const std::vector<std::string>& no_decay) {
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    named.emplace_back(item.key(), item.value());
  return FlatParameters(named, no_decay);
}

at::Tensor FlatParameters::grad_view(const Slot& s) const {
  return groups_[s.group].grad.narrow(0, s.offset, s.numel).view(s.shape);
}

std::vector<at::Tensor> FlatParameters::grads() const {
  std::vector<at::Tensor> out;
  for (const Group& g : groups_) out.push_back(g.grad);
  return out;
}

std::vector<at::Tensor> FlatParameters::datas() const {
  std::vector<at::Tensor> out;
  for (const Group& g : groups_) out.push_back(g.data);
  return out;
}

void FlatParameters::zero_grad() {
  for (Group& g : groups_) g.grad.zero_();
}

size_t FlatParameters::rebind_grads() {
  size_t fixed = 0;
  at::NoGradGuard no_grad;
  for (Slot& s : slots_) {
    const Group& group = groups_[s.group];
    const auto* expected = static_cast<const char*>(group.grad.data_ptr()) +
                           s.offset * static_cast<int64_t>(group.grad.element_size());
    at::Tensor& g = s.param.mutable_grad();
    if (g.defined() && g.data_ptr() == expected) continue;
    at::Tensor view = grad_view(s);
    if (g.defined()) view.copy_(g);
    else view.zero_();
    g = view;
    ++fixed;
  }
  return fixed;
}

}  // namespace pft
