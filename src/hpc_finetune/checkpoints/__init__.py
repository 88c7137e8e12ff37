"""Compatibility shim: moved to ``hpc_finetune.job.checkpoints`` (importing this name gives that module)."""

import sys

from hpc_finetune.job import checkpoints as _moved

sys.modules[__name__] = _moved
