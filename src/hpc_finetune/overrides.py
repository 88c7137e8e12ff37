"""The ``--set KEY=VALUE`` option, defined once: every command that reads a run config takes it (the CLI's run
commands, ``hpc-finetune train`` and ``python -m hpc_finetune.train``); runconfig.load_run_config applies the values.
argparse only (the training package imports it too, and must not import the CLI)."""

from __future__ import annotations

import argparse


def add_set_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set training.learning_rate=2e-4 (repeatable)")
