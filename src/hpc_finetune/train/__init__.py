"""The training core: the only package that imports torch, transformers, peft, trl, datasets, bitsandbytes,
accelerate and wandb. Entry point: ``python -m hpc_finetune.train RUN.yaml`` (what every node runs) or
``hpc-finetune train RUN.yaml`` (in-process)."""

from hpc_finetune.train import quiet as _quiet

_quiet.install()  # before any training library is imported by a submodule
