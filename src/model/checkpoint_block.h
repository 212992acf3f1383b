// Activation checkpointing of one transformer block: keep its input, recompute it in backward.
//
// libtorch C++ has no torch.utils.checkpoint; this is its reentrant variant as one custom
// autograd node (Note [block checkpointing] in checkpoint_block.cpp):
//   forward:  runs `block(inputs)` with grad mode off, so none of its activations is kept; saves
//             the inputs (detached), the RNG state of their device (LoRA dropout draws from it)
//             and the autocast state;
//   backward: re-runs `block` with grad mode on from detached copies of the inputs, under the
//             saved RNG and autocast state, and differentiates its output w.r.t. the inputs and
//             `params` with torch::autograd::grad. The parameters' gradients are *returned* by
//             the node, so autograd's own AccumulateGrad adds them into `param.grad()` (the flat
//             buffers' views, model/flat_params.h) and fires the post-accumulate hooks the
//             reducer (comm/reducer.h) registered, exactly as without checkpointing.
// Requirements: `block` must be a pure function of `inputs`, `params` and the RNG (the same
// output when re-run), and read every trainable tensor it uses either from `inputs` (non-leaf
// tensors such as a prefix computed from an adapter) or from `params` (leaves: weights, LoRA
// A/B). A leaf it reads that is in neither gets no gradient. The output is back-propagated once
// (no retain_graph: the saved inputs are released by the first backward).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace pft {

using BlockFn = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;

// Output of `block(inputs)`, recomputed in backward. `inputs` may hold undefined tensors (passed
// through as such). `params`: the leaves `block` reads that may need gradients (those that do not
// require grad are skipped). With grad mode off, or when nothing requires grad, simply returns
// block(inputs).
at::Tensor checkpoint_block(BlockFn block, const std::vector<at::Tensor>& inputs,
                            const std::vector<at::Tensor>& params);

}  // namespace pft
