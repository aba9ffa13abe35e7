"""Files and records in another format: one clear problem instead of a flood.

Both checks run only on the slow path, after a line or record has already failed: a whole
file that is one JSON array (`json_array`, one problem for the file) and records in another
dataset's format such as LLaVA or ShareGPT (`foreign_format`, naming the converter).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from phi3v_data.jsonl import DEFAULT_MAX_LINE_BYTES

# A file that starts like a JSON array is parsed whole up to this size (to count its
# records and confirm the shape); a larger one is judged by its first two lines.
_ARRAY_PARSE_BYTES = 64 * 1024 * 1024


def foreign_format(value: Any) -> tuple[str, str] | None:
    """(converter name, description) when `value` is a record of another known format.

    LLaVA: `conversations` of `{"from", "value"}` turns (with `image`/`images` or none).
    ShareGPT / OpenAI messages: `messages` (or `conversations`) of `{"role", "content"}`
    turns, optional `images`. Meant for records that already failed the schema.
    """
    if not isinstance(value, dict):
        return None
    for key in ("conversations", "messages"):
        turns = value.get(key)
        if not isinstance(turns, list) or not turns:
            continue
        if not all(isinstance(turn, dict) for turn in turns):
            continue
        if key == "conversations" and all("from" in t and "value" in t for t in turns):
            images = [k for k in ("image", "images") if k in value]
            with_images = f" and {images[0]!r}" if images else ""
            return "llava", f"LLaVA ('conversations' of from/value turns{with_images})"
        if all("role" in t and "content" in t for t in turns):
            return "sharegpt", f"ShareGPT / OpenAI messages ({key!r} of role/content turns)"
    return None


def json_array_message(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str | None:
    """What to tell about `path` if it holds one JSON array instead of JSONL, else None.

    An array file: its first line with content starts with '[' and either is a whole
    array with nothing after it (a one-line array), or is not JSON on its own and the
    whole file parses as an array (files up to `_ARRAY_PARSE_BYTES`; larger ones are not
    loaded), or it opens a pretty-printed array of objects: '[' or '[{' on the first line
    and '{' (or ',') starting the second. A JSONL file whose lines are arrays is not one.
    """
    try:
        with path.open("rb") as stream:
            lines = _content_lines(stream, max_line_bytes)
            first, first_complete = next(lines, (b"", True))
            if not first.startswith(b"["):
                return None
            second = next(lines, (None, True))[0]
    except OSError:
        return None
    value: Any = _NOT_JSON
    if first_complete:
        value = _loads(first)
    if value is not _NOT_JSON:  # a whole JSON value on the first line
        if not isinstance(value, list) or second is not None:
            return None
        return _array_message(path, value, None)
    error = None
    size = file_size(path)
    if size is not None and size <= _ARRAY_PARSE_BYTES:
        try:
            data = path.read_bytes()
            whole = orjson.loads(data[3:] if data.startswith(b"\xef\xbb\xbf") else data)
        except orjson.JSONDecodeError as exc:
            error = exc
        except OSError:
            return None
        else:
            return _array_message(path, whole, None) if isinstance(whole, list) else None
    opens_objects = first[1:].lstrip()[:1] in (b"", b"{")
    if opens_objects and second is not None and second[:1] in (b"{", b","):
        return _array_message(path, None, error)
    return None


_NOT_JSON = object()


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _content_lines(stream: Any, max_line_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """(stripped bytes, complete) of each non-blank line; an overlong line is cut short."""
    first = True
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        if first and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        first = False
        complete = len(line) <= max_line_bytes or line.endswith(b"\n")
        if not complete:
            while True:  # skip the rest of the overlong line
                rest = stream.readline(1024 * 1024)
                if not rest or rest.endswith(b"\n"):
                    break
        stripped = line.strip()
        if stripped:
            yield stripped, complete


def _array_message(path: Path, value: list[Any] | None, error: Exception | None) -> str:
    if value is not None:
        noun = "record" if len(value) == 1 else "records"
        what = f"the file is one JSON array of {len(value):,} {noun}"
    elif isinstance(error, orjson.JSONDecodeError):
        what = (
            "the file starts like a JSON array (and is not valid JSON either: "
            f"{error.msg} at line {error.lineno}, column {error.colno})"
        )
    else:
        what = "the file starts like a JSON array"
    out = path.with_name(path.stem + ("-lines.jsonl" if path.suffix == ".jsonl" else ".jsonl"))
    message = (
        f"{what}, not JSONL: JSONL needs one JSON object per line. Rewrite it:"
        f" jq -c '.[]' {shlex.quote(str(path))} > {shlex.quote(str(out))}"
    )
    foreign = foreign_format(value[0]) if value else None
    if foreign is not None:
        converter, looks_like = foreign
        message += (
            f". Its records look like {looks_like}: then convert the result with"
            f" phi3v convert {converter} {shlex.quote(str(out))} -o OUT"
        )
    return message


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
