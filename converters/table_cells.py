"""`phi3v convert table`: a row's cells as texts, answers, meta values and images.

A cell that cannot be used raises `BadCell` (its `reason` is the row's skip reason);
`resolve_cell_path` finds the file an image cell names, never outside its root unless
allowed, and never fetches a URL.
"""

from __future__ import annotations

import datetime
import decimal
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from converters.images import ImageFailure
from phi3v_data.paths import PathProblem, resolve_image_path

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^data:", re.IGNORECASE)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")


class BadCell(ValueError):
    """A cell that cannot be used: `reason` is the skip reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def cell_text(value: Any, column: str, names: list[str] | None, reason: str) -> str:
    """A scalar cell as text (a ClassLabel index as its name); null gives ""."""
    if value is None:
        return ""
    if names is not None and isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return names[value]
        if value == -1:
            return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | decimal.Decimal):
        return str(value)
    raise BadCell(reason, f"column {column!r} holds a {type(value).__name__}, not text")


def cell_answers(value: Any, column: str) -> list[str] | None:
    """All gold answers: a list, or a JSON-list string; None when the cell is empty."""
    if is_empty(value):
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, list):
            raise BadCell(
                "bad_answers",
                f'column {column!r} must hold a list of answers or a JSON list such as ["a", "b"]',
            )
    if not isinstance(value, list | tuple):
        raise BadCell("bad_answers", f"column {column!r} holds a {type(value).__name__}")
    answers = []
    for answer in value:
        if answer is None or isinstance(answer, dict | list | bytes):
            raise BadCell("bad_answers", f"column {column!r}: {answer!r} is not an answer")
        answers.append(answer if isinstance(answer, str) else str(answer))
    return answers or None


def json_value(value: Any, column: str) -> Any:
    """A cell as JSON for `meta` (dates as ISO text, decimals as text)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(item, column) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item, column) for key, item in value.items()}
    raise BadCell("bad_meta", f"column {column!r} holds {type(value).__name__} data")


def image_refs(cell: Any, column: str) -> list[str | bytes | dict[str, Any]]:
    """A cell's images in order: paths, embedded bytes, or `{"bytes", "path"}` dicts."""
    if cell is None:
        return []
    if isinstance(cell, bytes | bytearray | memoryview):
        return [bytes(cell)] if len(cell) else []
    if isinstance(cell, str):
        text = cell.strip()
        if text.startswith("["):
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return image_refs(parsed, column)
        return [text] if text else []
    if isinstance(cell, dict):
        if cell.get("bytes") or (isinstance(cell.get("path"), str) and cell["path"].strip()):
            return [cell]
        return []
    if isinstance(cell, list | tuple):
        refs: list[str | bytes | dict[str, Any]] = []
        for item in cell:
            if isinstance(item, list | tuple):
                raise BadCell(
                    "bad_image_cell", f"column {column!r} holds a list of lists, not images"
                )
            refs.extend(image_refs(item, column))
        return refs
    raise BadCell(
        "bad_image_cell",
        f"column {column!r} holds a {type(cell).__name__}: expected a path, a list of paths "
        "or image bytes",
    )


def resolve_cell_path(text: str, roots: Sequence[str], allow_outside: bool) -> Path | ImageFailure:
    """The file an image cell's path names, or why it may not be read.

    Relative paths are looked up in each of `roots` in turn and must stay inside it
    (lexically and through symlinks); absolute paths and paths leading out of the root
    are refused unless `allow_outside`. URLs are never fetched.
    """
    if _URL.match(text):
        return ImageFailure(
            "image_url",
            f"{text[:200]!r} is a URL: phi3v never downloads; download the images and give "
            "their local paths",
        )
    posix = text.replace("\\", "/")
    if posix.startswith("/") or _WINDOWS_DRIVE.match(posix):
        if not allow_outside:
            return ImageFailure(
                "image_path_absolute",
                f"{text!r} is an absolute path: give paths relative to the table's folder "
                "(or to --image-dir), or pass --allow-absolute-paths",
            )
        return Path(text)
    normal = posixpath.normpath(posix)
    if normal == ".." or normal.startswith("../"):
        if not allow_outside:
            return ImageFailure(
                "image_path_escapes",
                f"{text!r} leads outside {roots[0]} (pass --allow-absolute-paths to allow it)",
            )
        found = [Path(root, normal) for root in roots]
        return next((path for path in found if path.is_file()), found[0])
    escaped: PathProblem | None = None
    for root in roots:
        if allow_outside:
            candidate = Path(root, normal)
        else:
            resolved = resolve_image_path(Path(root), normal)
            if isinstance(resolved, PathProblem):
                if resolved.code == "path_escapes_root":
                    escaped = resolved
                continue
            candidate = resolved
        if candidate.is_file():
            return candidate
    if escaped is not None:
        return ImageFailure(
            "image_path_escapes",
            f"{text!r} is a symlink leading outside {roots[0]} (pass --allow-absolute-paths "
            "to allow it)",
        )
    return Path(roots[0], normal)
