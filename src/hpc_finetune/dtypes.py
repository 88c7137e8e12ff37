"""Weight dtypes by name (torch's attribute names), without importing torch: which exist here, how many bytes one
element takes, and which dtype each ``training.precision`` computes in. ``RunConfig.load_dtype``,
``compute_dtype`` and ``quant_storage_dtype`` decide which one a run uses; `plan` and `merge` size memory with
``BYTES``; the training core turns a name into ``getattr(torch, name)``.
"""

from __future__ import annotations

FLOATING = ("float32", "float16", "bfloat16")  # the dtypes weights are loaded, computed and merged in
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "uint8": 1}  # one element; uint8: packed 4-bit storage
PRECISION = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # training.precision -> its dtype
