"""``python -m hpc_finetune.campaigns.select CAMPAIGN_DIR``: the moved ``hpc_finetune.job.select``'s main."""

import sys

from hpc_finetune.job.select import main

sys.exit(main())
