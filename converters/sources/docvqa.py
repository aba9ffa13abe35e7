"""`phi3v convert docvqa`: single-page DocVQA (questions about scanned document pages).

Sizes: train 39,463 questions / 10,194 pages; val 5,349 / 1,286; test 5,188 / 1,287
(the test file has no answers: its records are for inference, and the manifest marks
the split `inference_only`, so the validator allows their empty answers).

Accepted layouts of SRC (local files only):
- old release: `{train,val,test}/<split>_v1.0[_withQT].json` + `{split}/documents/*.png`;
- current release: `spdocvqa_qas/{train,val}_v1.0_withQT.json`, `test_v1.0.json` with the
  pages in `spdocvqa_images/*.png` (the JSON still says `documents/<name>.png`);
- a Hugging Face copy (e.g. `HuggingFaceM4/DocumentVQA`): parquet files
  (`data/{train,validation,test}-*.parquet`) or a `save_to_disk` folder; `validation` is
  written as split `val`.

Work is grouped by page (one image check per page, however many questions it has);
records keep the file's question order within a page, pages in order of first use.
- default: one record per question, id `docvqa-<split>-<questionId>`;
- `--group-by-image`: one multi-turn record per page, id `docvqa-<split>-<page>` where
  `<page>` is the image stem (`pybv0228_81`; `<ucsf_document_id>_<page_no>` in HF copies).
Prompt (reference recipe): `"<question>\\nAnswer briefly."`; answer: the first gold
answer, or a seeded choice among them (`--answer-choice seeded`); `meta.answers` keeps
all gold answers for ANLS, with the original ids and `question_types`.
Images: `images/docvqa/<split>/<page>.<ext>` from files (copied or `--link`ed), or
content-addressed `images/docvqa/<sha[:2]>/<sha>.<ext>` from embedded bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
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
    deep_check_flag,
    import_hf_image,
    import_image_file,
    link_flag,
    mirrored_stem,
)
from converters.prompts import (
    PromptChoice,
    choose_template,
    numbered,
    seeded_index,
)
from converters.registry import register_source
from phi3v_data.flags import flag
from phi3v_data.records import Record, Turn

SOURCE = "docvqa"
TEMPLATES = ("{question}\nAnswer briefly.",)
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


ANSWER_CHOICES = ("first", "seeded")


@dataclass(frozen=True)
class DocVQAOptions:
    """The flags of `phi3v convert docvqa` (`PromptChoice` holds the prompt flags)."""

    group_by_image: bool = flag(
        False,
        "--group-by-image",
        help="One multi-turn record per page (all its questions) instead of one per question.",
    )
    answer_choice: str = flag(
        "first",
        "--answer-choice",
        choices=ANSWER_CHOICES,
        help="Training answer: the first gold answer (reference) or a seeded choice "
        "among them. All gold answers stay in meta.answers.",
    )
    prompt: PromptChoice = field(default_factory=PromptChoice)
    link: bool = link_flag()
    deep_check: bool = deep_check_flag()

    def __post_init__(self) -> None:
        self.prompt.checked(TEMPLATES, {"question"})


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


class DocVQAConverter(Converter):
    name = SOURCE
    progress_unit = "pages"
    rate_counter = "questions"

    def plan(self, src: Path) -> Plan:
        hf = find_hf_copy(src, SPLIT_ALIASES, SPLITS)
        if hf is not None:
            return self._plan((split.name, _hf_questions(split, src)) for split in hf.values())
        return self._plan(_original_questions(src))

    def _plan(self, sources: Iterable[tuple[str, Iterator[tuple[str, Any]]]]) -> Plan:
        splits: dict[str, list[WorkItem]] = {}
        skips: list[Skip] = []
        inference_only: set[str] = set()
        for split, entries in sources:
            pages: dict[str, dict[str, Any]] = {}
            seen: set[str] = set()
            split_skips: list[Skip] = []
            questions = []
            for where, entry in entries:
                if isinstance(entry, str):
                    split_skips.append(Skip(split, where, "bad_annotation", entry))
                    continue
                question, page = entry
                qid = str(question["questionId"])
                if qid in seen:
                    split_skips.append(
                        Skip(split, where, "duplicate_id", f"questionId {qid} appears again")
                    )
                    continue
                seen.add(qid)
                questions.append((where, question, page))
            answered = any(question.get("answers") for _, question, _ in questions)
            if not answered:
                inference_only.add(split)
            for where, question, page in questions:
                if answered and not question.get("answers"):
                    split_skips.append(
                        Skip(
                            split, where, "no_answer", "no gold answer in a split that has answers"
                        )
                    )
                    continue
                slot = pages.setdefault(page.key, {"page": page, "questions": []})
                slot["questions"].append(question)
            splits[split] = [
                WorkItem(
                    split,
                    index,
                    slot["page"].original,
                    _with_questions(slot["page"], slot["questions"]),
                )
                for index, slot in enumerate(pages.values())
            ]
            skips.extend(split_skips)
        if not splits:
            raise ConversionError("no DocVQA annotations found")
        return Plan(splits=splits, skips=skips, inference_only=frozenset(inference_only))

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        page: Page = item.payload
        options: DocVQAOptions = self.options
        if page.path is not None:
            stem = mirrored_stem(f"{SOURCE}/{item.split}", PurePosixPath(page.original).name)
            imported = import_image_file(
                output, Path(page.path), stem, options.link, options.deep_check
            )
        else:
            assert page.row is not None
            cell = read_row(page.row, (page.column,))[page.column]
            dirs = [Path(folder) for folder in page.search_dirs]
            imported = import_hf_image(
                output, cell, SOURCE, page.original, dirs, options.link, options.deep_check
            )
        if isinstance(imported, ImageFailure):
            return ItemResult(
                skips=[
                    Skip(item.split, _question_key(q), imported.reason, imported.detail)
                    for q in page.questions
                ]
            )
        turns = [
            Turn(
                user=self._user_text(question),
                assistant=self._answer(question),
                images=(imported.rel,) if i == 0 or not options.group_by_image else (),
            )
            for i, question in enumerate(page.questions)
        ]
        result = ItemResult()
        result.counters["questions"] += len(turns)
        result.counters["images"] += 1
        if options.group_by_image:
            meta = {**_page_meta(page), "questions": [_question_meta(q) for q in page.questions]}
            record_id = f"{SOURCE}-{item.split}-{page.key}"
            result.records.append(Record(record_id, SOURCE, tuple(turns), meta))
        else:
            for question, turn in zip(page.questions, turns, strict=True):
                meta = {**_page_meta(page), **_question_meta(question)}
                record_id = f"{SOURCE}-{item.split}-{question['questionId']}"
                result.records.append(Record(record_id, SOURCE, (turn,), meta))
        return result

    def _user_text(self, question: dict[str, Any]) -> str:
        template = choose_template(TEMPLATES, str(question["questionId"]), self.options.prompt)
        return template.format(question=question["question"])

    def _answer(self, question: dict[str, Any]) -> str:
        answers = question.get("answers") or []
        if not answers:
            return ""
        if self.options.answer_choice == "seeded":
            key = f"answer:{question['questionId']}"
            return answers[seeded_index(self.options.prompt.seed, key, len(answers))]
        return answers[0]


def _question_key(question: dict[str, Any]) -> str:
    return f"questionId {question['questionId']}"


def _with_questions(page: Page, questions: list[dict[str, Any]]) -> Page:
    return Page(
        page.key,
        page.original,
        tuple(questions),
        page.path,
        page.row,
        page.column,
        page.search_dirs,
    )


def _page_meta(page: Page) -> dict[str, Any]:
    first = page.questions[0]
    meta: dict[str, Any] = {"image": page.original}
    for name in ("docId", "ucsf_document_id", "ucsf_document_page_no"):
        if first.get(name) is not None:
            meta[name] = first[name]
    return meta


def _question_meta(question: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"questionId": question["questionId"], "question": question["question"]}
    if question.get("answers"):
        meta["answers"] = question["answers"]
    if question.get("question_types"):
        meta["question_types"] = question["question_types"]
    return meta


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


def _original_questions(src: Path) -> Iterator[tuple[str, Iterator[tuple[str, Any]]]]:
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


def _hf_questions(split: HFSplit, src: Path) -> Iterator[tuple[str, Any]]:
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


# --- the command ----------------------------------------------------------------------

HELP = f"""DocVQA: questions about document pages (original release or Hugging Face copy).

SRC: the folder holding {{train,val,test}}/ (old layout), spdocvqa_qas/ + spdocvqa_images/
(current layout), or a Hugging Face copy (*.parquet files or a save_to_disk folder).

Writes docvqa_train.jsonl, docvqa_val.jsonl, docvqa_test.jsonl (test has no answers:
for inference). Template field: {{question}}. Built-in template:

{numbered(TEMPLATES)}

Example: phi3v convert docvqa ~/data/docvqa -o data/docvqa --group-by-image
"""


register_source("docvqa", help=HELP, options=DocVQAOptions, converter=DocVQAConverter)
