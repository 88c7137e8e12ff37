"""Typed YAML configs: dataclasses with one line of help per field, strict loading, ``--set`` overrides.

Reading is bounded (``read_yaml``: a size limit, no aliases, no duplicate keys), so a hostile file costs neither
memory nor time. Loading rejects unknown keys (listing the valid ones), wrong types, values outside ``choices``,
numbers that are not finite, and passes every string through ``values.check_string`` (no control characters: a
newline in a value could otherwise start a new line of a job script; no secrets). Each dataclass may define
``validate(self, source, prefix)`` for cross-field checks; it runs right after the fields are converted.

Values from command-line flags and ``--set`` enter the same raw mapping as the file's before conversion
(``apply_overrides``), so they pass the same checks; ``load`` names the flag, not the file, when one is wrong.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from hpc_finetune.errors import UserError, shorten
from hpc_finetune.values import check_free_form, check_string

MISSING_REQUIRED = "__required__"


def opt(default: Any, help: str, **meta: Any) -> Any:
    """A field with a default and one line of help."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **meta})
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata={"help": help, **meta})
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def required(help: str, **meta: Any) -> Any:
    """A field the user must give (stored as a sentinel until loading checks it)."""
    return dataclasses.field(default=MISSING_REQUIRED, metadata={"help": help, "required": True, **meta})


# --- YAML without YAML 1.1 surprises -----------------------------------------------------------------------------
MAX_YAML_BYTES = 1 << 20  # a run config or profile is a few KB; 1 MiB is generous and cheap to parse


