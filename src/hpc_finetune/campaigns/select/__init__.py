"""Compatibility shim: the select stage's program moved to ``hpc_finetune.job.select``; every name is looked up there.

No queued job needs this path (a select job's command is built when it runs, from the stage registry of the code
installed then: ``python -m hpc_finetune.job.select``); it is kept for a select job whose old code built the command
just before an upgrade replaced the package, and for anyone who typed the old command. ``__main__.py`` beside this
file hands ``python -m hpc_finetune.campaigns.select CAMPAIGN_DIR`` to the moved module's ``main``. A package rather
than a file so that git sees ``campaigns/select.py -> job/select.py`` as a rename.
"""

from hpc_finetune.job import select as _moved


def __getattr__(name: str):
    return getattr(_moved, name)
