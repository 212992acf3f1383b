"""Runs the h5py example of docs/checkpoint-format.md exactly as written, on a checkpoint pft wrote.

usage: h5py_read_test.py DOC CHECKPOINT
The checkpoint comes from tests/ckpt/h5py_test.cpp (ckpt_test_util.h's sample_contents(1) plus a
bfloat16 tensor /model/bf16 = [1, -3, 0.5]). Exits 0 when the example ran and read the values pft
wrote; prints the mismatch otherwise.
"""
import re
import sys

import h5py
import numpy as np

doc, path = sys.argv[1], sys.argv[2]
text = open(doc, encoding="utf-8").read()
block = re.search(r"<!-- h5py-example[^>]*-->\s*```python\n(.*?)```\s*<!-- /h5py-example -->", text, re.S)
assert block, "no h5py example block in " + doc
scope = {"path": path}
exec(block.group(1), scope)  # the documented lines, verbatim

wte = scope["wte"]
assert wte.dtype == np.float32 and wte.shape == (100, 10), (wte.dtype, wte.shape)
expected = (0.5 + 0.001 * np.arange(1000, dtype=np.float32) + 1).astype(np.float32).reshape(100, 10)
assert np.array_equal(wte, expected), "wte values differ"
assert np.all(scope["m"] == np.float32(0.125))
assert "model:" in scope["config"]
assert set(scope["weights"]) == {"transformer.wte.weight", "transformer.ln_f.bias", "bf16"}
paths = {d["path"] for d in scope["manifest"]["datasets"]}
assert "/model/transformer.wte.weight" in paths and "/manifest" not in paths
with h5py.File(path, "r") as f:
    assert int(f["meta"].attrs["step"]) == 1
    bf = f["model/bf16"]
    assert bf.attrs["dtype"] in (b"bfloat16", "bfloat16")  # fixed-length text: bytes in h5py
    assert np.array_equal(bf.astype("float32")[()], np.array([1.0, -3.0, 0.5], np.float32))
print("h5py example OK")
