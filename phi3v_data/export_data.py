"""The way back: a converted folder -> a LLaVA or ShareGPT file (`phi3v export-data`).

torch-free. Reads one split of a converted folder (or one JSONL file) and writes every
record as a row of the other format, so other trainers (LLaVA, LLaMA-Factory, ms-swift)
can use data prepared and checked here.

- `llava`: `{"id", "image": PATH | [PATH, ...] (absent without images), "conversations":
  [{"from": "system"?}, {"from": "human", "value"}, {"from": "gpt", "value"}, ...]}`.
- `sharegpt` (LLaMA-Factory's and ms-swift's messages form): `{"id", "messages": [{"role":
  "system"?}, {"role": "user", "content"}, {"role": "assistant", "content"}, ...],
  "images": [PATH, ...]}`.

Text: each `<|image_k|>` becomes `<image>`; a turn without tags gets its images' `<image>`
tokens where the default layout (`seed`) puts them, all first, then a newline
(`"<image>\\n..."` for one image, `"<image><image>\\n..."` for two), so the other trainer
sees the text phi3v trains on; `image_layout="per-line"` writes `"<image>\\n<image>\\n..."`.
`meta.system` becomes the first (system) message; the rest of `meta` is not written.

Container: by the output's extension. `.jsonl`: one row per line; anything else (`.json`):
one JSON array, one row per line inside it. A JSON array is what LLaVA's training code
reads and what LLaMA-Factory's `dataset_info.json` examples use; LLaMA-Factory and ms-swift
read both.

Image paths: relative to `image_root` (default: the folder's `images/`, so a record's path
is written as it is, and that folder is the `--image-folder` / `media_dir` to give the
other tool). Round trip: `phi3v convert llava|sharegpt` of the file with that image folder
gives the same records (ids, turns, images, answers, `meta.system`) for records made by
the converters; a record written by hand with its tags as the default layout would put
them (`"<|image_1|>\nQ"`) comes back tag-free (`"Q"`): the same training text.

Records that cannot be written faithfully are skipped and listed: lines that are not
schema-valid records or whose tags do not match their images (run `phi3v validate`), and
text that already contains `<image>` (it would read as an image there).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from phi3v_data.dataset_dir import DatasetDirError, splits
from phi3v_data.jsonl import atomic_write, iter_jsonl
from phi3v_data.records import (
    IMAGE_LAYOUTS,
    IMAGE_TAG_RE,
    Record,
    check_image_tags,
    tagged_user_texts,
)
from phi3v_data.schema import is_valid

FORMATS = ("llava", "sharegpt")
IMAGE_TOKEN = "<image>"
IMAGES_DIR = "images"


class ExportError(Exception):
    """The export cannot start or wrote nothing; the message says why and what to do."""


@dataclass(slots=True)
class ExportSummary:
    output: Path
    format: str
    container: str  # "json" (one array) or "jsonl"
    files: list[Path]
    image_root: Path
    records: int = 0
    turns: int = 0
    images: int = 0
    empty_answers: int = 0  # inference-only data: written with empty answers
    meta_left_out: int = 0  # records with meta besides `system`, which is not written
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file:line, why)


class NothingExported(ExportError):
    """No record could be written: no output file was made."""


class Unexportable(ValueError):
    """A record that cannot be written in the other format (the message says why)."""


def container_of(output: Path) -> str:
    return "jsonl" if output.suffix.lower() == ".jsonl" else "json"


def foreign_row(
    record: Record, fmt: str, image_path: Callable[[str], str] = str, image_layout: str = "seed"
) -> dict[str, Any]:
    """`record` as one LLaVA or ShareGPT row (raises `Unexportable`)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    meta = record.meta if isinstance(record.meta, dict) else {}
    system = meta.get("system") if isinstance(meta.get("system"), str) else None
    texts = [("the system message", system)] if system else []
    for t, turn in enumerate(record.conversations):
        texts += [
            (f"turn {t + 1}'s question", turn.user),
            (f"turn {t + 1}'s answer", turn.assistant),
        ]
    for what, text in texts:
        if text and IMAGE_TOKEN in text:
            raise Unexportable(f"{what} contains {IMAGE_TOKEN!r}, which would read as an image")
    users = [
        IMAGE_TAG_RE.sub(IMAGE_TOKEN, text)
        for text in tagged_user_texts(record.conversations, image_layout)
    ]
    images = [image_path(rel) for rel in record.images]
    if fmt == "llava":
        conversations = [{"from": "system", "value": system}] if system else []
        for user, turn in zip(users, record.conversations, strict=True):
            conversations += [
                {"from": "human", "value": user},
                {"from": "gpt", "value": turn.assistant},
            ]
        row: dict[str, Any] = {"id": record.id}
        if images:
            row["image"] = images[0] if len(images) == 1 else images
        row["conversations"] = conversations
        return row
    messages = [{"role": "system", "content": system}] if system else []
    for user, turn in zip(users, record.conversations, strict=True):
        messages += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": turn.assistant},
        ]
    return {"id": record.id, "messages": messages, "images": images}


