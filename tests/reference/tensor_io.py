"""Named-tensor files shared between pft's C++ tests and the Python references.

A file holds one insertion-ordered dict {name: tensor} in torch.save's zip format. C++ writes it
with pft::test::save_tensors (torch::pickle_save) and reads it with pft::test::load_tensors
(torch::pickle_load); see tests/model/model_test_util.h.

    python3 tensor_io.py double IN OUT   # writes IN with every tensor times 2 (round-trip test)
"""

import json
import os
import sys
import torch


def load(path):
    """The dict {name: tensor} in file order, on the CPU."""
    # torch::pickle_save tags typed dicts with restore_type_tag: harmless, allow it.
    import torch.jit._pickle
    with torch.serialization.safe_globals([torch.jit._pickle.restore_type_tag]):
        return torch.load(path, map_location="cpu", weights_only=True)


def save(path, tensors):
    """Writes {name: tensor} (order kept) as detached, contiguous CPU tensors."""
    # A plain dict (ordered): torch::pickle_load cannot read collections.OrderedDict.
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)


def read_json(case_dir, name):
    """The JSON file `name` a C++ test wrote into `case_dir` (spec.json, train.json, ...)."""
    with open(os.path.join(case_dir, name)) as f:
        return json.load(f)


def main(argv):
    if len(argv) == 4 and argv[1] == "double":
        save(argv[3], {k: v * 2 for k, v in load(argv[2]).items()})
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
