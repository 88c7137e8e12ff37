"""Data: load local files (or a hub dataset when online), check them, format, tokenize, pack (packing.py), cache.

The tokenized (and packed) dataset is saved on shared storage under a fingerprint of the data files, tokenizer,
chat template, max length and packing settings. Only the main process writes it; the others wait for its
``DONE`` marker file (no collective that could time out), then every rank loads the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from hpc_finetune import __version__, cachekey
from hpc_finetune.dataformat import LOADERS, missing_field, unsupported_suffix, value_problem
from hpc_finetune.envvars import TOKENIZED_CACHE
from hpc_finetune.errors import UserError
from hpc_finetune.runconfig import DataConfig, RunConfig
from hpc_finetune.train import packing

CACHE_FORMAT = 3  # bump when the tokenized layout changes (3: bfd rows with seq_lengths by default)


def global_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def cache_root() -> Path:
    if os.environ.get(TOKENIZED_CACHE):
        return Path(os.environ[TOKENIZED_CACHE])
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]) / "hpc-finetune-tokenized"
    return Path.home() / ".cache" / "hpc-finetune" / "tokenized"


# --- raw data ------------------------------------------------------------------------------------------------------
def load_raw(path: str, field: str) -> Any:
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist", field=f"data.{field}")
    if p.is_dir():
        ds = load_from_disk(str(p))
        if isinstance(ds, DatasetDict):
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        return ds
    unsupported = unsupported_suffix(p)
    if unsupported:
        raise UserError(unsupported, field=f"data.{field}")
    if p.stat().st_size == 0:
        raise UserError(f"{p} is empty", field=f"data.{field}")
    if p.suffix == ".arrow":
        return Dataset.from_file(str(p))
    try:
        return load_dataset(LOADERS[p.suffix], data_files=str(p), split="train")
    except Exception as exc:  # datasets raises many types for unparsable files
        raise UserError(f"{p} does not parse as {p.suffix[1:]}: {root_cause(exc)}", field=f"data.{field}") from None


def root_cause(exc: BaseException) -> str:
    """The first line of the innermost exception: datasets wraps the reader's precise error ("JSON parse error ... in
    row 150") in a generic "An error occurred while generating the dataset"."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen or not str(inner).strip():
            break
        seen.add(id(inner))
        exc = inner
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_named(data: DataConfig) -> tuple[Any, Optional[Any]]:
    """``dataset_name``: a folder of save_to_disk splits, or a hub dataset (online only)."""
    from datasets import load_dataset, load_from_disk

    splits = [s.strip() for s in data.splits.split(",") if s.strip()]
    name = data.dataset_name or ""
    out = []
    for split in splits[:2]:
        local = Path(name) / split
        if local.exists():
            out.append(load_from_disk(str(local)))
        elif os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise UserError(f"{name!r}: no local folder {local} and the hub is offline; download the dataset on a "
                            "machine with internet and give its local path", field="data.dataset_name")
        else:
            out.append(load_dataset(name, split=split))
    return out[0], (out[1] if len(out) > 1 else None)


def validate_columns(ds: Any, data: DataConfig, where: str) -> None:
    """Every record has the column, of the right type (the login node's ``check`` may have read only the first few):
    a bad record is one line naming it, not a traceback from the tokenizer."""
    if len(ds) == 0:
        raise UserError(f"{where} has no records", field="data")
    key = "text_field" if data.format == "text" else "messages_field"
    name = getattr(data, key)
    if name not in ds.column_names:
        raise UserError(missing_field(where, data, ds.column_names), field=f"data.{key}")
    for i, value in enumerate(ds[name]):  # row by row: a big column is not copied into a list
        problem = value_problem(value, i + 1, data, ds.column_names)
        if problem:
            raise UserError(f"{where}: {problem}", field=f"data.{key}")


