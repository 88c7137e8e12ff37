"""One check for every value a user gives, whatever its source (YAML file, command-line flag, ``--set``, an
environment variable expanded on the login node): no control characters, no secrets, bounded size.

Secrets are recognised by name (``*_TOKEN``, ``*_API_KEY``, ``*_SECRET``, ``*_PASSWORD``/``*_PWD``, ``*_AUTH``,
``*CREDENTIALS``, and known names such as ``HF_TOKEN`` or ``hub_token``) and by the shape of the value (a Hugging
Face ``hf_`` token, a 40-hex wandb key), never by loose substrings that would also hit ordinary paths and names
(``TOKENIZERS_PARALLELISM``, ``max_tokens``, ``/data/keys``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from hpc_finetune.errors import UserError, shorten

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_STRING = 4096  # longer than any path or name a job needs; a bigger value is a mistake (or an attack)
MAX_ITEMS = 10_000  # items in one free-form value (lists and mappings, all levels)
MAX_DEPTH = 20

_SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|ACCESS_TOKEN|AUTH_TOKEN|API_KEY|APIKEY|SECRET|SECRET_KEY|ACCESS_KEY|PRIVATE_KEY|PASSWORD|"
    r"PASSWD|PWD|PASS|AUTH|CREDENTIALS?)$", re.IGNORECASE)
_KNOWN_SECRETS = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "WANDB_API_KEY", "HUB_TOKEN",
                  "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "NETRC"}
_HF_TOKEN = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9])")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_ASSIGNMENT = re.compile(r"(?:^|[\s,;])([A-Za-z_][A-Za-z0-9_]*)=")

HOW_TO_PASS = ("secrets never go into profiles, run configs or job scripts: export it in your shell before `submit` "
               "(the job inherits your environment), or use `huggingface-cli login` / `wandb login`")


def secret_name(name: str) -> bool:
    """True for a variable or argument name that holds a secret (``HF_TOKEN``, ``hub_token``, ``DB_PWD``)."""
    return name.upper() in _KNOWN_SECRETS or bool(_SECRET_NAME.search(name))


def secret_value(value: str) -> bool:
    """True for a value shaped like a credential: an ``hf_`` token, a 40-hex wandb key, or ``NAME=...`` with a
    secret NAME inside (``--export=ALL,HF_TOKEN=...``)."""
    if _HF_TOKEN.search(value) or _HEX40.fullmatch(value.strip()):
        return True
    return any(secret_name(m.group(1)) for m in _ASSIGNMENT.finditer(value))


def check_name(name: str, *, source: str | None, field: str | None) -> None:
    """A key a user chose (an environment variable, an extra argument): refused if it names a secret."""
    if secret_name(name):
        raise UserError(f"{shorten(name)!r} looks like a secret; {HOW_TO_PASS}", source=source, field=field)


def check_string(value: str, *, source: str | None, field: str | None) -> str:
    """The check every string value passes, wherever it came from."""
    if len(value) > MAX_STRING:
        raise UserError(f"value is {len(value):,} characters long; at most {MAX_STRING:,} are allowed",
                        source=source, field=field)
    if CONTROL.search(value):
        bad = CONTROL.search(value).group(0)  # type: ignore[union-attr]
        raise UserError(f"control characters (here {bad!r}; a newline could start a new line of the job script) "
                        f"are not allowed in values: {shorten(value, 60)!r}", source=source, field=field)
    if secret_value(value):
        raise UserError(f"the value looks like a secret (a token or key); {HOW_TO_PASS}", source=source, field=field)
    return value


def check_free_form(value: Any, *, source: str | None, field: str) -> Any:
    """A free-form value (``training.extra_args``): every string and key inside is checked; size and depth bound."""
    count = 0

    def walk(v: Any, where: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_ITEMS or depth > MAX_DEPTH:
            raise UserError(f"value is too large or too deeply nested (at most {MAX_ITEMS:,} items, "
                            f"{MAX_DEPTH} levels)", source=source, field=field)
        if isinstance(v, str):
            check_string(v, source=source, field=where)
        elif isinstance(v, dict):
            for k, item in v.items():
                key = str(k)
                check_string(key, source=source, field=where)
                check_name(key, source=source, field=f"{where}.{key}")
                walk(item, f"{where}.{key}", depth + 1)
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, f"{where}[{i}]", depth + 1)
        elif isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"expected a finite number, got {v!r}", source=source, field=where)

    walk(value, field, 0)
    return value
