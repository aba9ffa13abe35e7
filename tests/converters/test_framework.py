"""The converter framework with a toy source: determinism, resume, skips, manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from converters.framework import (
    MANIFEST,
    WORK_DIR,
    ConversionError,
    Converter,
    ItemResult,
    OutputContext,
    Plan,
    RunSettings,
    Skip,
    WorkItem,
    run_conversion,
)
from phi3v_data.records import Record, Turn

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
