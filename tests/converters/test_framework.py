"""The converter framework with a toy source: determinism, resume, skips, manifest; and the
shared `phi3v convert` behaviour on real sample trees: --overwrite, all-skipped runs, reruns."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import phi3v_cli.convert
from converters.converter import (
    ConversionError,
    Converter,
    ItemResult,
    NothingConverted,
    OutputContext,
    Plan,
    Skip,
    WorkItem,
)
from converters.framework import RunSettings, run_conversion
from converters.output import MANIFEST, VALIDATION_RECORD, WORK_DIR
from converters.samples.docvqa import build_docvqa_tree
from converters.samples.hateful_memes import build_hateful_memes_tree
from converters.samples.nlvr2 import build_nlvr2_tree
from phi3v_cli.app import app
from phi3v_data.records import Record, Turn
from phi3v_data.validate import ValidateOptions, validate_paths

# Set by a test to make the in-process run stop at this item, as Ctrl-C would.
INTERRUPT_AT: int | None = None


@dataclass(frozen=True)
class ToyOptions:
    prefix: str = "toy"


class ToyConverter(Converter):
    name = "toy"

    def plan(self, src: Path) -> Plan:
        lines = (src / "items.txt").read_text().split()
        splits = {
            "train": [WorkItem("train", i, f"items.txt:{i + 1}", v) for i, v in enumerate(lines)]
        }
        return Plan(
            splits=splits, skips=[Skip("train", "gone.txt", "missing", "listed, not on disk")]
        )

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        if INTERRUPT_AT is not None and item.index == INTERRUPT_AT:
            raise KeyboardInterrupt
        if item.payload == "bad":
            return ItemResult(skips=[Skip(item.split, item.key, "bad_item", "the item says bad")])
        rel = output.write_image(f"train/{item.payload}.bin", item.payload.encode())
        record = Record(
            id=f"{self.options.prefix}-{item.index:04d}",
            source="toy",
            conversations=(Turn(user="What?", assistant=item.payload, images=(rel,)),),
        )
        result = ItemResult(records=[record])
        result.counters["images"] += 1
        return result


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def toy_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    items = [f"item{i}" if i % 7 else "bad" for i in range(1, 60)]
    (src / "items.txt").write_text("\n".join(items))
    return src


def test_output_layout_and_manifest(toy_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    lines = (out / "toy_train.jsonl").read_bytes().splitlines()
    assert len(lines) == 51 and summary.records == 51
    first = orjson.loads(lines[0])
    assert first["id"] == "toy-0000" and first["conversations"][0]["images"] == ["train/item1.bin"]
    manifest = orjson.loads((out / MANIFEST).read_bytes())
    assert manifest["splits"]["train"]["records"] == 51
    assert manifest["splits"]["train"]["skipped"] == {"bad_item": 8, "missing": 1}
    digest = hashlib.sha256((out / "toy_train.jsonl").read_bytes()).hexdigest()
    assert manifest["splits"]["train"]["sha256"] == digest
    assert manifest["options"] == {"prefix": "toy"}
    assert not (out / WORK_DIR).exists()


def test_workers_give_identical_output(toy_src: Path, tmp_path: Path) -> None:
    run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(tmp_path / "one", workers=1))
    run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(tmp_path / "two", workers=2))
    assert _tree_digest(tmp_path / "one") == _tree_digest(tmp_path / "two")


def test_interrupted_run_resumes_to_identical_output(toy_src: Path, tmp_path: Path) -> None:
    global INTERRUPT_AT
    run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(tmp_path / "clean"))
    out = tmp_path / "out"
    INTERRUPT_AT = 37
    try:
        with pytest.raises(KeyboardInterrupt):
            run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    finally:
        INTERRUPT_AT = None
    assert not (out / MANIFEST).exists()
    assert len(list((out / WORK_DIR / "train").iterdir())) == 2  # shards 0 and 1 finished
    stray = out / "images" / "train" / ".item99.bin.x.tmp"
    stray.write_bytes(b"half")
    summary = run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    assert summary.resumed_shards == 2
    assert not stray.exists()
    assert _tree_digest(tmp_path / "clean") == _tree_digest(out)


def test_finished_output_is_kept_or_replaced(toy_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    again = run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    assert again.already_complete and again.records == 51
    with pytest.raises(ConversionError, match="--overwrite"):
        run_conversion(ToyConverter(ToyOptions(prefix="other")), toy_src, RunSettings(out))
    (out / "notes.txt").write_text("mine")
    redone = run_conversion(
        ToyConverter(ToyOptions(prefix="other")), toy_src, RunSettings(out, overwrite=True)
    )
    assert not redone.already_complete
    assert (
        orjson.loads((out / "toy_train.jsonl").read_bytes().splitlines()[0])["id"] == "other-0000"
    )
    assert (out / "notes.txt").read_text() == "mine"


def test_converter_exception_becomes_a_skip(toy_src: Path, tmp_path: Path) -> None:
    class Broken(ToyConverter):
        def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
            if item.index == 3:
                raise RuntimeError("boom")
            return super().process(item, output)

    summary = run_conversion(Broken(ToyOptions()), toy_src, RunSettings(tmp_path / "out"))
    assert summary.splits["train"].skipped["converter_error"] == 1
    assert any(skip.detail == "RuntimeError: boom" for skip in summary.skips)


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="does not exist"):
        run_conversion(ToyConverter(ToyOptions()), tmp_path / "nope", RunSettings(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_tampered_output_is_not_taken_as_finished(toy_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    jsonl = out / "toy_train.jsonl"
    jsonl.write_bytes(jsonl.read_bytes().replace(b"item1", b"item0", 1))
    with pytest.raises(ConversionError, match=r"toy_train\.jsonl differs.*--overwrite"):
        run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    jsonl.unlink()
    with pytest.raises(ConversionError, match=r"toy_train\.jsonl is missing"):
        run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    redone = run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out, overwrite=True))
    assert not redone.already_complete and redone.records == 51
    assert run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out)).already_complete


def test_every_item_skipped_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "items.txt").write_text("bad bad bad")
    out = tmp_path / "out"
    with pytest.raises(
        NothingConverted, match=r"all 4 inputs were skipped \(bad_item: 3, missing: 1"
    ):
        run_conversion(ToyConverter(ToyOptions()), src, RunSettings(out))
    assert not out.exists()  # created by the run, left as it was: absent


def test_files_not_written_by_a_conversion_stop_it(toy_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "mine.png").write_bytes(b"user data")
    with pytest.raises(ConversionError, match=r"did not write: images/"):
        run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out, overwrite=True))
    assert (out / "images" / "mine.png").read_bytes() == b"user data"
    done = tmp_path / "done"
    run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(done))
    (done / "extra.jsonl").write_text("{}\n")
    for overwrite in (False, True):
        with pytest.raises(ConversionError, match=r"did not write: extra\.jsonl"):
            run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(done, overwrite))
    assert (done / "extra.jsonl").exists() and (done / MANIFEST).exists()
    foreign_manifest = tmp_path / "foreign"
    foreign_manifest.mkdir()
    (foreign_manifest / MANIFEST).write_text('{"files": []}')
    with pytest.raises(ConversionError, match="not a manifest written by"):
        run_conversion(
            ToyConverter(ToyOptions()), toy_src, RunSettings(foreign_manifest, overwrite=True)
        )
    assert (foreign_manifest / MANIFEST).read_text() == '{"files": []}'


# --- `phi3v convert` on sample trees -------------------------------------------------------


def _flat(text: str) -> str:
    """CLI output without any whitespace: rich wraps long lines and paths anywhere."""
    return "".join(text.split())


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every folder the convert command validated (through `phi3v_cli.convert.validate_output`)."""
    calls: list[Path] = []
    original = phi3v_cli.convert.validate_output

    def counting(out_dir: Path, workers: int) -> bool:
        calls.append(out_dir)
        return original(out_dir, workers)

    monkeypatch.setattr(phi3v_cli.convert, "validate_output", counting)
    return calls


