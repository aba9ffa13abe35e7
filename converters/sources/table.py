"""`phi3v convert table`: your own table of images, questions and answers.

One record per row: the images of `--image-column` (one or more columns, each holding one
image or a list of them, in order), a user text from `--question-column` or from a
`--prompt` template filled from the row's columns (`"{question} Answer in one word."`),
and the answer of `--answer-column`.

Inputs (one or more FILE_OR_DIR, read in the order given, local files only):
- `.csv`, `.tsv` (a header row, UTF-8), `.jsonl`/`.ndjson` (one object per line), `.json`
  (an array of objects; a `.json` file of JSON lines is read as such), `.parquet`;
- a folder: a Hugging Face `save_to_disk` folder (`dataset_dict.json` or `state.json`) or a
  folder of `*.parquet` files (read as `converters.hf` reads Hugging Face copies; its splits
  are kept).

Image cells: a path relative to the table's folder (or to `--image-dir`), a list of paths
(a JSON list in CSV/TSV: `["a.png", "b.png"]`), embedded bytes (a binary column or a
Hugging Face `Image` struct `{"bytes", "path"}`), or a list of those. URLs (`http://`,
`https://`, `s3://`, `data:`, ...) are never fetched: such rows are skipped (`image_url`).
A path must stay inside its root (`..` and symlinks leading out are `image_path_escapes`,
absolute paths `image_path_absolute`) unless `--allow-absolute-paths` is given. Every image
is identified by its content, checked, and stored once under a content-addressed name,
`images/<source>/<sha[:2]>/<sha>.<ext>` (copied, or hard-linked with `--link`); the
cells' original paths stay in `meta.original_images` (null for embedded bytes without a
name; left out when every image is such).

Splits: `--split NAME` puts every row in NAME; `--split-column COL` takes each row's split
from COL (letters, digits, `_`, `.`, `-`; other values are `bad_split`); otherwise a Hugging
Face copy keeps its splits and a file is the split its name says when it is one of
train/val/validation/valid/dev/test/eval (`test.csv`, `train-00000-of-00002.parquet`), else
`train`. A split where no row has an answer is inference-only (empty answers, marked in
the manifest); in any other split a row with an empty answer is skipped (`empty_answer`).

Records: id `<source>-<split>-<row index>` (the row's 0-based position among its split's
rows, in input order), or the `--id-column` value as is (ids must be unique across all
splits: a repeated one is `duplicate_id`). `meta`: `table_row` (the file and row, as skips
name it), the `--meta-column` values, `answers` (all gold answers from `--answers-column`:
a list, or a JSON-list string, for ANLS/accuracy) and `original_images`.
Where rows are named: `file.csv:LINE` and `file.jsonl:LINE` (the line the row starts on),
`file.json: row I` and `file.parquet: row I` (0-based).
"""

from __future__ import annotations

import csv
import datetime
import decimal
import os
import posixpath
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from converters.converter import (
    ConversionError,
    Converter,
    ItemResult,
    OutputContext,
    Plan,
    Skip,
    WorkItem,
)
from converters.hf import HFSplit, RowRef, find_hf_copy, iter_rows, read_row
from converters.images import (
    ImageFailure,
    ImportedImage,
    deep_check_flag,
    import_hf_image,
    import_image_bytes,
    link_flag,
)
from converters.prompts import line_breaks
from converters.registry import register_source
from phi3v_data.flags import FlagError, flag
from phi3v_data.jsonl import iter_jsonl
from phi3v_data.paths import PathProblem, resolve_image_path
from phi3v_data.records import Record, Turn

DEFAULT_SOURCE = "table"
# File names that name a split (`test.csv`); also the order of a Hugging Face copy's splits.
NAMED_SPLITS = ("train", "val", "validation", "valid", "dev", "test", "eval")
RESERVED_META = ("table_row", "answers", "original_images")
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TABLE_SUFFIXES = (*CSV_SUFFIXES, *JSONL_SUFFIXES, ".json", ".parquet")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^data:", re.IGNORECASE)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")
_SHARD_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")


def _column_flag(*names: str, help: str, metavar: str = "COL", **spec: Any) -> Any:
    """The many column flags: a metavar, no default shown."""
    return flag(None, *names, help=help, metavar=metavar, show_default=False, **spec)


def _resolved(path: Path) -> str:
    return str(Path(path).resolve())


