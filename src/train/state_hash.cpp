// Hashes of model state (contract: train/state_hash.h).
#include "train/state_hash.h"

#include "ckpt/format.h"

namespace pft {

std::string module_hash(torch::nn::Module& module, std::optional<at::ScalarType> as) {
  ckpt::Checksummer sum;
  for (const auto& item : module.named_parameters()) {
    at::Tensor t = item.value().detach().to(at::kCPU);
    if (as && t.scalar_type() != *as) t = t.to(*as);
    t = t.contiguous();
    sum.update({static_cast<const std::byte*>(t.data_ptr()),
                static_cast<size_t>(t.numel()) * t.element_size()});
  }
  return ckpt::checksum_text(sum.digest());
}

std::string parameter_hash(const FlatParameters& params) {
  ckpt::Checksummer sum;
  for (size_t g = 0; g < params.num_groups(); ++g) {
    const at::Tensor buf =
        params.data(g).is_cpu() ? params.data(g) : params.data(g).to(at::kCPU).contiguous();
    const auto* base = static_cast<const std::byte*>(buf.data_ptr());
    for (size_t i : params.group_slots(g)) {
      const FlatParameters::Slot& s = params.slots()[i];
      sum.update({base + static_cast<size_t>(s.offset) * buf.element_size(),
                  static_cast<size_t>(s.numel) * buf.element_size()});
    }
  }
  return ckpt::checksum_text(sum.digest());
}

}  // namespace pft
