"""The streaming run: every line of every file, then the duplicate ids.

A line takes the fast path when the typed decoder (`shape.py`) accepts it: a schema-valid
record in one step. Any other line takes the slow path, which reads it as
`phi3v_data.jsonl.iter_jsonl` does (blank, bad UTF-8, bad JSON, too long, a value) and
decides with the compiled schema; `jsonschema` explains a record that fails. Valid records
go through the rules (`rules.py`), then to the image checks and the token budget
(`images.py`). Memory stays flat in the number of records but for the duplicate-id index
(`ids.py`, 16 bytes per record).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import fastjsonschema
import orjson

# `_decode_error`: the same message for a bad line as `iter_jsonl` gives.
from phi3v_data.jsonl import _decode_error
from phi3v_data.schema import fast_validator, schema_errors
from phi3v_data.validate.formats import file_size, foreign_format, json_array_message
from phi3v_data.validate.ids import IdIndex
from phi3v_data.validate.images import ImageChecks
from phi3v_data.validate.inputs import discover
from phi3v_data.validate.options import ValidateOptions
from phi3v_data.validate.report import (
    MAX_DISTINCT,
    DatasetStats,
    InputFile,
    Problem,
    ValidationReport,
    make_problem,
)
from phi3v_data.validate.rules import RuleContext, check_record
from phi3v_data.validate.shape import FAST_PATH_ERRORS, decoder, shape_from_value

_STOP = object()  # the slow path's answer when the file is one JSON array: read no further
_SKIP_CHUNK = 1024 * 1024  # the rest of an overlong line is skipped in pieces this large


def validate_paths(
    paths: Sequence[str | Path], options: ValidateOptions, ids_per_folder: bool = False
) -> ValidationReport:
    """Validate JSONL files and converted directories together; never raises on bad data.

    `ids_per_folder`: the files are several data sets (train -d A -d B), one per folder: an
    id need only be unique among the files of its folder.

    Raises FileNotFoundError / ValueError only for usage errors (a missing path, a
    directory without JSONL files).
    """
    inputs, problems, expected_counts = discover(paths, options.image_root)
    run = _Run(inputs, options, problems, ids_per_folder)
    run.validate()
    for file, expected in expected_counts.items():
        found = run.stats.records_per_file.get(file)
        if found is not None and found != expected:
            run.add(
                "manifest_mismatch",
                file,
                None,
                None,
                None,
                f"manifest says {expected} records, the file has {found}",
            )
    return run.report()


class _FileState:
    """One file's counts: the slow path's as it goes, the fast path's when the file ends."""

    __slots__ = (
        "content_lines",
        "fast_records",
        "file",
        "first_problem",
        "index",
        "item",
        "records",
        "valid_records",
    )

    def __init__(self, index: int, item: InputFile, first_problem: int):
        self.index = index
        self.item = item
        self.file = str(item.path)
        self.first_problem = first_problem  # problems from here on belong to this file
        self.records = 0  # lines holding a JSON value
        self.valid_records = 0  # records that match the schema after all
        self.content_lines = 0  # lines that are not blank
        self.fast_records = 0  # records of the fast path (counted in the hot loop)