class _Loader(yaml.SafeLoader):
    """SafeLoader minus sexagesimal integers (``time: 1:30:00`` stays the string '1:30:00', not 5400), minus
    aliases (``*name``: a 1 KB "billion laughs" file expands to gigabytes), minus duplicate keys (the last one
    silently winning hides a mistake)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, f"aliases (*{event.anchor}) are not allowed; write the value out",
                                       event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise yaml.MarkedYAMLError(None, None, "merge keys (<<) are not allowed; write the keys out",
                                               key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.MarkedYAMLError(None, None, "a key must be a plain value", key_node.start_mark) \
                        from None
                if key in seen:
                    raise yaml.MarkedYAMLError(None, None, f"duplicate key {shorten(str(key))!r}",
                                               key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_INT_RE = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)\Z")
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))


def parse_yaml_text(text: str, source: str) -> Any:
    if len(text) > MAX_YAML_BYTES:
        raise UserError(f"larger than {MAX_YAML_BYTES // 1024} KiB", source=source)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except RecursionError:
        raise UserError("nested too deeply", source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"malformed YAML: {where}{problem}", source=source) from None


def read_text_bounded(path: Path, limit: int = MAX_YAML_BYTES) -> str:
    """A small text file's content, reading at most ``limit`` bytes (``/dev/zero`` or a huge file is an error)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except FileNotFoundError:
        raise UserError("file not found", source=str(path)) from None
    except IsADirectoryError:
        raise UserError("is a folder, not a file", source=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    if len(raw) > limit:
        raise UserError(f"larger than {limit // 1024} KiB: not a config file", source=str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from None


def read_yaml(path: Path) -> dict:
    """A YAML mapping from ``path``: bounded in size, no aliases, no duplicate keys (see ``_Loader``)."""
    text = read_text_bounded(path)
    data = parse_yaml_text(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping of keys to values at the top, got {_kind(data)}", source=str(path))
    return data


# --- conversion ----------------------------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " | null" * (
            type(None) in get_args(tp))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(tp: Any, value: Any, source: str, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        same_shape = [o for o in options if o is type(value) or get_origin(o) is type(value)]
        if len(same_shape) == 1:  # a string for `str | list[str]`: that option's own error says what is wrong
            return _convert(same_shape[0], value, source, where)
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, source, where)
            except UserError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise UserError(f"expected {_type_name(tp)}, got {_got(value)}", source=source, field=where)
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise UserError(f"{_got(value, kind=False)} is not allowed; choose one of: "
                        f"{', '.join(repr(a) for a in allowed)}", source=source, field=where)
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"expected {_type_name(tp)}, got {_kind(value)}", source=source, field=where)
        return [_convert(get_args(tp)[0], v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"expected {_type_name(tp)}, got {_kind(value)}", source=source, field=where)
        key_tp, val_tp = get_args(tp)
        if val_tp is Any:  # free-form (training.extra_args): every key and value, at every level, in one walk
            check_free_form(value, source=source, field=where)
            return {str(k): v for k, v in value.items()}
        return {_convert(key_tp, k, source, f"{where}.{k}"): _convert(val_tp, v, source, f"{where}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source=source, prefix=where)
    if tp is Any:
        return check_free_form(value, source=source, field=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            number = float(value)  # PyYAML reads 1e-4 (no dot) as a string
        if number is not None:
            if not math.isfinite(number):
                raise UserError(f"expected a finite number, got {value!r}", source=source, field=where)
            return number
    elif tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            return check_string(value, source=source, field=where)
        if isinstance(value, bool):
            raise UserError(f"expected a string, got the boolean {value!r}: YAML reads unquoted yes/no/on/off/"
                            "true/false as booleans; put the value in quotes (e.g. 'no')", source=source, field=where)
    raise UserError(f"expected {_type_name(tp)}, got {_got(value)}", source=source, field=where)


def _got(value: Any, kind: bool = True) -> str:
    """What was given, for an error line: its kind and its (shortened) value."""
    text = shorten(repr(value))
    return f"{_kind(value)} {text}" if kind else text


def from_dict(cls: type, data: Any, *, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every key and value; then run ``validate``."""
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping, got {_kind(data)}", source=source, field=prefix or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = shorten(str(unknown[0]), 60)
        valid = ", ".join(fields)
        raise UserError(f"unknown key {key!r}; valid keys here: {valid}", source=source,
                        field=f"{prefix}.{key}" if prefix else key)
    kwargs = {}
    for name, f in fields.items():
        where = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], source, where)
            choices = f.metadata.get("choices")
            if choices is not None and kwargs[name] not in choices:
                raise UserError(f"{shorten(repr(kwargs[name]))} is not allowed; choose one of: {', '.join(map(repr, choices))}",
                                source=source, field=where)
        elif f.metadata.get("required"):
            raise UserError(f"required field is missing ({f.metadata['help']})", source=source, field=where)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(source, prefix)
    return obj


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def set_key(data: dict, key: str, value: Any, *, source: str) -> None:
    """Set ``key.sub`` in a raw config mapping (creating sections), as the file would have."""
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"malformed key {shorten(key, 60)!r}", source=source)
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"{'.'.join(parts[:i + 1])} is not a section", source=source, field=key)
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str], source: str = "--set",
                    origins: dict[str, str] | None = None) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML scalars) to a raw config mapping; ``origins``
    (if given) records which key came from where, for ``load``'s error lines."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"expected KEY=VALUE, got {shorten(item, 60)!r}", source=source)
        key, raw = item.split("=", 1)
        key = key.strip()
        value = parse_yaml_text(raw, f"{source} {shorten(key, 60)}") if raw.strip() else ""
        set_key(data, key, value, source=source)
        if origins is not None:
            origins[key] = source
    return data


def load(cls: type, data: Any, *, source: str, origins: dict[str, str] | None = None) -> Any:
    """``from_dict``, with errors about a value that came from a flag or ``--set`` naming that, not the file."""
    try:
        return from_dict(cls, data, source=source)
    except UserError as exc:
        for err in getattr(exc, "errors", [exc]):
            relabel(err, source, origins or {})
        raise


def relabel(err: UserError, file_source: str, origins: dict[str, str]) -> UserError:
    """Point ``err`` at the flag or ``--set`` that gave its field's value (the longest key that covers it)."""
    if not err.field or err.source != file_source:
        return err
    field = err.field.split(" ")[0]
    best = ""
    for key in origins:
        if (field == key or field.startswith((key + ".", key + "["))) and len(key) > len(best):
            best = key
    if best:
        err.source = origins[best]
    return err


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) for every field, nested sections flattened: for ``hpc-finetune schema``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.append((key, "section", "", f.metadata.get("help", "")))
            rows.extend(describe(tp, key + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        if default == MISSING_REQUIRED:
            default = "(required)"
        rows.append((key, _type_name(tp), default, f.metadata.get("help", "")))
    return rows
