"""``python -m hpc_finetune.segments ...`` (job scripts rendered before the move): the moved module's ``main``."""

from hpc_finetune.job.segments import main

raise SystemExit(main())
