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
Reading the release's or the copy's questions: `converters/docvqa_files.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
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
from converters.docvqa_files import SPLIT_ALIASES, SPLITS, Page, hf_questions, original_questions
from converters.hf import find_hf_copy, read_row
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


class DocVQAConverter(Converter):
    name = SOURCE
    progress_unit = "pages"
    rate_counter = "questions"

    def plan(self, src: Path) -> Plan:
        hf = find_hf_copy(src, SPLIT_ALIASES, SPLITS)
        if hf is not None:
            return self._plan((split.name, hf_questions(split, src)) for split in hf.values())
        return self._plan(original_questions(src))

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
