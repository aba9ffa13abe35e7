"""Load the record JSON Schema and build validators from it.

`schemas/conversation.schema.json` defines the format. The hot loop of `phi3v validate`
uses a `fastjsonschema` validator compiled from that same file (about 15x faster than
`jsonschema`); `jsonschema` then explains a failing record with every error and its path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

_HERE = Path(__file__).resolve().parent


def _schema_path() -> Path:
    """The copy a built package carries (setup.py puts it there), else the source file.

    `schemas/conversation.schema.json` at the repository root is the one source: a wheel
    or `pip install .` ships a byte-equal copy inside `phi3v_data`; an editable install
    or a plain checkout has no copy and reads the source.
    """
    packaged = _HERE / "conversation.schema.json"
    if packaged.is_file():
        return packaged
    return _HERE.parent / "schemas" / "conversation.schema.json"


SCHEMA_PATH = _schema_path()


@functools.cache
def load_schema() -> dict[str, Any]:
    return orjson.loads(SCHEMA_PATH.read_bytes())


@functools.cache
def fast_validator() -> Callable[[Any], Any]:
    """A compiled validator: raises `fastjsonschema.JsonSchemaException` on the first error."""
    import fastjsonschema

    return fastjsonschema.compile(load_schema())


@functools.cache
def _full_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema())


def is_valid(value: Any) -> bool:
    import fastjsonschema

    try:
        fast_validator()(value)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def schema_errors(value: Any) -> list[tuple[str, str]]:
    """Every schema error as (field path such as `conversations[0].user`, message)."""
    errors = []
    for error in sorted(_full_validator().iter_errors(value), key=lambda e: list(e.path)):
        errors.append((format_field_path(error.absolute_path), error.message))
    return errors


def format_field_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(record)"
