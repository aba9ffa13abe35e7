"""Streaming JSONL reading with line numbers, and atomic file writing.

The reader never loads a whole file, never raises on bad content, and reports each
line's problem (bad UTF-8, bad JSON, a line over the size limit) with its 1-based line
number so that callers can name `file:line` in their messages.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

# A record with a few turns is a few kB; anything this large is a broken file.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished files get the usual permissions instead.
FILE_MODE = 0o666 & ~_current_umask()


@dataclass(slots=True)
class JsonlLine:
    """One line of a JSONL file: either a parsed `value` or an `error` (code, message)."""

    path: Path
    lineno: int
    value: Any = None
    error: tuple[str, str] | None = None
    blank: bool = False
    size: int = 0


def raw_lines(
    stream: IO[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[bytes | None]:
    """Every line of `stream` without its newline; None for a line over the limit."""
    for raw, _ in _raw_lines(stream, max_line_bytes):
        yield raw


def _raw_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[tuple[bytes | None, int]]:
    """Yield (line bytes without newline, size); None for a line over the limit."""
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            size = len(line)
            while True:  # skip the rest of the oversized line without keeping it
                rest = stream.readline(_CHUNK)
                size += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None, size
            continue
        yield line.rstrip(b"\r\n"), len(line)


def iter_jsonl(
    path: str | Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[JsonlLine]:
    """Yield every line of `path`, parsed, with problems reported instead of raised."""
    path = Path(path)
    with path.open("rb") as stream:
        for lineno, (raw, size) in enumerate(_raw_lines(stream, max_line_bytes), start=1):
            if raw is None:
                message = f"line is {size} bytes, over the {max_line_bytes}-byte limit"
                yield JsonlLine(path, lineno, error=("line_too_long", message), size=size)
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                yield JsonlLine(path, lineno, blank=True, size=size)
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield JsonlLine(path, lineno, error=_decode_error(raw, exc), size=size)
                continue
            yield JsonlLine(path, lineno, value=value, size=size)


def _decode_error(raw: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str]:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return "bad_utf8", f"invalid UTF-8 at byte {bad.start}: {raw[bad.start : bad.start + 4]!r}"
    return "bad_json", f"invalid JSON: {exc.msg} at column {exc.colno}"


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank, parseable line; skip the rest.

    For readers of already-validated data (the trainer, the report's sampler). Use
    `iter_jsonl` when problems must be reported.
    """
    for line in iter_jsonl(path):
        if line.error is None and not line.blank:
            yield line.lineno, line.value


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", fsync: bool = True) -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`, then rename it over `path`.

    A crash at any moment leaves either the old file or the complete new one under the
    final name, never a half-written one; the temporary file is removed on error.
    `fsync=False` skips the flush to disk (still atomic for a killed process; for bulk
    files such as video frames, where an fsync per file would dominate the cost).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as stream:
            yield stream
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    with atomic_write(path, "wb", fsync=fsync) as stream:
        stream.write(data)


def is_temporary_name(name: str) -> bool:
    """True for files left by an interrupted `atomic_write` (safe to delete on resume)."""
    return name.startswith(".") and name.endswith(".tmp")
