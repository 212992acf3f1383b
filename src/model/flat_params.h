// Flat parameter and gradient storage: every trainable parameter lives in a view of one
// contiguous buffer per (dtype, weight-decay) group, and so does its gradient.
//
// Flat buffers are the single source of truth for trainable state: the optimizer updates a whole
// group buffer in one fused call, the gradient reducer all-reduces (buckets of) the grad buffers,
// checkpoints read and write them. Nobody keeps a second copy of a parameter.
//
// Layout. Groups appear in the order their first parameter was registered; inside a group,
// parameters sit in registration order, each starting at a multiple of kAlignBytes (64 bytes)
// so kernels see aligned views; the padding between them is zero in both buffers and stays zero
// (a zero gradient leaves a zero weight at zero under AdamW). A parameter shared by two modules
// (tied embeddings) is stored once, under its first name.
//
// Note [grads stay views]: autograd's AccumulateGrad adds a new gradient *in place* into
// `param.grad()` when that gradient is already defined, grad mode is off during backward (no
// create_graph) and the layouts are compatible (dense, same strides) - all true for our views.
// It *replaces* `.grad` only when it is undefined (it then steals or clones the incoming
// gradient) or under create_graph. So: `.grad` is set to the view once, here, and never reset to
// undefined; zero_grad() zeroes the buffers instead of dropping grads. tests/train checks that
// after backward every grad still points into its buffer (true in libtorch 2.11).
// rebind_grads() is the safety net: it detects a replaced grad, copies it into the view and
// re-points `.grad` (it returns how many it had to fix; the trainer warns when that is not 0).
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pft {

class FlatParameters {
 public:
  struct Slot {
    std::string name;          // registration name, e.g. "transformer.h.0.attn.c_attn.weight"
    at::Tensor param;       // the parameter; its data is data(group)[offset : offset+numel]
    size_t group = 0;
    int64_t offset = 0;        // elements from the start of the group buffer
    int64_t numel = 0;
    std::vector<int64_t> shape;
  };

  // `named`: trainable parameters in registration order (requires_grad ones; others are
  // ignored). All must live on one device. A parameter decays unless its name contains one of
  // `no_decay` (train.no_decay). Re-points every parameter's data and grad at the buffers.
  FlatParameters(const std::vector<std::pair<std::string, at::Tensor>>& named,
                 const std::vector<std::string>& no_decay);

  // The trainable parameters of `module` (named_parameters(), recursive), flattened.
  static FlatParameters from_module(torch::nn::Module& module,
                                    const std::vector<std::string>& no_decay);

  FlatParameters(const FlatParameters&) = delete;
  FlatParameters& operator=(const FlatParameters&) = delete;
  FlatParameters(FlatParameters&&) = default;
  FlatParameters& operator=(FlatParameters&&) = default;

  size_t num_groups() const { return groups_.size(); }
  at::Tensor& data(size_t g) { return groups_.at(g).data; }  // 1-D, (group numel + padding)
  at::Tensor& grad(size_t g) { return groups_.at(g).grad; }  // 1-D, same size
  const at::Tensor& data(size_t g) const { return groups_.at(g).data; }
  const at::Tensor& grad(size_t g) const { return groups_.at(g).grad; }
  bool decay(size_t g) const { return groups_.at(g).decay; }
  // Slots of group g, in registration order (indices into slots()).
  const std::vector<size_t>& group_slots(size_t g) const { return groups_.at(g).slots; }

  // Every flattened parameter, in registration order.
  const std::vector<Slot>& slots() const { return slots_; }
  // Parameter elements over all groups, padding excluded.
  int64_t numel() const { return numel_; }

  std::vector<at::Tensor> grads() const;  // grad(g) for every g, group order
  std::vector<at::Tensor> datas() const;  // data(g) for every g, group order

  // Zeroes every grad buffer (grads stay defined views, Note [grads stay views]).
  void zero_grad();

  // Puts back any `.grad` autograd replaced (copying its values into the buffer). Returns how
  // many were fixed; 0 in normal operation.
  size_t rebind_grads();

  static constexpr int64_t kAlignBytes = 64;

 private:
  struct Group {
    at::Tensor data, grad;
    bool decay = true;
    c10::ScalarType dtype = c10::ScalarType::Float;
    std::vector<size_t> slots;
  };
  at::Tensor grad_view(const Slot& s) const;

  std::vector<Group> groups_;
  std::vector<Slot> slots_;
  int64_t numel_ = 0;
};

}  // namespace pft
