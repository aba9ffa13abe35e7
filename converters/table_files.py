"""`phi3v convert table`: reading the table formats into rows.

CSV/TSV (a header row, UTF-8), JSONL, JSON (an array of objects, or JSON lines), parquet
files, and Hugging Face copies (a `save_to_disk` folder or a folder of `*.parquet` files,
read as `converters.hf` reads them). Each input gives one or more `Table`s, whose rows are
`RawRow`s: a row's values, or what is wrong with it (`bad_row`, `bad_line`).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from converters.converter import ConversionError
from converters.hf import HFSplit, RowRef, find_hf_copy, iter_rows
from converters.table_columns import TableOptions
from phi3v_data.jsonl import iter_jsonl

# File names that name a split (`test.csv`); also the order of a Hugging Face copy's splits.
NAMED_SPLITS = ("train", "val", "validation", "valid", "dev", "test", "eval")
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TABLE_SUFFIXES = (*CSV_SUFFIXES, *JSONL_SUFFIXES, ".json", ".parquet")
_SHARD_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")


@dataclass(frozen=True)
class RawRow:
    """One row as read: where it is, and its values or what is wrong with it."""

    where: str
    values: dict[str, Any] | None = None
    ref: RowRef | None = None  # parquet/Arrow: where to read the image cells later
    error: tuple[str, str] | None = None  # (reason, detail)


@dataclass(frozen=True)
class Table:
    """One readable table: a file, or one split of a Hugging Face copy."""

    name: str  # as rows and skips name it
    split: str  # the split its rows go to unless --split/--split-column say otherwise
    columns: tuple[str, ...]
    roots: tuple[str, ...]  # folders that relative image paths are resolved in
    rows: Callable[[], Iterator[RawRow]]
    class_names: dict[str, list[str]]


def _file_split(path: Path) -> str:
    stem = _SHARD_SUFFIX.sub("", path.name.split(".")[0]).lower()
    return stem if stem in NAMED_SPLITS else "train"


def file_names(files: list[Path]) -> dict[Path, str]:
    """How each input file is named in rows and skips: its name, or more where names repeat."""
    names = {path: path.name for path in files}
    if len(set(names.values())) == len(names):
        return names
    common = Path(os.path.commonpath([str(path.parent) for path in files]))
    return {path: path.relative_to(common).as_posix() for path in files}


def _csv_rows(path: Path, name: str, delimiter: str) -> tuple[tuple[str, ...], list[RawRow]]:
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))
    rows: list[RawRow] = []
    line = 1
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream, delimiter=delimiter)
            header = next(reader, None)
            if not header or not any(cell.strip() for cell in header):
                raise ConversionError(f"{path}: no header row (the first line names the columns)")
            header = [cell.strip() for cell in header]
            repeated = sorted({cell for cell in header if header.count(cell) > 1})
            if repeated:
                raise ConversionError(
                    f"{path}: column {repeated[0]!r} appears twice in the header row"
                )
            line = reader.line_num + 1
            for fields in reader:
                where, line = f"{name}:{line}", reader.line_num + 1
                if not fields:
                    continue  # a blank line
                if len(fields) != len(header):
                    detail = f"{len(fields)} fields, the header has {len(header)}"
                    rows.append(RawRow(where, error=("bad_row", detail)))
                    continue
                rows.append(RawRow(where, dict(zip(header, fields, strict=True))))
    except UnicodeDecodeError as exc:
        raise ConversionError(
            f"{path}: not UTF-8 text near line {line} ({exc.reason}); save it as UTF-8"
        ) from exc
    except csv.Error as exc:
        raise ConversionError(f"{path}:{line}: not readable as CSV: {exc}") from exc
    except OSError as exc:
        raise ConversionError(f"{path}: cannot be read: {exc.strerror}") from exc
    return tuple(header), rows


def _jsonl_rows(path: Path, name: str) -> list[RawRow]:
    rows: list[RawRow] = []
    try:
        for line in iter_jsonl(path):
            where = f"{name}:{line.lineno}"
            if line.blank:
                continue
            if line.error is not None:
                rows.append(RawRow(where, error=("bad_line", line.error[1])))
            elif not isinstance(line.value, dict):
                detail = f"expected a JSON object, got {type(line.value).__name__}"
                rows.append(RawRow(where, error=("bad_row", detail)))
            else:
                rows.append(RawRow(where, line.value))
    except OSError as exc:
        raise ConversionError(f"{path}: cannot be read: {exc.strerror}") from exc
    return rows


def _json_rows(path: Path, name: str) -> list[RawRow]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"{path}: cannot be read: {exc.strerror}") from exc
    try:
        content = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        first = next((line for line in data.splitlines() if line.strip()), b"")
        try:
            is_lines = isinstance(orjson.loads(first), dict)
        except orjson.JSONDecodeError:
            is_lines = False
        if is_lines:  # JSON lines in a .json file (NLVR2 and others ship such files)
            return _jsonl_rows(path, name)
        raise ConversionError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from exc
    if not isinstance(content, list):
        raise ConversionError(
            f"{path}: expected a JSON array of objects (one per row), got a "
            f"{type(content).__name__}; JSON lines go in a .jsonl file"
        )
    rows: list[RawRow] = []
    for index, value in enumerate(content):
        where = f"{name}: row {index}"
        if isinstance(value, dict):
            rows.append(RawRow(where, value))
        else:
            detail = f"expected a JSON object, got {type(value).__name__}"
            rows.append(RawRow(where, error=("bad_row", detail)))
    return rows


def _object_columns(rows: list[RawRow]) -> tuple[str, ...]:
    """The keys of the rows' objects, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        if row.values is not None:
            seen.update(dict.fromkeys(row.values))
    return tuple(seen)