class _Run:
    """The state of one validation: problems, stats, duplicate-id index, image checks."""

    def __init__(
        self,
        inputs: list[InputFile],
        options: ValidateOptions,
        problems: list[Problem],
        ids_per_folder: bool = False,
    ):
        self.inputs = inputs
        self.ids_per_folder = ids_per_folder
        self.options = options
        self.problems = problems
        self.stats = DatasetStats(files=len(inputs), num_crops=options.num_crops)
        self.stats.tokens_exact = options.tokenizer is not None
        self.ids = IdIndex()  # duplicate ids: 16 bytes per record
        self.images = ImageChecks(options, self.stats, self.add) if options.check_images else None

    def add(
        self,
        code: str,
        file: str,
        line: int | None,
        record_id: str | None,
        field_path: str | None,
        message: str,
    ) -> None:
        self.problems.append(make_problem(code, file, line, record_id, field_path, message))

    def report(self) -> ValidationReport:
        order = {str(i.path): n for n, i in enumerate(self.inputs)}
        self.problems.sort(key=lambda p: (order.get(p.file, -1), p.line or 0))
        return ValidationReport(self.inputs, self.options, self.problems, self.stats)

    def validate(self) -> None:
        progress = _progress() if self.options.show_progress else None
        try:
            for index, item in enumerate(self.inputs):
                self._validate_file(index, item, progress)
            if self.images is not None:
                self.images.finish()
        finally:
            if self.images is not None:
                self.images.close()
            if progress is not None:
                progress.stop()
        stats = self.stats  # image references: counted per record, summed here
        stats.images = sum(n * records for n, records in stats.images_per_record.items())
        self.ids.report(self.inputs, self.options.max_line_bytes, self.add, self.ids_per_folder)

    def _validate_file(self, index: int, item: InputFile, progress: Any) -> None:
        state = _FileState(index, item, len(self.problems))
        file = state.file
        task = progress.add_task(item.path.name, total=file_size(item.path)) if progress else None
        try:
            with item.path.open("rb") as stream:
                self._read(stream, state, progress, task)
        except OSError as exc:
            message = f"cannot read the file: {exc.strerror or exc}"
            self.add("file_unreadable", file, None, None, None, message)
            state.content_lines = -1
        records = state.fast_records + state.records
        self.stats.records += records
        self.stats.records_per_file[file] = records
        if state.fast_records + state.content_lines == 0:
            self.add("file_empty", file, None, None, None, "the file holds no records")

    def _read(self, stream: IO[bytes], state: _FileState, progress: Any, task: Any) -> None:
        """Every line of one file (the hot loop)."""
        options = self.options
        file = state.file
        context = RuleContext(
            options.allow_empty_assistant or state.item.inference_only,
            options.max_images_per_record,
        )
        real_root = os.path.realpath(state.item.image_root)
        decode = decoder().decode
        images = self.images
        stats = self.stats
        per_source = stats.records_per_source
        image_counts: dict[int, int] = {}  # records per number of images, in this file
        add_hash, add_place = self.ids.hashes.append, self.ids.places.append
        place = state.index << 32
        add = self.add
        readline = stream.readline
        limit = options.max_line_bytes + 1
        lineno = fast = turns = done_bytes = same_count = 0
        same_source = None  # the source of the last records, counted in `same_count`
        try:
            while True:
                line = readline(limit)
                if not line:
                    break
                lineno += 1
                if progress is not None:
                    done_bytes += len(line)
                    if lineno % 4096 == 0:
                        progress.update(task, completed=done_bytes)
                try:  # a line of `limit` bytes without a newline is over the limit
                    record = decode(line) if len(line) < limit or line[-1] == 10 else None
                except FAST_PATH_ERRORS:
                    record = None
                if record is None:
                    first = not fast and not state.content_lines
                    size = len(line)
                    if size == limit and line[-1] != 10:
                        size += _skip_line(stream)
                        done_bytes += size - len(line)
                        line = None
                    record = self._slow_line(state, line, lineno, size, first)
                    if record is None:
                        continue
                    if record is _STOP:
                        break
                else:
                    fast += 1
                record_id = record.id
                add_hash(hash(record_id))
                add_place(place | lineno)
                source = record.source
                if source == same_source:  # a file is mostly one source: count it in one go
                    same_count += 1
                else:
                    if same_count:
                        per_source[same_source] += same_count
                    same_source, same_count = None, 0
                    if source in per_source or len(per_source) < MAX_DISTINCT:
                        per_source[source] += 1
                        same_source = source
                turns += len(record.conversations)
                findings, count = check_record(record, context)
                try:  # (a plain dict: a Counter's += is twice as slow)
                    image_counts[count] += 1
                except KeyError:
                    image_counts[count] = 1
                if findings is not None:
                    for code, field_path, message in findings:
                        add(code, file, lineno, record_id, field_path, message)
                if images is not None:
                    images.add_record(file, lineno, record, real_root, findings)
        finally:
            if same_count:
                per_source[same_source] += same_count
            state.fast_records = fast
            stats.images_per_record.update(image_counts)  # (the image total: summed at the end)
            stats.valid_records += fast + state.valid_records
            stats.turns += turns
            if progress is not None:
                progress.update(task, completed=done_bytes)

    def _slow_line(
        self, state: _FileState, line: bytes | None, lineno: int, size: int, first: bool
    ) -> Any:
        """A line the fast path refused, read as `iter_jsonl` reads it: the record's shape
        when it is a valid record after all, `_STOP` for a JSON-array file, else None (its
        problems reported). `line` None: the line is over the size limit."""
        file = state.file
        max_line_bytes = self.options.max_line_bytes
        error = None
        if line is None:
            message = f"line is {size} bytes, over the {max_line_bytes}-byte limit"
            error = ("line_too_long", message)
        else:
            raw = line.rstrip(b"\r\n")
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                self.add("blank_line", file, lineno, None, None, "blank line")
                return None
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                error = _decode_error(raw, exc)
        state.content_lines += 1
        if error is not None:
            if first and self._json_array(state):
                return _STOP
            self.add(error[0], file, lineno, None, None, error[1])
            return None
        state.records += 1
        try:
            fast_validator()(value)
        except fastjsonschema.JsonSchemaException:
            if first and isinstance(value, list) and self._json_array(state):
                return _STOP
            self._schema_problems(state, lineno, value)
            return None
        state.valid_records += 1
        return shape_from_value(value)

    def _json_array(self, state: _FileState) -> bool:
        """Report a file that is one JSON array as one problem; False if it is not one.

        Called only when the first line with content failed (not JSON on its own, too
        long, or an array), so valid files never pay for it. Problems already reported for
        the file (blank lines before the '[') are dropped: the file is not JSONL at all.
        """
        path = state.item.path
        message = json_array_message(path, self.options.max_line_bytes)
        if message is None:
            return False
        del self.problems[state.first_problem :]
        self.add("json_array", str(path), None, None, None, message)
        return True

    def _schema_problems(self, state: _FileState, lineno: int, value: Any) -> None:
        file = state.file
        record_id = value.get("id") if isinstance(value, dict) else None
        if not isinstance(record_id, str) or not record_id:
            record_id = None
        else:
            self.ids.add(record_id, state.index, lineno)
        foreign = foreign_format(value)
        if foreign is not None:
            # One clear problem instead of a schema error for every key of every turn.
            converter, looks_like = foreign
            self.add(
                "foreign_format",
                file,
                lineno,
                record_id,
                None,
                f"record looks like {looks_like}, not a phi3v record; convert the file:"
                f" phi3v convert {converter} {shlex.quote(file)} -o OUT",
            )
            return
        for field_path, message in schema_errors(value):
            self.add("schema", file, lineno, record_id, field_path, message)


def _skip_line(stream: IO[bytes]) -> int:
    """Read past the rest of an overlong line without keeping it; returns its size."""
    size = 0
    while True:
        rest = stream.readline(_SKIP_CHUNK)
        size += len(rest)
        if not rest or rest.endswith(b"\n"):
            return size


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("validating {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    progress.start()
    return progress
