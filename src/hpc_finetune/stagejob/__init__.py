"""Compatibility shim: the stage job's program moved to ``hpc_finetune.job.stagejob``.

Stage jobs queued before the move carry a pickled ``hpc_finetune.stagejob.StageProgram`` (their jobs/program.pkl):
importing this name gives the moved module itself (same class, same ``SELECTION``), so unpickling finds the class and
those jobs run unchanged; the command they run is built when they run, from the stage registry of the code installed
then (campaigns/stages.py). A package rather than a file so that git sees ``stagejob.py -> job/stagejob.py`` as a
rename and merges edits made to the old path.
"""

import sys

from hpc_finetune.job import stagejob as _moved

sys.modules[__name__] = _moved
