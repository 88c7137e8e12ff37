"""Compatibility shim: the node program moved to ``hpc_finetune.job.launch``.

Jobs queued before the move carry a pickled ``hpc_finetune.launch.NodeProgram``; importing this name gives the moved
module itself (same classes, same functions), so unpickling finds the class and those jobs run unchanged. A package
rather than a file so that git sees ``launch.py -> job/launch.py`` as a rename and merges edits made to the old path.
"""

import sys

from hpc_finetune.job import launch as _moved

sys.modules[__name__] = _moved
