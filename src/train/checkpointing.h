// The trainer's side of checkpoints (docs/checkpoint-format.md), one topic per file pair:
#pragma once

#include "train/checkpoint_tensors.h"  // torch tensors <-> checkpoint datasets (dtype maps, copies)
#include "train/checkpoint_state.h"    // live training state <-> ckpt::Contents; RNG gather
#include "train/resume.h"              // train.resume: the checkpoint to resume from
#include "train/checkpointer.h"        // Checkpointer (resume, saves, reports); retention policy
#include "train/adapter_init.h"        // peft.init_from: adapter tensors from a checkpoint
#include "train/state_hash.h"          // parameter_hash, module_hash