@dataclass(frozen=True)
class TableOptions:
    """What to read from each row: the flags of `phi3v convert table`. Checked on creation
    (`FlagError`)."""

    image_columns: tuple[str, ...] = flag(
        (),
        "--image-column",
        repeat=True,
        metavar="COL",
        show_default=False,
        help="Column of images: a path, a list of paths, or image bytes. Repeat it for "
        "several columns; the record's images are theirs, in order. Required.",
    )
    answer_column: str | None = _column_flag(  # required: None only to say so clearly
        "--answer-column", help="Column of the answer (the training target)."
    )
    question_column: str | None = _column_flag(
        "--question-column", help="Column of the user's question (or give --prompt)."
    )
    prompt: str | None = _column_flag(
        "--prompt",
        help='The user text, with {column} fields filled from the row: "{question}\\nAnswer '
        'briefly." (\\n is a line break; {{ }} a brace). Instead of --question-column.',
        metavar="TEXT",
        parse=line_breaks,
    )
    answers_column: str | None = _column_flag(
        "--answers-column",
        help="Column of all gold answers (a list, or a JSON list as text), kept in meta.answers "
        "for ANLS/accuracy.",
    )
    id_column: str | None = _column_flag(
        "--id-column",
        help="Column of record ids (unique across splits). Default: <source>-<split>-<row index>.",
    )
    split_column: str | None = _column_flag(
        "--split-column", help="Column naming each row's split (train, val, ...)."
    )
    split: str | None = _column_flag(
        "--split",
        help="Put every row in this split. Default: the Hugging Face copy's splits, or the "
        "file's name when it names a split (test.csv), else train.",
        metavar="NAME",
    )
    image_dir: str | None = _column_flag(  # absolute
        "--image-dir",
        help="Resolve relative image paths here instead of in the table's folder.",
        metavar="DIR",
        parse=_resolved,
    )
    meta_columns: tuple[str, ...] = flag(
        (),
        "--meta-column",
        repeat=True,
        metavar="COL",
        show_default=False,
        help="Also keep this column's value in meta (repeatable).",
    )
    source: str = flag(
        DEFAULT_SOURCE,
        "--source",
        metavar="NAME",
        help="The records' source, the output files' prefix and images/<NAME>/.",
    )
    allow_absolute_paths: bool = flag(
        False,
        "--allow-absolute-paths",
        help="Accept absolute image paths and relative ones leading outside their folder.",
    )
    link: bool = link_flag()
    deep_check: bool = deep_check_flag()
    # The input files and folders (absolute), in order; empty means the `src` given to the
    # framework. On the command line they are the arguments, the first one being SRC.
    inputs: tuple[str, ...] = flag(
        (),
        repeat=True,
        positional=True,
        metavar="FILE_OR_DIR",
        show_default=False,
        help="Table files (.csv .tsv .jsonl .json .parquet) or Hugging Face folders.",
        parse=lambda paths: tuple(_resolved(path) for path in paths),
    )

    def __post_init__(self) -> None:
        for name in ("image_columns", "meta_columns", "inputs"):  # lists given in code
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.image_columns:
            raise FlagError("--image-column", "give at least one image column")
        if self.answer_column is None:
            raise FlagError("--answer-column", "give the answer column")
        if (self.question_column is None) == (self.prompt is None):
            raise FlagError(
                "--question-column",
                "give either --question-column COL or --prompt TEXT (with {column} fields)",
            )
        if self.prompt is not None:
            fields = prompt_fields(self.prompt)
            if not self.prompt.strip():
                raise FlagError("--prompt", "the prompt is empty")
            images = sorted(fields & set(self.image_columns))
            if images:
                raise FlagError(
                    "--prompt",
                    f"field {{{images[0]}}} is an --image-column: the prompt takes text columns",
                )
        if self.split is not None and self.split_column is not None:
            raise FlagError("--split", "give --split or --split-column, not both")
        if self.split is not None and not _NAME.fullmatch(self.split):
            raise FlagError(
                "--split", f"split name {self.split!r}: use letters, digits, '_', '.', '-'"
            )
        if not _NAME.fullmatch(self.source):
            raise FlagError(
                "--source",
                f"source name {self.source!r}: use letters, digits, '_', '.', '-' "
                "(it names the output files and images/<source>/)",
            )
        for column in self.meta_columns:
            if column in RESERVED_META:
                hint = " (use --answers-column for gold answers)" if column == "answers" else ""
                raise FlagError(
                    "--meta-column",
                    f"meta key {column!r} is written by the converter itself{hint}",
                )
            if column in self.image_columns:
                raise FlagError(
                    "--meta-column",
                    f"{column!r} is an --image-column: its original values are kept in "
                    "meta.original_images",
                )
        duplicated = [c for c in self.image_columns if self.image_columns.count(c) > 1]
        if duplicated:
            raise FlagError("--image-column", f"--image-column {duplicated[0]!r} is given twice")

    def wanted_columns(self) -> dict[str, str]:
        """Every column a row needs -> the option that names it (image columns first)."""
        wanted: dict[str, str] = {}
        for column in self.image_columns:
            wanted.setdefault(column, "--image-column")
        if self.question_column is not None:
            wanted.setdefault(self.question_column, "--question-column")
        for column in sorted(prompt_fields(self.prompt or "")):
            wanted.setdefault(column, "--prompt")
        wanted.setdefault(self.answer_column, "--answer-column")
        for column, option in (
            (self.answers_column, "--answers-column"),
            (self.id_column, "--id-column"),
            (self.split_column, "--split-column"),
        ):
            if column is not None:
                wanted.setdefault(column, option)
        for column in self.meta_columns:
            wanted.setdefault(column, "--meta-column")
        return wanted

    def text_columns(self) -> list[str]:
        """The columns read at plan time (all but the image columns)."""
        return [c for c in self.wanted_columns() if c not in self.image_columns]


