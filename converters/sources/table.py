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

Here: the converter (rows -> work items -> records). The options and the prompt:
`converters/table_columns.py`; reading the formats: `converters/table_files.py`; cell
values and image paths: `converters/table_cells.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.converter import (
    ConversionError,
    Converter,
    ItemResult,
    OutputContext,
    Plan,
    Skip,
    WorkItem,
)
from converters.hf import RowRef, read_row
from converters.images import ImageFailure, ImportedImage, import_hf_image, import_image_bytes
from converters.registry import register_source
from converters.table_cells import (
    BadCell,
    cell_answers,
    cell_text,
    image_refs,
    is_empty,
    json_value,
    resolve_cell_path,
)
from converters.table_columns import (
    DEFAULT_SOURCE,
    NAME_RE,
    TableOptions,
    prompt_fields,
    render_prompt,
)
from converters.table_files import RawRow, Table, check_columns, file_names, input_tables
from phi3v_data.records import Record, Turn


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
        names = file_names([path for path in resolved if not path.is_dir()])
        tables = [table for path in resolved for table in input_tables(path, names, options)]
        for table in tables:
            check_columns(table, options)
            if (
                options.split is None
                and options.split_column is None
                and not NAME_RE.fullmatch(table.split)
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
                    if not NAME_RE.fullmatch(text):
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
            if isinstance(value, bool) or not isinstance(value, int | str) or is_empty(value):
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
                    value = cell_text(value, column, names[column], "bad_question")
                texts[column] = value
            try:
                user = render_prompt(options.prompt, texts)
            except (ValueError, TypeError) as exc:
                raise BadCell("bad_question", f"--prompt: {exc}") from exc
        else:
            assert options.question_column is not None
            column = options.question_column
            user = cell_text(values.get(column), column, names.get(column), "bad_question")
        if not user.strip():
            raise BadCell("empty_question", "the user text is empty")
        column = options.answer_column
        answer = cell_text(values.get(column), column, names.get(column), "bad_answer")
        meta: dict[str, Any] = {"table_row": raw.where}
        for column in options.meta_columns:
            meta[column] = json_value(values.get(column), column)
        if options.answers_column is not None:
            answers = cell_answers(values.get(options.answers_column), options.answers_column)
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
                refs = image_refs(cell, column)
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
