"""Compatibility shim: moved to ``hpc_finetune.job.segments``; every name is looked up there.

Job scripts rendered before the move run ``python -m hpc_finetune.segments RUN_DIR OUT STATUS RETRIES MAXREQ`` after a
failed ``srun``: ``__main__.py`` beside this file hands those arguments to the moved module's ``main``. (Not a
``sys.modules`` swap as in ``hpc_finetune.launch``: ``-m`` needs this package's own ``__path__`` to find
``__main__``.) A package rather than a file so that git sees ``segments.py -> job/segments.py`` as a rename.
"""

from hpc_finetune.job import segments as _moved


def __getattr__(name: str):
    return getattr(_moved, name)