def prompt_fields(template: str) -> set[str]:
    """The `{column}` fields of a prompt; raises `FlagError` for a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise FlagError(
            "--prompt", f"not a valid template: {exc} (write {{{{ }}}} for a brace)"
        ) from exc
    fields = {name for _, name, _, _ in parsed if name is not None}
    if "" in fields:
        raise FlagError("--prompt", "empty field {}: name a column, as in {question}")
    return fields


def render_prompt(template: str, values: dict[str, Any]) -> str:
    """The template with each `{column}` replaced by the row's value (null gives "").

    Field names are looked up literally, so a column may be called `a.b` or `x[0]`.
    """
    parts: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        value = values.get(name)
        if value is None:
            value = ""
        if conversion == "r":
            value = repr(value)
        elif conversion == "a":
            value = ascii(value)
        elif conversion == "s":
            value = str(value)
        parts.append(format(value, spec or ""))
    return "".join(parts)


# --- reading tables --------------------------------------------------------------------


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


def _file_names(files: list[Path]) -> dict[Path, str]:
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


def _tables(path: Path, names: dict[Path, str], options: TableOptions) -> list[Table]:
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


def _check_columns(table: Table, options: TableOptions) -> None:
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


# --- cell values -----------------------------------------------------------------------


class BadCell(ValueError):
    """A cell that cannot be used: `reason` is the skip reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any, column: str, names: list[str] | None, reason: str) -> str:
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


def _answers(value: Any, column: str) -> list[str] | None:
    """All gold answers: a list, or a JSON-list string; None when the cell is empty."""
    if _is_empty(value):
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


def _json_value(value: Any, column: str) -> Any:
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
        return [_json_value(item, column) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item, column) for key, item in value.items()}
    raise BadCell("bad_meta", f"column {column!r} holds {type(value).__name__} data")


def _image_refs(cell: Any, column: str) -> list[str | bytes | dict[str, Any]]:
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
                return _image_refs(parsed, column)
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
            refs.extend(_image_refs(item, column))
        return refs
    raise BadCell(
        "bad_image_cell",
        f"column {column!r} holds a {type(cell).__name__}: expected a path, a list of paths "
        "or image bytes",
    )


# --- plan and process ------------------------------------------------------------------


@dataclass(frozen=True)
class TableRow:
    """One row ready to convert: its texts, and where its images are."""

    id: str
    user: str
    answer: str
    meta: dict[str, Any]
    roots: tuple[str, ...]
    cells: tuple[Any, ...] | None = None  # CSV/JSON: the image cells
    ref: RowRef | None = None  # parquet/Arrow: the row holding the image cells