def input_files(path: Path, split: str | None) -> tuple[list[Path], Path]:
    """The JSONL files to export and the image root their paths are relative to.

    `path` is a converted folder (its `--split`, or its only split) or one JSONL file.
    """
    if path.is_file():
        return [path], path.parent / IMAGES_DIR
    if not path.is_dir():
        raise ExportError(f"{path} does not exist: give a converted folder or a JSONL file")
    available = splits(path)
    if not available:
        raise ExportError(f"{path} holds no *.jsonl files (and no manifest.json listing any)")
    if split is None:
        if len(available) > 1:
            raise ExportError(
                f"{path} has several splits ({', '.join(available)}): choose one with --split"
            )
        split = next(iter(available))
    if split not in available:
        raise ExportError(
            f"{path}: no split {split!r} (found: {', '.join(sorted(available))}); "
            "choose one with --split"
        )
    return available[split], path / IMAGES_DIR


def export_data(
    path: Path,
    fmt: str,
    output: Path,
    split: str | None = None,
    image_root: Path | None = None,
    image_layout: str = "seed",
    overwrite: bool = False,
) -> ExportSummary:
    """Write the split's records to `output` (atomically); see the module notes.

    Raises `ExportError` when the input or output is unusable, or when no record could be
    written (nothing is written then).
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if image_layout not in IMAGE_LAYOUTS:
        raise ExportError(f"--image-layout must be one of {', '.join(IMAGE_LAYOUTS)}")
    try:
        files, default_root = input_files(path, split)
    except DatasetDirError as exc:
        raise ExportError(str(exc)) from exc
    _check_output(output, path, overwrite)
    container = container_of(output)
    root = image_root if image_root is not None else default_root
    image_path = str if image_root is None else _relative_to(default_root, image_root)
    summary = ExportSummary(output, fmt, container, files, root)
    with atomic_write(output, "wb") as stream:
        first = True
        for row in _rows(files, fmt, image_path, image_layout, summary):
            line = orjson.dumps(row)
            if container == "jsonl":
                stream.write(line + b"\n")
            else:
                stream.write((b"[\n" if first else b",\n") + line)
            first = False
        if summary.records == 0:
            raise NothingExported(_nothing_message(summary))
        if container == "json":
            stream.write(b"\n]\n")
    return summary


def _rows(
    files: list[Path],
    fmt: str,
    image_path: Callable[[str], str],
    image_layout: str,
    summary: ExportSummary,
) -> Iterator[dict[str, Any]]:
    for file in files:
        for line in iter_jsonl(file):
            if line.blank:
                continue
            where = f"{file}:{line.lineno}"
            try:
                record = _record(line.value, line.error)
                row = foreign_row(record, fmt, image_path, image_layout)
            except Unexportable as exc:
                summary.skipped.append((where, str(exc)))
                continue
            summary.records += 1
            summary.turns += len(record.conversations)
            summary.images += len(record.images)
            summary.empty_answers += sum(not turn.assistant for turn in record.conversations)
            if isinstance(record.meta, dict) and set(record.meta) - {"system"}:
                summary.meta_left_out += 1
            yield row


def _record(value: Any, error: tuple[str, str] | None) -> Record:
    if error is not None:
        raise Unexportable(f"{error[1]} (run phi3v validate)")
    if not is_valid(value):
        raise Unexportable("not a valid phi3v record (phi3v validate says why)")
    problems = check_image_tags(value["conversations"])
    if problems:
        turn, message = problems[0]
        raise Unexportable(f"turn {turn + 1}: {message}")
    return Record.from_dict(value)


def _relative_to(images_dir: Path, image_root: Path) -> Callable[[str], str]:
    base = os.path.abspath(images_dir)
    root = os.path.abspath(image_root)

    def relative(rel: str) -> str:
        return os.path.relpath(os.path.join(base, rel), root).replace(os.sep, "/")

    return relative


def _check_output(output: Path, source: Path, overwrite: bool) -> None:
    if output.is_dir():
        raise ExportError(f"{output} is a folder: -o takes the file to write")
    if output.exists() and not overwrite:
        raise ExportError(f"{output} exists: use --overwrite to replace it")
    folder = source if source.is_dir() else source.parent
    if container_of(output) == "jsonl" and output.resolve().parent == folder.resolve():
        raise ExportError(
            f"{output} would be a *.jsonl file inside {folder}, and every reader of that folder "
            "takes all its *.jsonl files as records: write it elsewhere (or as .json)"
        )


def _nothing_message(summary: ExportSummary) -> str:
    if not summary.skipped:
        return f"no records in {', '.join(map(str, summary.files))}: nothing was written"
    where, why = summary.skipped[0]
    return (
        f"no record could be exported ({len(summary.skipped):,} skipped; first: {where}: "
        f"{why}); nothing was written"
    )
