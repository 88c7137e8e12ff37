import sys

from hpc_finetune.train.core import main

sys.exit(main())
