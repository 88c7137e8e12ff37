"""The layering of the package, read from the source (every import statement, at any depth, function-local ones too).

- Compute side, ``train/`` and ``job/``: runs on the compute nodes; never imports the login node's run index
  (records), the run service (runs, tracking), the CLI, or the pre-flight checks (check, datacheck, livecheck).
- Login side, everything else: never imports ``train/`` (the training stack) except the entry points listed in
  ``LOGIN_TO_TRAIN``, each lazily inside the command that trains, evaluates, merges or builds the demo.
- Nothing in the package imports the compatibility packages left at the old paths (``launch``, ``segments``,
  ``checkpoints``, ``stagejob``, ``campaigns.select``): they exist for jobs queued before the move, not for new code.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "hpc_finetune"

COMPUTE = ("hpc_finetune.train", "hpc_finetune.job")
LOGIN_ONLY = ("hpc_finetune.records", "hpc_finetune.runs", "hpc_finetune.runstatus", "hpc_finetune.tracking",
              "hpc_finetune.cli",
              "hpc_finetune.check", "hpc_finetune.datacheck", "hpc_finetune.livecheck")
SHIMS = ("hpc_finetune.launch", "hpc_finetune.segments", "hpc_finetune.checkpoints", "hpc_finetune.stagejob",
         "hpc_finetune.campaigns.select")

# login module -> training module it may import, and why (each import sits inside the command's run()).
LOGIN_TO_TRAIN = {
    ("hpc_finetune.cli.train", "hpc_finetune.train.core"): "`hpc-finetune train`: the training core in-process",
    ("hpc_finetune.cli.eval", "hpc_finetune.train.evaluate"): "`hpc-finetune eval` without --submit: in-process",
    ("hpc_finetune.cli.merge", "hpc_finetune.train.merge"): "`hpc-finetune merge`: loads the model to merge LoRA",
    ("hpc_finetune.cli.demo", "hpc_finetune.train.assets"): "`hpc-finetune demo`: builds the tiny demo model",
}

# Known violations, each to be removed (the lead deletes the line when the fix is merged).
ALLOWED_VIOLATIONS: set[tuple[str, str]] = set()
# Modules still importing a compatibility package, each to be moved to the new path (then its line deleted).
ALLOWED_SHIM_IMPORTS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or (PKG.parent / rel / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every hpc_finetune module ``path`` imports (``from X import y`` counts X and, if y is a module, X.y)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names if is_module(f"{mod}.{a.name}"))
    return {m for m in found if m == "hpc_finetune" or m.startswith("hpc_finetune.")}


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def edges() -> set[tuple[str, str]]:
    return {(module_name(p), target) for p in PKG.rglob("*.py") for target in imports(p)}


def test_the_import_reader_sees_function_local_and_relative_imports(tmp_path):
    """The reader itself: a function-local import and a submodule named in ``from X import y`` are edges."""
    found = imports(PKG / "cli" / "train.py")
    assert "hpc_finetune.train.core" in found  # imported inside run()
    assert "hpc_finetune.job.signals" in imports(PKG / "job" / "launch.py")  # from hpc_finetune.job import signals


def test_compute_side_never_imports_login_modules():
    bad = sorted((a, b) for a, b in edges() if under(a, COMPUTE) and under(b, LOGIN_ONLY)
                 and (a, b) not in ALLOWED_VIOLATIONS)
    assert bad == [], "compute-side modules importing login-only modules: " + ", ".join(f"{a} -> {b}" for a, b in bad)


def test_login_side_imports_train_only_through_the_entry_points():
    bad = sorted((a, b) for a, b in edges()
                 if not under(a, COMPUTE + SHIMS) and under(b, ("hpc_finetune.train",))
                 and (a, b) not in LOGIN_TO_TRAIN)
    assert bad == [], "login modules importing the training package: " + ", ".join(f"{a} -> {b}" for a, b in bad)


def test_the_listed_exceptions_still_exist():
    """An allowance nobody needs any more is removed, not kept (it would hide the next violation)."""
    all_edges = edges()
    assert set(LOGIN_TO_TRAIN) <= all_edges
    assert ALLOWED_VIOLATIONS <= all_edges, "a known violation is gone: delete its line in ALLOWED_VIOLATIONS"
    assert ALLOWED_SHIM_IMPORTS <= all_edges, "a shim import is gone: delete its line in ALLOWED_SHIM_IMPORTS"


def test_nothing_imports_the_compatibility_packages():
    bad = sorted((a, b) for a, b in edges() if under(b, SHIMS) and not under(a, SHIMS)
                 and (a, b) not in ALLOWED_SHIM_IMPORTS)
    assert bad == [], ", ".join(f"{a} -> {b}" for a, b in bad)
