"""hpc-finetune: fine-tune language models on Slurm clusters.

Login-node code (CLI, config and profile models, rendering, scheduler backends, run records) lives in this package
and never imports the training stack. The training core is :mod:`hpc_finetune.train`, the only place torch,
transformers, peft, trl, datasets, bitsandbytes, accelerate, deepspeed and wandb are imported.
"""

__version__ = "0.1.0"