def test_overwrite_with_another_source_leaves_only_the_new_conversion(
    tmp_path: Path, validations: list[Path]
) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    docvqa = build_docvqa_tree(tmp_path / "docvqa", "current")
    memes = build_hateful_memes_tree(tmp_path / "memes", "original")
    first = runner.invoke(app, ["convert", "docvqa", str(docvqa), "-o", str(out), "-j", "1"])
    assert first.exit_code == 0, first.output
    assert (out / "docvqa_train.jsonl").exists() and (out / "images" / "docvqa").is_dir()
    (out / "notes.txt").write_text("mine")
    memes_args = ["convert", "hateful-memes", str(memes), "-o", str(out), "-j", "1"]
    refused = runner.invoke(app, memes_args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    replaced = runner.invoke(app, [*memes_args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in out.glob("*.jsonl")) == [
        f"hateful_memes_{split}.jsonl"
        for split in sorted(["train", "dev_seen", "dev_unseen", "test_seen", "test_unseen"])
    ]
    assert [p.name for p in (out / "images").iterdir()] == ["hateful_memes"]
    assert orjson.loads((out / MANIFEST).read_bytes())["source"] == "hateful_memes"
    assert (out / "notes.txt").read_text() == "mine"
    flat = _flat(replaced.output)
    assert _flat("removed the previous conversion") in flat and "docvqa_train.jsonl" in flat
    assert _flat("left alone (not written by a conversion): notes.txt") in flat
    assert _flat("OK: 13 records in 5 files, no problems.") in flat
    assert "image_missing" not in flat.split(_flat("phi3v validate"))[-1]
    report = validate_paths([out], ValidateOptions(workers=1))
    assert report.ok and not report.problems, report.counts_by_code()
    assert validations == [out, out]


def test_all_skipped_conversion_fails_with_the_reasons(tmp_path: Path) -> None:
    src = build_nlvr2_tree(tmp_path / "nlvr2", "lil-lab")
    for folder in ("images", "dev", "test1"):  # annotations without any image
        shutil.rmtree(src / folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", "nlvr2", str(src), "-o", str(out), "-j", "1"])
    assert result.exit_code == 1, result.output
    flat = _flat(result.output)
    assert _flat("error: no records: all 13 inputs were skipped (image_missing: 10,") in flat
    assert _flat("skipped: image_missing x10") in flat
    assert (
        _flat("[train] train.json:1: left image: train-100-0-0: train-100-0-img0.png not found")
        in flat
    )
    assert "clean" not in flat and not out.exists()


def test_split_without_records_is_a_warning(tmp_path: Path) -> None:
    src = build_nlvr2_tree(tmp_path / "nlvr2", "lil-lab")
    shutil.rmtree(src / "dev")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", "nlvr2", str(src), "-o", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert _flat("warning: split dev has no records (nlvr2_dev.jsonl is empty): all 2") in flat
    assert _flat("(image_missing: 2)") in flat


def test_rerun_of_an_unchanged_conversion_does_nothing(
    tmp_path: Path, validations: list[Path]
) -> None:
    runner = CliRunner()
    src = build_docvqa_tree(tmp_path / "docvqa", "current")
    out = tmp_path / "out"
    args = ["convert", "docvqa", str(src), "-o", str(out), "-j", "1"]
    assert runner.invoke(app, args).exit_code == 0
    assert validations == [out] and (out / VALIDATION_RECORD).exists()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    expected = f"{out} is already converted with the same options; nothing to do (--overwrite"
    assert _flat(expected) in _flat(again.output)
    assert validations == [out]  # not validated again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # A rerun after a failed (or never run) validation validates, then remembers the verdict.
    record = orjson.loads((out / VALIDATION_RECORD).read_bytes())
    (out / VALIDATION_RECORD).write_bytes(orjson.dumps({**record, "passed": False}))
    third = runner.invoke(app, args)
    assert third.exit_code == 0 and _flat("failed its last validation") in _flat(third.output)
    assert validations == [out, out]
    assert runner.invoke(app, args).exit_code == 0 and validations == [out, out]


def test_rerun_after_the_jsonl_changed_is_not_taken_as_done(
    tmp_path: Path, validations: list[Path]
) -> None:
    runner = CliRunner()
    src = build_docvqa_tree(tmp_path / "docvqa", "current")
    out = tmp_path / "out"
    args = ["convert", "docvqa", str(src), "-o", str(out), "-j", "1"]
    assert runner.invoke(app, args).exit_code == 0
    val = out / "docvqa_val.jsonl"
    val.write_bytes(val.read_bytes().splitlines(keepends=True)[0])  # a record removed by hand
    tampered = runner.invoke(app, args)
    assert tampered.exit_code == 2
    flat = _flat(tampered.output)
    assert _flat("docvqa_val.jsonl differs") in flat and "nothingtodo" not in flat
    assert validations == [out]
    redo = runner.invoke(app, [*args, "--overwrite"])
    assert redo.exit_code == 0, redo.output
    assert len(val.read_bytes().splitlines()) == 2 and validations == [out, out]


def test_overwrite_replaces_an_interrupted_run_of_another_source(
    toy_src: Path, tmp_path: Path
) -> None:
    global INTERRUPT_AT

    class Other(ToyConverter):
        name = "other"

    out = tmp_path / "out"
    INTERRUPT_AT = 37
    try:
        with pytest.raises(KeyboardInterrupt):
            run_conversion(ToyConverter(ToyOptions()), toy_src, RunSettings(out))
    finally:
        INTERRUPT_AT = None
    (out / "toy_train.jsonl").write_text("")  # as if killed while the JSONL was written
    with pytest.raises(ConversionError, match="unfinished conversion"):
        run_conversion(Other(ToyOptions()), toy_src, RunSettings(out))
    summary = run_conversion(Other(ToyOptions()), toy_src, RunSettings(out, overwrite=True))
    assert summary.records == 51 and "toy_train.jsonl" in summary.removed
    assert sorted(p.name for p in out.iterdir()) == ["images", MANIFEST, "other_train.jsonl"]