class TableConverter(Converter):
    name = DEFAULT_SOURCE
    progress_unit = "rows"

    def __init__(self, options: TableOptions) -> None:
        super().__init__(options)
        self.name = options.source  # type: ignore[misc]

    def plan(self, src: Path) -> Plan:
        options: TableOptions = self.options
        inputs = [Path(path) for path in options.inputs] or [src]
        resolved = [path.resolve() for path in inputs]
        for path, full in zip(inputs, resolved, strict=True):
            if not path.exists():
                raise ConversionError(f"input {path} does not exist")
            if resolved.count(full) > 1:
                raise ConversionError(f"input {path} is given twice")
        if options.image_dir and not Path(options.image_dir).is_dir():
            raise ConversionError(f"--image-dir {options.image_dir} is not a folder")
        names = _file_names([path for path in resolved if not path.is_dir()])
        tables = [table for path in resolved for table in _tables(path, names, options)]
        for table in tables:
            _check_columns(table, options)
            if (
                options.split is None
                and options.split_column is None
                and not _NAME.fullmatch(table.split)
            ):
                raise ConversionError(
                    f"{table.name}: split name {table.split!r} cannot name an output "
                    "file; give --split NAME"
                )
        return _plan_rows(self._rows(tables))

    def _rows(self, tables: list[Table]) -> Iterator[tuple[str | None, str, TableRow | Skip]]:
        """(split, where, row or skip) for every row of every table, in input order.

        The split is None for a row whose split is unknown (an unreadable row, or a bad
        `--split-column` value): it is skipped without making a split.
        """
        options: TableOptions = self.options
        counts: dict[str, int] = {}
        for table in tables:
            for raw in table.rows():
                split = options.split or table.split
                known = options.split_column is None
                if raw.error is not None:
                    yield split if known else None, raw.where, Skip(split, raw.where, *raw.error)
                    continue
                assert raw.values is not None
                if options.split_column is not None:
                    value = raw.values.get(options.split_column)
                    text = "" if value is None else str(value).strip()
                    if not _NAME.fullmatch(text):
                        detail = (
                            f"column {options.split_column!r} is empty"
                            if not text
                            else f"split {text!r} (column {options.split_column!r}) is not a "
                            "name of letters, digits, '_', '.', '-'"
                        )
                        yield None, raw.where, Skip(split, raw.where, "bad_split", detail)
                        continue
                    split = text
                index = counts.get(split, 0)
                counts[split] = index + 1
                try:
                    row = self._row(table, raw, split, index)
                except BadCell as exc:
                    yield split, raw.where, Skip(split, raw.where, exc.reason, str(exc))
                    continue
                yield split, raw.where, row

    def _row(self, table: Table, raw: RawRow, split: str, index: int) -> TableRow:
        options: TableOptions = self.options
        values = raw.values or {}
        names = table.class_names
        if options.id_column is not None:
            value = values.get(options.id_column)
            if isinstance(value, float) and value.is_integer():  # integers with nulls, via pandas
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int | str) or _is_empty(value):
                raise BadCell(
                    "bad_id",
                    f"id (column {options.id_column!r}) must be a non-empty string or an "
                    f"integer, got {value!r}",
                )
            record_id = str(value).strip()
        else:
            record_id = f"{options.source}-{split}-{index}"
        if options.prompt is not None:
            texts = {}
            for column in prompt_fields(options.prompt):
                value = values.get(column)
                if column in names and isinstance(value, int):  # a ClassLabel: its name
                    value = _text(value, column, names[column], "bad_question")
                texts[column] = value
            try:
                user = render_prompt(options.prompt, texts)
            except (ValueError, TypeError) as exc:
                raise BadCell("bad_question", f"--prompt: {exc}") from exc
        else:
            assert options.question_column is not None
            column = options.question_column
            user = _text(values.get(column), column, names.get(column), "bad_question")
        if not user.strip():
            raise BadCell("empty_question", "the user text is empty")
        column = options.answer_column
        answer = _text(values.get(column), column, names.get(column), "bad_answer")
        meta: dict[str, Any] = {"table_row": raw.where}
        for column in options.meta_columns:
            meta[column] = _json_value(values.get(column), column)
        if options.answers_column is not None:
            answers = _answers(values.get(options.answers_column), options.answers_column)
            if answers is not None:
                meta["answers"] = answers
        cells = None
        if raw.ref is None:
            cells = tuple(values.get(column) for column in options.image_columns)
        return TableRow(record_id, user, answer, meta, table.roots, cells, raw.ref)

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        options: TableOptions = self.options
        row: TableRow = item.payload
        if row.cells is not None:
            cells: Sequence[Any] = row.cells
        else:
            assert row.ref is not None
            values = read_row(row.ref, options.image_columns)
            cells = [values.get(column) for column in options.image_columns]
        images: list[ImportedImage] = []
        originals: list[str | None] = []  # None: embedded bytes without a name
        for column, cell in zip(options.image_columns, cells, strict=True):
            try:
                refs = _image_refs(cell, column)
            except BadCell as exc:
                return _skip(item, exc.reason, str(exc))
            if not refs:
                return _skip(item, "image_missing", f"column {column!r} has no image")
            for k, ref in enumerate(refs):
                name = f"column {column!r}" + (f" image {k}" if len(refs) > 1 else "")
                imported, original = self._import(ref, name, row.roots, output)
                if isinstance(imported, ImageFailure):
                    return _skip(item, imported.reason, imported.detail)
                images.append(imported)
                originals.append(original)
        turn = Turn(user=row.user, assistant=row.answer, images=tuple(i.rel for i in images))
        meta = dict(row.meta)
        if any(original is not None for original in originals):  # not all embedded
            meta["original_images"] = originals
        result = ItemResult(records=[Record(row.id, options.source, (turn,), meta)])
        result.counters["images"] += len(images)
        return result

    def _import(
        self,
        ref: str | bytes | dict[str, Any],
        name: str,
        roots: tuple[str, ...],
        output: OutputContext,
    ) -> tuple[ImportedImage | ImageFailure, str | None]:
        options: TableOptions = self.options
        if isinstance(ref, dict):
            path = ref.get("path") if isinstance(ref.get("path"), str) else None
            if ref.get("bytes"):
                original = path
                return import_image_bytes(
                    output, ref["bytes"], options.source, name, options.deep_check
                ), original
            assert path is not None
            ref = path.strip()
        if isinstance(ref, bytes):
            imported = import_image_bytes(output, ref, options.source, name, options.deep_check)
            return imported, None
        found = resolve_cell_path(ref, roots, options.allow_absolute_paths)
        if isinstance(found, ImageFailure):
            return ImageFailure(found.reason, f"{name}: {found.detail}"), ref
        cell = {"bytes": None, "path": str(found)}
        imported = import_hf_image(
            output, cell, options.source, name, (), options.link, options.deep_check
        )
        if isinstance(imported, ImageFailure) and imported.reason == "image_missing":
            where = "" if os.path.isabs(ref) else f" in {', '.join(roots)}"
            imported = ImageFailure("image_missing", f"{name}: {ref!r} not found{where}")
        return imported, ref