# --- fingerprint ---------------------------------------------------------------------------------------------------
def _file_identity(path: Optional[str]) -> Any:
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        return [(str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(p.rglob("*"))
                if f.is_file()]
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


split_seed = cachekey.split_seed  # the one owner of what the cache key holds: hpc_finetune/cachekey.py


def fingerprint(cfg: RunConfig, tokenizer: Any) -> str:
    """The cache folder's name: the config's part of the key (cachekey.config_key) with its paths replaced by what
    they hold (data files' identities, tokenizer files' hash), plus the layout and package versions and the loaded
    tokenizer's vocabulary and template."""
    tok_dir = Path(cfg.model.tokenizer_path or cfg.model.path)
    tok_files = sorted(f.name for f in tok_dir.glob("*token*")) if tok_dir.is_dir() else []
    tok_hash = hashlib.sha256()
    for name in tok_files:
        tok_hash.update((tok_dir / name).read_bytes())
    key = cachekey.config_key(cfg)
    key.update({"v": CACHE_FORMAT, "code": __version__,
                "train": _file_identity(cfg.data.train_file), "eval": _file_identity(cfg.data.eval_file),
                "tokenizer": tok_hash.hexdigest(), "vocab": len(tokenizer), "template": tokenizer.chat_template})
    return cachekey.digest(key)


# --- tokenize and pack ---------------------------------------------------------------------------------------------
def _chat_example(conv: list[dict], tokenizer: Any, data: DataConfig) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation; with completion_only_loss only assistant turns are learned."""
    text = tokenizer.apply_chat_template(conv, tokenize=False)
    enc = tokenizer(text, add_special_tokens=data.add_special_tokens, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if not data.completion_only_loss:
        return ids, list(ids)
    spans, prev = [], 0
    for i, m in enumerate(conv):  # char spans of assistant turns, from renderings of growing prefixes
        upto = len(tokenizer.apply_chat_template(conv[: i + 1], tokenize=False))
        if m["role"] == "assistant":
            spans.append((prev, upto))
        prev = upto
    labels = [tid if any(a <= start < b for a, b in spans) else -100
              for tid, (start, _end) in zip(ids, enc["offset_mapping"])]
    return ids, labels


def tokenize(ds: Any, tokenizer: Any, cfg: RunConfig) -> Any:
    from datasets import Dataset

    d, max_len, packed = cfg.data, cfg.training.max_length, packing.layout(cfg)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids_all, labels_all = [], []
    if d.format == "chat":
        for conv in list(ds[d.messages_field]):
            ids, labels = _chat_example(conv, tokenizer, d)
            ids_all.append(ids)
            labels_all.append(labels)
    else:
        enc = tokenizer(list(ds[d.text_field]), add_special_tokens=d.add_special_tokens)["input_ids"]
        for ids in enc:
            if packed != "wrapped" or d.append_concat_token:
                ids = ids + eos  # end each document so the model learns where text stops
            ids_all.append(ids)
            labels_all.append(list(ids))
    if packed:
        return packing.pack(ids_all, labels_all, max_len, packed)
    rows = {"input_ids": [i[:max_len] for i in ids_all], "labels": [lab[:max_len] for lab in labels_all]}
    return Dataset.from_dict(rows)


# --- the cached pipeline -------------------------------------------------------------------------------------------
def prepare(cfg: RunConfig, tokenizer: Any, *, wait_timeout: float = 4 * 3600) -> tuple[Any, Optional[Any], dict]:
    """(train, eval or None, info). info['cache'] is 'hit' or 'miss' (a miss means this process tokenized)."""
    from datasets import load_from_disk

    fp = fingerprint(cfg, tokenizer)
    folder = cache_root() / fp
    done = folder / "DONE"
    info = {"fingerprint": fp, "cache_dir": str(folder), "cache": "hit"}
    if not done.exists():
        if global_rank() == 0:
            info["cache"] = "miss"
            _build(cfg, tokenizer, folder)
        else:
            start = time.time()
            while not done.exists():  # the main process tokenizes; we wait on a file, not on a collective
                if time.time() - start > wait_timeout:
                    raise RuntimeError(f"waited {wait_timeout:.0f}s for the tokenized cache {folder}")
                time.sleep(1.0)
    train = load_from_disk(str(folder / "train"))
    eval_ds = load_from_disk(str(folder / "eval")) if (folder / "eval").exists() else None
    info.update(json.loads(done.read_text()))
    return train, eval_ds, info


def _build(cfg: RunConfig, tokenizer: Any, folder: Path) -> None:
    d = cfg.data
    if d.train_file:
        train_raw = load_raw(d.train_file, "train_file")
        eval_raw = load_raw(d.eval_file, "eval_file") if d.eval_file else None
    else:
        train_raw, eval_raw = load_named(d)
    validate_columns(train_raw, d, d.train_file or f"{d.dataset_name} (train)")
    if eval_raw is not None:
        validate_columns(eval_raw, d, d.eval_file or f"{d.dataset_name} (eval)")
    if d.max_samples:
        train_raw = train_raw.select(range(min(d.max_samples, len(train_raw))))
    if eval_raw is None and d.eval_fraction > 0:  # the only use of the seed here: see split_seed
        split = train_raw.train_test_split(test_size=d.eval_fraction, seed=cfg.training.seed)
        train_raw, eval_raw = split["train"], split["test"]
    started = time.time()
    train = tokenize(train_raw, tokenizer, cfg)
    eval_ds = tokenize(eval_raw, tokenizer, cfg) if eval_raw is not None else None
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    train.save_to_disk(str(tmp / "train"))
    if eval_ds is not None:
        eval_ds.save_to_disk(str(tmp / "eval"))
    n_tokens = sum(len(x) for x in list(train["input_ids"]))
    n_real = sum(sum(1 for t in lab if t != -100) for lab in list(train["labels"]))
    meta = {"train_rows": len(train), "eval_rows": len(eval_ds) if eval_ds is not None else 0,
            "train_tokens": n_tokens, "label_tokens": n_real, "tokenize_seconds": round(time.time() - started, 3),
            # padding if every batch were padded to max_length: an upper bound (a batch is padded to its longest
            # row); 0 for wrapped blocks, which are all full
            "pad_fraction": round(1 - n_tokens / max(1, len(train) * cfg.training.max_length), 4)
            if packing.layout(cfg) else None,
            "packing": packing.layout(cfg)}
    (tmp / "DONE").write_text(json.dumps(meta))
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another writer won the race with an identical result
        shutil.rmtree(tmp, ignore_errors=True)
