"""`phi3v convert docvqa`: the questions and their pages, as the original release (old or
current layout) or a Hugging Face copy holds them.

Each reader yields, per split, `(where, (question, page))` for a usable question or
`(where, message)` for one that is not; the converter groups them by page.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from converters.converter import ConversionError
from converters.hf import HFSplit, RowRef, iter_rows

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}
QUESTION_FIELDS = (
    "questionId",
    "question",
    "question_types",
    "docId",
    "ucsf_document_id",
    "ucsf_document_page_no",
    "answers",
)


@dataclass(frozen=True)
class Page:
    """One document page and its questions (in file order)."""

    key: str  # image stem, used in grouped record ids and image names
    original: str  # the image as the annotations name it (file path or HF file:row)
    questions: tuple[dict[str, Any], ...]
    path: str | None = None  # original release: the image file
    row: RowRef | None = None  # HF copy: the row holding the image cell
    column: str = ""
    search_dirs: tuple[str, ...] = ()


def _checked_question(raw: Any) -> dict[str, Any] | str:
    """The question's fields, or a message saying what is wrong with it."""
    if not isinstance(raw, dict):
        return f"expected an object, got {type(raw).__name__}"
    qid = raw.get("questionId")
    if isinstance(qid, bool) or not isinstance(qid, int | str) or qid == "":
        return f"questionId must be an integer or a string, got {qid!r}"
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        return f"question {qid}: 'question' must be a non-empty string"
    answers = raw.get("answers")
    if answers is not None and (
        not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)
    ):
        return f"question {qid}: 'answers' must be a list of strings, got {answers!r}"
    types = raw.get("question_types")
    if types is not None and not isinstance(types, list):
        return f"question {qid}: 'question_types' must be a list, got {types!r}"
    return {name: raw.get(name) for name in QUESTION_FIELDS}


# --- original release ----------------------------------------------------------------


def _annotation_files(src: Path) -> list[tuple[str, Path, Path]]:
    """(split, annotation file, the spdocvqa_images folder), per split."""
    found: list[tuple[str, Path, Path]] = []
    qas = src / "spdocvqa_qas" if (src / "spdocvqa_qas").is_dir() else src
    images = qas.parent / "spdocvqa_images"
    for split in SPLITS:
        candidates = sorted(qas.glob(f"{split}_v1.0*.json"), key=lambda p: "withQT" not in p.name)
        folder = src / split
        if not candidates and folder.is_dir():
            candidates = sorted(
                folder.glob(f"{split}_v1.0*.json"), key=lambda p: "withQT" not in p.name
            )
        if candidates:
            annotation = candidates[0]
            found.append((split, annotation, images))
    if not found:
        raise ConversionError(
            f"{src}: no DocVQA annotations found. Expected {{train,val,test}}/<split>_v1.0.json "
            "with documents/, spdocvqa_qas/*_v1.0*.json with spdocvqa_images/, or a Hugging "
            "Face copy (*.parquet, or a save_to_disk folder)."
        )
    return found


def _load_annotations(path: Path) -> list[Any]:
    try:
        content = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConversionError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}). "
            "Re-extract the annotation file from the release archive."
        ) from exc
    except OSError as exc:
        raise ConversionError(f"{path}: cannot be read: {exc.strerror}") from exc
    data = content.get("data") if isinstance(content, dict) else None
    if not isinstance(data, list):
        raise ConversionError(f"{path}: expected an object with a 'data' list of questions")
    return data


def original_questions(src: Path) -> Iterator[tuple[str, Iterator[tuple[str, Any]]]]:
    for split, annotation, images in _annotation_files(src):
        yield split, _file_entries(annotation, images)


def _file_entries(annotation: Path, images: Path) -> Iterator[tuple[str, Any]]:
    for index, raw in enumerate(_load_annotations(annotation)):
        where = f"{annotation.name}: data[{index}]"
        question = _checked_question(raw)
        if isinstance(question, str):
            yield where, question
            continue
        image = raw.get("image")
        if not isinstance(image, str) or not image:
            yield where, f"question {question['questionId']}: 'image' must be a file path"
            continue
        path = _find_page(image, annotation.parent, images)
        page = Page(key=PurePosixPath(image).stem, original=image, questions=(), path=str(path))
        yield where, (question, page)


def _find_page(image: str, annotation_dir: Path, images_dir: Path) -> Path:
    """The page's file: `image` under the annotation's folder, or its name in the image folder."""
    rel = PurePosixPath(image.replace("\\", "/"))
    fallback = images_dir / rel.name if images_dir.is_dir() else annotation_dir / rel
    if ".." in rel.parts or rel.is_absolute():
        return fallback  # never read outside the dataset: process() reports image_missing
    for candidate in (annotation_dir / rel, images_dir / rel.name, images_dir / rel):
        if candidate.is_file():
            return candidate
    return fallback


# --- Hugging Face copy -----------------------------------------------------------------


def hf_questions(split: HFSplit, src: Path) -> Iterator[tuple[str, Any]]:
    column = "image" if "image" in split.image_columns else next(iter(split.image_columns), None)
    if column is None:
        raise ConversionError(f"{split.files[0]}: no Image column: is this a DocVQA copy?")
    for ref, raw in iter_rows(split, list(QUESTION_FIELDS)):
        where = f"{Path(ref.file).name}: row {ref.row}"
        question = _checked_question(raw)
        if isinstance(question, str):
            yield where, question
            continue
        if question.get("ucsf_document_id") and question.get("ucsf_document_page_no") is not None:
            key = f"{question['ucsf_document_id']}_{question['ucsf_document_page_no']}"
        elif question.get("docId") is not None:
            key = f"doc{question['docId']}"
        else:
            key = f"q{question['questionId']}"
        page = Page(
            key=key,
            original=f"{Path(ref.file).relative_to(src)}:{ref.row}",
            questions=(),
            row=ref,
            column=column,
            search_dirs=(str(Path(ref.file).parent), str(src)),
        )
        yield where, (question, page)