def _skip(item: WorkItem, reason: str, detail: str) -> ItemResult:
    return ItemResult(skips=[Skip(item.split, item.key, reason, detail)])


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


def _plan_rows(rows: Iterator[tuple[str | None, str, TableRow | Skip]]) -> Plan:
    """Work items per split (in order of first appearance); duplicate ids and empty answers
    in a split that has answers become skips; a split without any answer is inference-only."""
    kept: dict[str, list[tuple[str, TableRow]]] = {}
    skips: list[Skip] = []
    seen: set[str] = set()
    for split, where, entry in rows:
        if split is not None:
            kept.setdefault(split, [])
        if isinstance(entry, Skip):
            skips.append(entry)
            continue
        assert split is not None
        if entry.id in seen:
            skips.append(Skip(split, where, "duplicate_id", f"id {entry.id!r} appears again"))
        else:
            seen.add(entry.id)
            kept[split].append((where, entry))
    splits: dict[str, list[WorkItem]] = {}
    inference_only: set[str] = set()
    for split, entries in kept.items():
        answered = any(row.answer.strip() for _, row in entries)
        if not answered and entries:
            inference_only.add(split)
        items = []
        for where, row in entries:
            if answered and not row.answer.strip():
                detail = "no answer, in a split where other rows have one"
                skips.append(Skip(split, where, "empty_answer", detail))
                continue
            items.append(WorkItem(split, len(items), where, row))
        splits[split] = items
    if not splits and not skips:
        raise ConversionError("the tables hold no rows: nothing to convert")
    return Plan(splits=splits, skips=skips, inference_only=frozenset(inference_only))


# --- the command ----------------------------------------------------------------------

HELP = """Your own table: one record per row (images, a question or prompt, an answer).

FILE_OR_DIR: .csv, .tsv, .jsonl, .json (an array of objects), .parquet files, or a Hugging
Face save_to_disk folder or folder of *.parquet files; several may be given.

Image cells: a path relative to the table's folder (or --image-dir), a list of paths (in
CSV a JSON list: ["a.png", "b.png"]), or embedded bytes (binary or Hugging Face Image
columns). URLs are never downloaded: such rows are skipped. Every skipped row is listed
with its file and line or row and the reason, in the summary and in manifest.json.

Example: phi3v convert table data.csv -o data/mine --image-column image
--question-column question --answer-column answer --split-column split
"""


register_source("table", help=HELP, options=TableOptions, converter=TableConverter)
