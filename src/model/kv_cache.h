// The key/value cache of incremental decoding (TransformerImpl::forward_cached).
//
// Per layer, keys and values of every token seen so far live in preallocated slots
//   k[layer], v[layer]   (B, KV, S, D)   S = capacity, in the compute dtype, on the model's device
// allocated on the first append (so they take the dtype autocast gives them). A decoding step
// writes its T new tokens at slots [length, length + T) of every layer and advances length by T
// once, after the last layer; attention then reads slots [0, length + T) -- views, no copies.
//
// Batched prompts of different lengths are left-padded; key_valid (B, S) says which slots hold
// real tokens, so padding is never attended to (each sequence keeps its own positions through
// position_ids). Without key_valid every slot is valid.
//
// Rows may be dropped (keep_rows) between steps; the remaining rows keep their slots.
//
// Not thread-safe; one cache per sequence batch. Reusable: reset() keeps the storage.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.h"

namespace pft {

class KvCache {
 public:
  // `capacity`: the most tokens (prompt + generated, padding included) one row will hold.
  KvCache(int64_t n_layers, int64_t batch, int64_t capacity)
      : k_(static_cast<size_t>(n_layers)),
        v_(static_cast<size_t>(n_layers)),
        batch_(batch),
        capacity_(capacity) {
    PFT_ASSERT(n_layers > 0 && batch > 0 && capacity > 0, "KvCache needs positive sizes");
  }

  int64_t n_layers() const { return static_cast<int64_t>(k_.size()); }
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // slots filled

  // valid: bool (B, S) on the model's device, true where a slot holds a real token; undefined =
  // every slot valid.
  void set_key_valid(at::Tensor valid) {
    PFT_ASSERT(!valid.defined() || (valid.dim() == 2 && valid.size(0) == batch_ &&
                                    valid.size(1) == capacity_ && valid.scalar_type() == at::kBool),
               "KvCache key_valid must be bool (B, capacity)");
    key_valid_ = std::move(valid);
  }
  const at::Tensor& key_valid() const { return key_valid_; }

  // Writes k, v (B, KV, T, D) at slots [length, length + T) of `layer`; returns the layer's keys
  // and values of slots [0, length + T), (B, KV, length + T, D) views.
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k,
                                           const at::Tensor& v) {
    const int64_t t = k.size(2);
    auto& kc = k_[static_cast<size_t>(layer)];
    auto& vc = v_[static_cast<size_t>(layer)];
    if (!kc.defined()) {
      kc = at::empty({batch_, k.size(1), capacity_, k.size(3)}, k.options());
      vc = at::empty({batch_, v.size(1), capacity_, v.size(3)}, v.options());
    }
    kc.narrow(2, length_, t).copy_(k);
    vc.narrow(2, length_, t).copy_(v);
    return {kc.narrow(2, 0, length_ + t), vc.narrow(2, 0, length_ + t)};
  }

  // Keeps only the batch rows `rows` (int64 (B') indexes, on the model's device, in the new
  // order): every layer's keys and values and key_valid are gathered into new storage of B' rows;
  // length is unchanged. Generation drops the sequences that finished this way.
  void keep_rows(const at::Tensor& rows) {
    PFT_ASSERT(rows.dim() == 1 && rows.numel() > 0, "KvCache::keep_rows needs a non-empty (B') index");
    for (auto* layers : {&k_, &v_})
      for (auto& t : *layers)
        if (t.defined()) t = t.index_select(0, rows);
    if (key_valid_.defined()) key_valid_ = key_valid_.index_select(0, rows);
    batch_ = rows.numel();
  }

  // Called once per forward, after every layer appended its `t` tokens.
  void advance(int64_t t) { length_ += t; }
  // Empties the cache (storage kept; key_valid cleared).
  void reset() {
    length_ = 0;
    key_valid_ = at::Tensor();
  }

 private:
  std::vector<at::Tensor> k_, v_;  // per layer (B, KV, S, D), undefined until the first append
  at::Tensor key_valid_;           // (B, S) bool, or undefined
  int64_t batch_ = 0;
  int64_t capacity_ = 0;
  int64_t length_ = 0;
};

}  // namespace pft
