// Activation checkpointing of one block (contract: model/checkpoint_block.h).
#include "model/checkpoint_block.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>

#include "core/error.h"

namespace pft {

namespace {

// Note [block checkpointing]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// Why the parameters are inputs of the node: autograd accumulates a leaf's gradient only through
// the leaf's AccumulateGrad node, which is where the reducer's post-accumulate hooks sit (they
// start the bucket all-reduces while backward goes on). The recomputation's own graph also ends
// in those AccumulateGrad nodes, but torch::autograd::grad() only *returns* gradients (it never
// accumulates into .grad nor runs those hooks); the node then returns them as the gradients of
// its `params` inputs, and the engine of the outer backward accumulates them - into the same
// flat-buffer views, firing the same hooks, once per micro-batch as without checkpointing. Only
// the order differs: a checkpointed block's parameters all become ready when its node runs,
// which the reducer allows (Note [bucket order] in comm/reducer.cpp).
//
// RNG: the only randomness in a block is LoRA dropout (model/transformer.h has no other
// dropout). The forward saves the state of the default generator of the inputs' device before
// running the block; the backward sets it, re-runs the block (drawing the same masks), and puts
// back the state it found, so the random stream after the step is the same as without
// checkpointing (the forward already advanced it once).
//
// Autocast: the outer backward runs after the training step's autocast scope has closed; the
// recomputation re-enters the state the forward saw (same dtype, so the same casts and the same
// numbers) and clears the cast cache afterwards, as train/precision.h's AutocastScope does.
struct Closure : torch::CustomClassHolder {
  BlockFn block;
  std::vector<at::Tensor> inputs;  // detached; may hold undefined tensors
  std::vector<bool> input_needs_grad;
  std::vector<size_t> input_slot;  // slot of input i among the node's tensors (defined ones)
  std::vector<at::Tensor> params;  // the leaves themselves
  at::Tensor rng_state;            // of the default generator of the inputs' device
  at::Device device = at::kCPU;
  bool autocast = false;
  at::ScalarType autocast_dtype = at::kBFloat16;
};

class CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
 public:
  // tensors = inputs then params. Returns {block output}.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                c10::intrusive_ptr<Closure> closure,
                                                at::TensorList tensors) {
    (void)tensors;  // the closure holds them; listed here so autograd wires their edges
    at::Tensor out;
    {
      at::NoGradGuard no_grad;
      out = closure->block(closure->inputs);
    }
    ctx->saved_data["closure"] = c10::IValue::make_capsule(closure);
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto it = ctx->saved_data.find("closure");
    if (it == ctx->saved_data.end())
      throw RuntimeFailure(
          "checkpointed block: back-propagated twice (no retain_graph with "
          "train.activation_checkpointing)");
    auto closure = c10::static_intrusive_pointer_cast<Closure>(it->second.toCapsule());
    ctx->saved_data.erase(it);
    Closure& c = *closure;
    const size_t n_in = c.inputs.size(), n_params = c.params.size();
    size_t n_defined = 0;
    for (const at::Tensor& t : c.inputs) n_defined += t.defined() ? 1 : 0;
    // Slot 0: the closure; then the defined inputs, then the parameters.
    torch::autograd::variable_list result(1 + n_defined + n_params);
    if (!grads[0].defined()) return result;

    std::vector<at::Tensor> leaves(n_in);
    std::vector<at::Tensor> wrt;   // what grad() differentiates against
    std::vector<size_t> wrt_slot;  // its slot in `result`
    for (size_t i = 0; i < n_in; ++i) {
      if (!c.inputs[i].defined()) continue;
      leaves[i] = c.inputs[i].detach().requires_grad_(c.input_needs_grad[i]);
      if (c.input_needs_grad[i]) {
        wrt.push_back(leaves[i]);
        wrt_slot.push_back(1 + c.input_slot[i]);
      }
    }
    for (size_t j = 0; j < n_params; ++j)
      if (c.params[j].requires_grad()) {
        wrt.push_back(c.params[j]);
        wrt_slot.push_back(1 + n_defined + j);
      }
    if (wrt.empty()) return result;

    at::Tensor out;
    {
      at::Generator gen = at::globalContext().defaultGenerator(c.device);
      at::Tensor found;
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        found = gen.get_state();
        gen.set_state(c.rng_state);
      }
      const c10::DeviceType type = c.device.type();
      const bool prev_enabled = at::autocast::is_autocast_enabled(type);
      const at::ScalarType prev_dtype = at::autocast::get_autocast_dtype(type);
      if (c.autocast) {
        at::autocast::set_autocast_enabled(type, true);
        at::autocast::set_autocast_dtype(type, c.autocast_dtype);
        at::autocast::increment_nesting();
      }
      try {
        at::AutoGradMode grad_on(true);
        out = c.block(leaves);
      } catch (...) {
        if (c.autocast && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        at::autocast::set_autocast_enabled(type, prev_enabled);
        at::autocast::set_autocast_dtype(type, prev_dtype);
        throw;
      }
      if (c.autocast && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      at::autocast::set_autocast_enabled(type, prev_enabled);
      at::autocast::set_autocast_dtype(type, prev_dtype);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(found);
    }
    const torch::autograd::variable_list got =
        torch::autograd::grad({out}, wrt, {grads[0]}, /*retain_graph=*/false,
                              /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t k = 0; k < got.size(); ++k) result[wrt_slot[k]] = got[k];
    return result;
  }
};

}  // namespace

at::Tensor checkpoint_block(BlockFn block, const std::vector<at::Tensor>& inputs,
                            const std::vector<at::Tensor>& params) {
  bool any_grad = false;
  for (const at::Tensor& t : inputs) any_grad = any_grad || (t.defined() && t.requires_grad());
  for (const at::Tensor& p : params) any_grad = any_grad || p.requires_grad();
  if (!at::GradMode::is_enabled() || !any_grad) return block(inputs);

  auto closure = c10::make_intrusive<Closure>();
  closure->block = std::move(block);
  at::Device device = at::kCPU;
  std::vector<at::Tensor> tensors;  // autograd wires one edge per tensor of this list
  for (const at::Tensor& t : inputs) {
    closure->input_slot.push_back(tensors.size());
    if (t.defined()) tensors.push_back(t);
    closure->inputs.push_back(t.defined() ? t.detach() : t);
    closure->input_needs_grad.push_back(t.defined() && t.requires_grad());
    if (t.defined()) device = t.device();
  }
  closure->params = params;
  closure->device = device;
  const c10::DeviceType type = device.type();
  closure->autocast = at::autocast::is_autocast_enabled(type);
  closure->autocast_dtype = at::autocast::get_autocast_dtype(type);
  {
    at::Generator gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    closure->rng_state = gen.get_state();
  }
  tensors.insert(tensors.end(), params.begin(), params.end());
  return CheckpointedBlock::apply(closure, at::TensorList(tensors))[0];
}

}  // namespace pft
