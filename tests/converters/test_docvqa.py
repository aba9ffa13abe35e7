"""DocVQA: both original layouts and both HF copies, with the fixture's quirks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from converters.converter import ItemResult, OutputContext, WorkItem
from converters.framework import RunSettings, run_conversion
from converters.prompts import PromptChoice
from converters.samples.docvqa import build_docvqa_tree
from converters.sources.docvqa import DocVQAConverter, DocVQAOptions
from phi3v_cli.app import app
from phi3v_data.validate import ValidateOptions, validate_paths


def _records(out: Path, split: str) -> list[dict]:
    return [
        orjson.loads(line) for line in (out / f"docvqa_{split}.jsonl").read_bytes().splitlines()
    ]


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("layout", ["old", "current", "parquet", "disk"])
def test_every_layout_converts_with_skips_and_validates(tmp_path: Path, layout: str) -> None:
    src = build_docvqa_tree(tmp_path / "src", layout)
    out = tmp_path / "out"
    summary = run_conversion(DocVQAConverter(DocVQAOptions()), src, RunSettings(out, workers=1))
    assert {name: s.records for name, s in summary.splits.items()} == {
        "train": 6,
        "val": 2,
        "test": 2,
    }
    assert summary.splits["train"].skipped == {"bad_annotation": 1, "duplicate_id": 1}
    assert summary.splits["val"].skipped == {"image_missing": 2}
    assert summary.splits["test"].inference_only and not summary.splits["val"].inference_only
    first = _records(out, "train")[0]
    assert first["id"] == "docvqa-train-1001"
    turn = first["conversations"][0]
    assert turn["user"] == "What is the value in row 1 of page doc0000_1?\nAnswer briefly."
    assert turn["assistant"] == "31.0" and first["meta"]["answers"] == ["31.0", "31.00"]
    assert first["meta"]["ucsf_document_id"] == "doc0000"
    # The page stored as .png holds a JPEG: written with its real extension.
    third = _records(out, "train")[2]["conversations"][0]["images"][0]
    assert third.endswith(".jpg")
    if layout in ("old", "current"):
        assert third == "docvqa/train/doc0001_2.jpg"
    assert all(r["conversations"][0]["assistant"] == "" for r in _records(out, "test"))
    report = validate_paths([out], ValidateOptions(workers=1))
    assert report.ok, report.counts_by_code()
    assert report.stats.records == 10


def test_group_by_image_and_seeded_answers(tmp_path: Path) -> None:
    src = build_docvqa_tree(tmp_path / "src", "current")
    out = tmp_path / "out"
    options = DocVQAOptions(
        group_by_image=True, answer_choice="seeded", prompt=PromptChoice(seed=3)
    )
    run_conversion(DocVQAConverter(options), src, RunSettings(out))
    train = _records(out, "train")
    assert [r["id"] for r in train] == [
        "docvqa-train-doc0000_1",
        "docvqa-train-doc0001_2",
        "docvqa-train-doc0002_3",
    ]
    turns = train[0]["conversations"]
    assert len(turns) == 2 and len(turns[0]["images"]) == 1 and turns[1]["images"] == []
    assert [q["questionId"] for q in train[0]["meta"]["questions"]] == [1001, 1002]
    answers = [t["assistant"] for r in train for t in r["conversations"]]
    golds = [q["answers"] for r in train for q in r["meta"]["questions"]]
    assert all(a in g for a, g in zip(answers, golds, strict=True))
    assert any(a != g[0] for a, g in zip(answers, golds, strict=True))  # seed 3 picks a second
    assert validate_paths([out], ValidateOptions(workers=1)).ok


def test_workers_and_resume_give_identical_output(tmp_path: Path) -> None:
    src = build_docvqa_tree(tmp_path / "src", "parquet", extra_pages=40)
    run_conversion(DocVQAConverter(DocVQAOptions()), src, RunSettings(tmp_path / "one"))
    run_conversion(DocVQAConverter(DocVQAOptions()), src, RunSettings(tmp_path / "two", workers=2))
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    # Interrupted at page 20 (as Ctrl-C would), then rerun: identical output.
    partial = tmp_path / "partial"
    with pytest.raises(KeyboardInterrupt):
        run_conversion(Interrupting(DocVQAOptions()), src, RunSettings(partial))
    assert not (partial / "manifest.json").exists()
    summary = run_conversion(DocVQAConverter(DocVQAOptions()), src, RunSettings(partial))
    assert summary.resumed_shards == 1
    assert _tree(tmp_path / "one") == _tree(partial)


class Interrupting(DocVQAConverter):
    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        if item.split == "train" and item.index == 20:
            raise KeyboardInterrupt
        return super().process(item, output)


def test_link_hard_links_original_files(tmp_path: Path) -> None:
    src = build_docvqa_tree(tmp_path / "src", "old")
    out = tmp_path / "out"
    run_conversion(DocVQAConverter(DocVQAOptions(link=True)), src, RunSettings(out))
    linked = out / "images/docvqa/train/doc0000_1.png"
    assert linked.stat().st_ino == (src / "train/documents/doc0000_1.png").stat().st_ino


def test_cli_options_and_errors(tmp_path: Path) -> None:
    src = build_docvqa_tree(tmp_path / "src", "current")
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "convert",
            "docvqa",
            str(src),
            "-o",
            str(out),
            "-j",
            "1",
            "--prompt",
            "Q: {question}\\nA:",
        ],
    )
    assert result.exit_code == 0, result.output
    assert _records(out, "val")[0]["conversations"][0]["user"].startswith("Q: What is")
    bad = runner.invoke(app, ["convert", "docvqa", str(src), "-o", str(out), "--prompt", "{nope}"])
    assert bad.exit_code == 2 and "unknown field" in bad.output
    (src / "spdocvqa_qas/val_v1.0_withQT.json").write_text('{"data": [')
    broken = runner.invoke(app, ["convert", "docvqa", str(src), "-o", str(tmp_path / "o2")])
    text = broken.output.replace("\n", "")
    assert broken.exit_code == 2 and "val_v1.0_withQT.json: line 1, column 11" in text
