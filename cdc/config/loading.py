"""Loading a configuration: YAML with line numbers, sections saved elsewhere resolved,
validation, and pydantic's errors turned into :class:`~cdc.config.problems.Problem`\\ s that
name the file, the line and the key path."""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from cdc.config.checks import is_secret_key
from cdc.config.document import Config
from cdc.config.problems import ConfigError, Loc, Problem, dotted, line_of
from cdc.config.reader import Reader
from cdc.config.references import SectionLoader, installed_section_loader, resolve_references

# --------------------------------------------------------------------------------------------
# pydantic errors -> problems


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, Union, Annotated, list)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_types(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _model_types(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _item_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _item_type(typing.get_args(annotation)[0])
    if origin is list:
        return typing.get_args(annotation)[0]
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if not f.exclude]


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field.annotation
    return None


def _pick_model(candidates: list[type[BaseModel]], data: Any) -> type[BaseModel] | None:
    if len(candidates) == 1:
        return candidates[0]
    if isinstance(data, dict):
        for model in candidates:
            tag = model.model_fields.get("type")
            if tag is not None and data.get("type") in typing.get_args(tag.annotation):
                return model
    return None


def _allowed_keys(loc: Loc, data: Any) -> list[str]:
    """Keys the model at ``loc`` accepts (for "did you mean" suggestions)."""
    annotation: Any = Config
    node = data
    for part in loc:
        if isinstance(part, int):
            annotation = _item_type(annotation)
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        model = _pick_model(_model_types(annotation), node)
        if model is None:
            return []
        annotation = _field(model, part)
        node = node.get(part) if isinstance(node, dict) else None
    model = _pick_model(_model_types(annotation), node)
    return _keys(model) if model is not None else []


def _data_loc(loc: tuple[str | int, ...], data: Any) -> Loc:
    """Drop the parts pydantic adds that are not in the file (union tags)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if node.get("type") == part:  # discriminated union tag
                continue
            out.append(part)
            node = None
            continue
        if isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if part < len(node) else None
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return tuple(out)


def _shown(value: Any) -> str | None:
    if isinstance(value, bool | int | float | str) or value is None:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return None


def _message(error: Any, loc: Loc, data: Any, written: Mapping[Loc, str]) -> tuple[Loc, str]:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(key, _allowed_keys(loc[:-1], data), n=1, cutoff=0.6)
        return loc, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "union_tag_not_found":
        return (*loc, "type"), "required key is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return (
            *loc,
            "type",
        ), f"Input should be {ctx.get('expected_tags')} (got {ctx.get('tag')!r})"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    secret = any(isinstance(part, str) and is_secret_key(part) for part in loc)
    shown = None if secret else _shown(error.get("input"))
    if shown is not None and loc in written:  # never echo a value read from the environment
        message += f" (from {written[loc]!r})"
        return loc, message
    if shown is not None and kind not in ("duplicate_table", "duplicate_target"):
        message += f" (got {shown})"
    return loc, message


def _problems(exc: ValidationError, data: Any, reader: Reader) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc, message = _message(error, _data_loc(error["loc"], data), data, reader.written)
        first = (error.get("ctx") or {}).get("first")
        if error["type"] in ("duplicate_table", "duplicate_target") and isinstance(first, int):
            line = line_of(("tables", first), reader.lines)
            message = message.replace(f"tables[{first}]", f"tables[{first}] at line {line}")
        problems.append(Problem(reader.file, line_of(loc, reader.lines), dotted(loc), message))
    return problems


# --------------------------------------------------------------------------------------------
# Entry points


def parse_config(
    text: str,
    *,
    file: str = "cdc.yaml",
    config_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    load_section: SectionLoader | None = None,
) -> Config:
    """Validate configuration text; ``file`` names it in errors, ``config_dir`` anchors paths.

    ``load_section`` resolves sections written as ``{block: ...}``; default: the installed
    loader (:func:`cdc.config.use_section_loader`)."""
    reader = Reader(text, file, os.environ if env is None else env)
    data = reader.read()
    problems = list(reader.problems)
    if data is None and not problems:
        raise ConfigError([Problem(file, 1, "", "the file is empty")])
    if data is not None and not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "", "the file must hold a mapping of sections")])
    if data is None:
        raise ConfigError(problems)
    directory = Path(config_dir) if config_dir is not None else Path.cwd()
    loader = load_section if load_section is not None else installed_section_loader()
    unresolved = resolve_references(data, file, reader.lines, loader)
    if unresolved:
        raise ConfigError(problems + unresolved)
    try:
        config = Config.model_validate(data, context={"config_dir": directory})
    except ValidationError as exc:
        problems.extend(_problems(exc, data, reader))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    config._config_dir = directory
    config._file = file
    config._lines = dict(reader.lines)
    return config


def load_config(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    load_section: SectionLoader | None = None,
) -> Config:
    """Read and validate a ``cdc.yaml`` file; ``env`` defaults to ``os.environ``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(str(path), 1, "", "file not found (print an example: cdc config example)")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), 1, "", f"cannot read the file: {exc}")]) from None
    return parse_config(
        text,
        file=str(path),
        config_dir=file.resolve().parent,
        env=env,
        load_section=load_section,
    )


def dump_example_config() -> str:
    """A commented example ``cdc.yaml`` (printed by ``cdc config example``); it validates as is."""
    return resources.files("cdc.config").joinpath("example.yaml").read_text(encoding="utf-8")