def _hf_class_names(split: HFSplit) -> dict[str, list[str]]:
    names = {}
    for column in split.columns:
        found = split.class_names(column)
        if found:
            names[column] = found
    return names


def _arrow_rows(
    split: HFSplit, name_of: Callable[[str], str], options: TableOptions
) -> Iterator[RawRow]:
    for ref, values in iter_rows(split, options.text_columns()):
        yield RawRow(f"{name_of(ref.file)}: row {ref.row}", values, ref=ref)


def _parquet_file(path: Path, name: str) -> HFSplit:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ConversionError(f"{path}: not a readable parquet file: {exc}") from exc
    features: dict[str, Any] = {}
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        try:
            features = orjson.loads(raw).get("info", {}).get("features") or {}
        except (orjson.JSONDecodeError, AttributeError):
            features = {}
    return HFSplit(name, "parquet", (path,), tuple(schema.names), features)


def input_tables(path: Path, names: dict[Path, str], options: TableOptions) -> list[Table]:
    """The tables of one input (a file, or a Hugging Face copy's splits)."""
    image_dir = (options.image_dir,) if options.image_dir else None
    if path.is_dir():
        hf = find_hf_copy(path, {}, NAMED_SPLITS)
        if hf is None:
            raise ConversionError(
                f"{path}: a folder must be a Hugging Face save_to_disk folder "
                "(dataset_dict.json or state.json) or hold *.parquet files; give CSV, TSV, "
                "JSONL or JSON tables as files"
            )
        tables = []
        for split in hf.values():
            roots = image_dir or tuple(dict.fromkeys((str(split.files[0].parent), str(path))))

            def name_of(file: str, base: Path = path) -> str:
                return (Path(base.name) / Path(file).relative_to(base)).as_posix()

            tables.append(
                Table(
                    name=name_of(str(split.files[0])),
                    split=split.name,
                    columns=split.columns,
                    roots=roots,
                    rows=lambda s=split, n=name_of: _arrow_rows(s, n, options),
                    class_names=_hf_class_names(split),
                )
            )
        return tables
    suffix = path.suffix.lower()
    name = names[path]
    roots = image_dir or (str(path.parent),)
    split = _file_split(path)
    if suffix == ".parquet":
        hf_split = _parquet_file(path, split)
        return [
            Table(
                name,
                split,
                hf_split.columns,
                roots,
                lambda: _arrow_rows(hf_split, lambda _file: name, options),
                _hf_class_names(hf_split),
            )
        ]
    if suffix in CSV_SUFFIXES:
        columns, rows = _csv_rows(path, name, CSV_SUFFIXES[suffix])
    elif suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows(path, name)
        columns = _object_columns(rows)
    elif suffix == ".json":
        rows = _json_rows(path, name)
        columns = _object_columns(rows)
    else:
        raise ConversionError(
            f"{path}: unknown table type {suffix or '(no extension)'!r}; expected one of "
            f"{', '.join(TABLE_SUFFIXES)}, or a Hugging Face folder"
        )
    return [Table(name, split, columns, roots, lambda: iter(rows), {})]


def check_columns(table: Table, options: TableOptions) -> None:
    missing = [
        (column, option)
        for column, option in options.wanted_columns().items()
        if column not in table.columns
    ]
    if missing:
        named = ", ".join(f"{column!r} ({option})" for column, option in missing)
        found = ", ".join(repr(column) for column in table.columns) or "none"
        plural = "s" if len(missing) > 1 else ""
        raise ConversionError(
            f"{table.name}: no column{plural} {named}. Columns found: {found}. Column names "
            "are case-sensitive."
        )
