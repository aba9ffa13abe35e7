"""A tiny DocVQA tree in one of the real layouts, with the quirks a converter must survive.

Layouts: `old` (`{split}/{split}_v1.0.json` + `{split}/documents/`), `current`
(`spdocvqa_qas/` + `spdocvqa_images/`), `parquet` (HF `data/<split>-00000-of-00001.parquet`,
embedded bytes) and `disk` (HF `save_to_disk` DatasetDict).

Per split (pages x 2 questions each): train 3 pages, val 2, test 1 (no answers).
Quirks: in train, page 1 is a JPEG stored as `.png`, one question has a bad `answers`
(an empty question in HF copies, whose columns are typed) and one repeats a questionId;
in val, the second page's image is missing (a null image cell in HF copies).
Run: `python -m converters.samples.docvqa ROOT [--layout current]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from converters.samples.still_images import document_bytes, image_bytes, save_hf_copy, write

PAGES = {"train": 3, "val": 2, "test": 1}
LAYOUTS = ("old", "current", "parquet", "disk")


def _pages(
    counts: dict[str, int], size: tuple[int, int], realistic: bool
) -> dict[str, list[dict[str, Any]]]:
    width, height = size
    out: dict[str, list[dict[str, Any]]] = {}
    qid = 1000
    for s, (split, count) in enumerate(counts.items()):
        pages = []
        for p in range(count):
            seed = s * 100 + p
            name = f"doc{s}{p:03d}_{p + 1}"
            jpeg = split == "train" and p == 1
            if jpeg:
                data = image_bytes(width, height, "JPEG", seed)
            else:
                data = (
                    document_bytes(width, height, seed)
                    if realistic
                    else image_bytes(width, height, "PNG", seed)
                )
            questions = []
            for q in range(2):
                qid += 1
                question = {
                    "questionId": qid,
                    "question": f"What is the value in row {q + 1} of page {name}?",
                    "question_types": ["table/list"] if q else ["form"],
                    "docId": 500 + s * 100 + p,
                    "ucsf_document_id": f"doc{s}{p:03d}",
                    "ucsf_document_page_no": str(p + 1),
                    "answers": [f"{qid % 97}.{q}", f"{qid % 97}.{q}0"],
                    "image": f"documents/{name}.png",
                    "data_split": split,
                }
                if split == "test":
                    del question["answers"]
                questions.append(question)
            pages.append(
                {
                    "name": name,
                    "data": data,
                    "questions": questions,
                    "missing": split == "val" and p == 1,
                }
            )
        out[split] = pages
    return out


def build_docvqa_tree(
    root: Path,
    layout: str = "current",
    size: tuple[int, int] = (64, 48),
    extra_pages: int = 0,
    realistic: bool = False,
) -> Path:
    """Write the tree under `root` and return `root`. `extra_pages` adds clean train pages."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    pages = _pages({**PAGES, "train": PAGES["train"] + extra_pages}, size, realistic)
    questions: dict[str, list[dict[str, Any]]] = {}
    for split, split_pages in pages.items():
        items = [q for page in split_pages for q in page["questions"]]
        if split == "train":
            bad = dict(items[0], questionId=9001, answers="not a list")
            duplicate = dict(items[1], question="A repeated id")
            items += [bad, duplicate]
        questions[split] = items
    if layout in ("old", "current"):
        _write_original(root, layout, pages, questions)
    else:
        _write_hf(root, layout, pages, questions)
    return root


def _write_original(root: Path, layout: str, pages: dict, questions: dict) -> None:
    for split, split_pages in pages.items():
        if layout == "old":
            folder = root / split
            annotation = folder / f"{split}_v1.0.json"
            images = folder / "documents"
        else:
            name = f"{split}_v1.0.json" if split == "test" else f"{split}_v1.0_withQT.json"
            annotation = root / "spdocvqa_qas" / name
            images = root / "spdocvqa_images"
        for page in split_pages:
            if not page["missing"]:
                write(images / f"{page['name']}.png", page["data"])
        items = questions[split]
        if layout == "old":
            items = [{k: v for k, v in q.items() if k != "question_types"} for q in items]
        body = {
            "dataset_name": "docvqa",
            "dataset_version": "1.0",
            "dataset_split": split,
            "data": items,
        }
        write(annotation, orjson.dumps(body))


def _write_hf(root: Path, layout: str, pages: dict, questions: dict) -> None:
    from datasets import Features, Image, List, Value

    features = Features(
        {
            "questionId": Value("string"),
            "question": Value("string"),
            "question_types": List(Value("string")),
            "image": Image(),
            "docId": Value("int32"),
            "ucsf_document_id": Value("string"),
            "ucsf_document_page_no": Value("string"),
            "answers": List(Value("string")),
        }
    )
    rows: dict[str, list[dict[str, Any]]] = {}
    names = {"train": "train", "val": "validation", "test": "test"}
    for split, split_pages in pages.items():
        by_image = {f"documents/{p['name']}.png": p for p in split_pages}
        split_rows = []
        for q in questions[split]:
            page = by_image[q["image"]]
            answers = q.get("answers")
            bad = not isinstance(answers, list) and answers is not None
            split_rows.append(
                {
                    "questionId": str(q["questionId"]),
                    "question": "" if bad else q["question"],
                    "question_types": q["question_types"],
                    "image": None if page["missing"] else {"bytes": page["data"], "path": None},
                    "docId": q["docId"],
                    "ucsf_document_id": q["ucsf_document_id"],
                    "ucsf_document_page_no": q["ucsf_document_page_no"],
                    "answers": None if bad else answers,
                }
            )
        rows[names[split]] = split_rows
    save_hf_copy(root, rows, features, layout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=LAYOUTS, default="current")
    args = parser.parse_args()
    print(build_docvqa_tree(args.root, args.layout))


if __name__ == "__main__":
    main()
