"""hpc-finetune: fine-tune language models on Slurm clusters.

Login-node code (CLI, config and profile models, rendering, scheduler backends, run records) lives in this package
and never imports the training stack. Compute-side code is :mod:`hpc_finetune.job` (the program each node runs, the
launch plan, the requeue policy) and the training core :mod:`hpc_finetune.train`, the only place torch,
transformers, peft, trl, datasets, bitsandbytes, accelerate, deepspeed and wandb are imported.
"""

__version__ = "0.1.0"
