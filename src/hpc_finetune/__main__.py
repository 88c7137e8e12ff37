import sys

from hpc_finetune.cli.main import main

sys.exit(main())
