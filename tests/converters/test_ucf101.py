"""`phi3v convert ucf101` on tiny real AVI trees in both layouts."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from PIL import Image
from typer.testing import CliRunner

from converters.converter import ConversionError
from converters.framework import RunSettings, run_conversion
from converters.output import MANIFEST, WORK_DIR
from converters.samples.ucf101 import ClipSpec, build_ucf101_tree, frame_index_of
from converters.sources.ucf101 import UCF101Converter, UCF101Options
from converters.video import sample_frame_indices
from phi3v_cli.app import app

PROMPT = (
    "Classify the video into one of the following classes: "
    "ApplyEyeMakeup, Archery, HandstandPushups."
)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ClipSpec]]:
    root = tmp_path_factory.mktemp("ucf") / "UCF101"
    return root, build_ucf101_tree(root, layout="original")


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ClipSpec]]:
    root = tmp_path_factory.mktemp("ucf") / "UCF101_subset"
    return root, build_ucf101_tree(root, layout="subset", groups=(2, 6, 9, 13))


def _convert(src: Path, out: Path, workers: int = 1, **options: object):
    converter = UCF101Converter(UCF101Options(**options))  # type: ignore[arg-type]
    return run_conversion(converter, src, RunSettings(out, workers=workers))


def _records(out: Path, split: str) -> list[dict]:
    return [
        orjson.loads(line) for line in (out / f"ucf101_{split}.jsonl").read_bytes().splitlines()
    ]


def _group(key: str) -> int:
    return int(key.split("_g")[1][:2])


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_original_layout_reproduces_the_reference(original, tmp_path: Path) -> None:
    src, clips = original
    out = tmp_path / "out"
    summary = _convert(src, out)
    train_keys = sorted(k for k in clips if _group(k) > 7)
    test_keys = sorted(k for k in clips if _group(k) <= 7 and clips[k].kind != "missing")
    train = _records(out, "train")
    assert [r["meta"]["clip"] for r in train] == train_keys
    assert [r["id"] for r in train] == [f"train-{i:010d}" for i in range(len(train_keys))]
    test = _records(out, "test")
    good_test = [k for k in test_keys if clips[k].kind == "ok"]
    # Ids are positions in the split's sorted list: skipped clips leave gaps, never shifts.
    assert [r["id"] for r in test] == [f"test-{test_keys.index(k):010d}" for k in good_test]
    for record in train + test:
        turn = record["conversations"][0]
        label, name = record["meta"]["clip"].split("/")
        assert record["source"] == "ucf101" and turn["user"] == PROMPT
        assert turn["assistant"] == label  # from the folder, never from the file name
        spec = clips[record["meta"]["clip"]]
        indices = sample_frame_indices(spec.frames, 8)
        assert record["meta"]["frame_indices"] == indices
        assert record["meta"]["frame_count"] == spec.frames
        split = record["id"].split("-")[0]
        stem = name.removesuffix(".avi")
        assert turn["images"] == [f"{split}/{label}/{stem}.{i}.jpg" for i in range(8)]
        read_back = [frame_index_of(Image.open(out / "images" / rel)) for rel in turn["images"]]
        assert read_back == indices
    quirk = next(r for r in train if r["meta"]["label"] == "HandstandPushups")
    assert quirk["conversations"][0]["images"][0].startswith(
        "train/HandstandPushups/v_HandStandPushups_g"
    )
    manifest = orjson.loads((out / MANIFEST).read_bytes())
    assert manifest["splits"]["train"]["skipped"] == {}
    assert manifest["splits"]["test"]["skipped"] == {
        "corrupt": 1,
        "missing_file": 1,
        "no_frames": 1,
        "truncated": 1,
    }
    truncated = next(s for s in summary.skips if s.reason == "truncated")
    assert "header says 40 frames" in truncated.detail
    missing = next(s for s in summary.skips if s.reason == "missing_file")
    assert "testlist01.txt:" in missing.detail
    assert manifest["counters"]["frames"] == 8 * (len(train) + len(test))
    assert manifest["options"]["num_frames"] == 8 and manifest["options"]["decoder"] == "pyav"


def test_subset_layout(subset, tmp_path: Path) -> None:
    src, clips = subset
    out = tmp_path / "out"
    summary = _convert(src, out)
    assert list(summary.splits) == ["train", "val", "test"]
    for split in ("train", "val", "test"):
        keys = sorted(k for k, spec in clips.items() if k.startswith(split + "/"))
        good = [k for k in keys if clips[k].kind == "ok"]
        records = _records(out, split)
        assert [f"{split}/{r['meta']['clip']}" for r in records] == good
        assert all(r["conversations"][0]["user"] == PROMPT for r in records)
        assert all(r["conversations"][0]["assistant"] == r["meta"]["label"] for r in records)
    assert summary.splits["train"].skipped == {"corrupt": 1, "no_frames": 1, "truncated": 1}
    with pytest.raises(ConversionError, match="drop --val-fraction"):
        _convert(src, tmp_path / "other", val_fraction=0.2)


def test_val_is_carved_by_group(original, tmp_path: Path) -> None:
    src, _ = original
    out = tmp_path / "out"
    _convert(src, out, val_fraction=0.3, classes=("Archery", "HandstandPushups"))
    groups = {
        split: {_group(r["meta"]["clip"]) for r in _records(out, split)}
        for split in ("train", "val", "test")
    }
    # Train groups of split 1 here: 8, 12, 16, 20, 23, 25; 30 % of 6 -> the top 2.
    assert groups == {"train": {8, 12, 16, 20}, "val": {23, 25}, "test": {1, 5}}
    labels = {r["meta"]["label"] for split in groups for r in _records(out, split)}
    assert labels == {"Archery", "HandstandPushups"}
    prompt = _records(out, "val")[0]["conversations"][0]["user"]
    assert prompt.endswith("classes: Archery, HandstandPushups.")


def test_split_id_prompt_and_frame_options(original, tmp_path: Path) -> None:
    src, clips = original
    out = tmp_path / "out"
    _convert(
        src,
        out,
        split_id=2,
        classes=("Archery",),
        prompt="Which action is this?",
        num_frames=4,
        sampling="center",
        max_side=32,
        jpeg_quality=90,
    )
    test = _records(out, "test")
    assert {_group(r["meta"]["clip"]) for r in test} == {8, 12}
    for record in test:
        assert record["conversations"][0]["user"] == "Which action is this?"
        spec = clips[record["meta"]["clip"]]
        assert record["meta"]["frame_indices"] == sample_frame_indices(spec.frames, 4, "center")
        image = Image.open(out / "images" / record["conversations"][0]["images"][0])
        assert image.size == (32, 24)


def _copy_lists(original, tmp_path: Path) -> Path:
    lists = tmp_path / "lists"
    shutil.copytree(original[0] / "ucfTrainTestlist", lists)
    return lists


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        (
            "classInd.txt",
            lambda t: t.replace(b"2 Archery", b"2Archery"),
            r"classInd.txt:2: expected",
        ),
        (
            "trainlist01.txt",
            lambda t: t.replace(b".avi 2\r\n", b".avi 3\r\n", 1),
            r"trainlist01.txt:\d+: label 3 does not match 'Archery'",
        ),
        (
            "trainlist01.txt",
            lambda t: t + b"Juggling/v_Juggling_g08_c01.avi 4\r\n",
            r"trainlist01.txt:\d+: class 'Juggling' is not in classInd.txt",
        ),
        ("trainlist01.txt", lambda t: t + b"../x.avi 1\r\n", r"trainlist01.txt:\d+: '../x.avi'"),
        ("testlist01.txt", None, r"testlist01.txt: split list not found"),
    ],
)
def test_bad_split_lists_are_clear_errors(original, tmp_path: Path, file, edit, message) -> None:
    lists = _copy_lists(original, tmp_path)
    if edit is None:
        (lists / file).unlink()
    else:
        (lists / file).write_bytes(edit((lists / file).read_bytes()))
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=message):
        _convert(original[0], out, split_lists=lists)
    assert not out.exists()  # nothing half-written


def test_allow_truncated_samples_what_decodes(original, tmp_path: Path) -> None:
    src, _ = original
    out = tmp_path / "out"
    summary = _convert(src, out, allow_truncated=True, classes=("ApplyEyeMakeup",))
    record = next(r for r in _records(out, "test") if r["meta"]["clip"].endswith("_c90.avi"))
    meta = record["meta"]
    decodable = meta["truncated"]["decodable_frames"]
    assert meta["truncated"]["header_frames"] == 40 and 0 < decodable < 40
    assert meta["frame_count"] == decodable
    assert meta["frame_indices"] == sample_frame_indices(decodable, 8)
    read_back = [
        frame_index_of(Image.open(out / "images" / rel))
        for rel in record["conversations"][0]["images"]
    ]
    assert read_back == meta["frame_indices"]
    assert summary.counters["truncated_kept"] == 1
    assert "truncated" not in summary.splits["test"].skipped


def test_decord_is_used_only_where_exact(original, tmp_path: Path) -> None:
    src, clips = original
    out = tmp_path / "out"
    summary = _convert(src, out, decoder="decord")
    records = _records(out, "train") + _records(out, "test")
    fallbacks = 0
    for record in records:
        meta = record["meta"]
        if clips[meta["clip"]].b_frames:
            assert (meta["decoder"], meta["decoder_note"]) == ("pyav", "decord unsafe: B-frames")
            fallbacks += 1
        else:
            assert meta["decoder"] == "decord" and "decoder_note" not in meta
        read_back = [
            frame_index_of(Image.open(out / "images" / rel))
            for rel in record["conversations"][0]["images"]
        ]
        assert read_back == meta["frame_indices"]
    assert fallbacks > 0 and summary.counters["decord_fallback"] == fallbacks


def test_one_and_two_workers_give_identical_output(original, tmp_path: Path) -> None:
    src, _ = original
    _convert(src, tmp_path / "one", workers=1)
    _convert(src, tmp_path / "two", workers=2)
    assert _tree_digest(tmp_path / "one") == _tree_digest(tmp_path / "two")


def _cli(src: Path, out: Path) -> list[str]:
    code = "from phi3v_cli.app import main; main()"
    options = ["-o", str(out), "--workers", "1", "--no-validate"]
    return [sys.executable, "-c", code, "convert", "ucf101", str(src), *options]


def test_kill_9_at_several_points_then_rerun_gives_identical_output(
    original, tmp_path: Path
) -> None:
    src, _ = original
    clean = tmp_path / "clean"
    _convert(src, clean)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    kill_after = [
        lambda: (out / WORK_DIR / "run.json").exists(),  # planned, nothing converted
        lambda: len(list((out / WORK_DIR).rglob("0*.json"))) >= 1,  # after one shard
        lambda: len(list((out / WORK_DIR).rglob("0*.json"))) >= 2,  # after two shards
    ]
    killed = 0
    for reached in kill_after:
        process = subprocess.Popen(_cli(src, out), env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if reached():
                    process.send_signal(signal.SIGKILL)
                    break
            except FileNotFoundError:
                pass  # the work folder appeared and vanished in between
            time.sleep(0.002)
        if process.wait() == -signal.SIGKILL:
            killed += 1
            assert not (out / MANIFEST).exists()
    assert killed >= 2  # the run was really interrupted (timing permits at least two)
    finished = subprocess.run(_cli(src, out), env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert _tree_digest(out) == _tree_digest(clean)


def test_cli_converts_and_reports_errors(original, tmp_path: Path) -> None:
    src, _ = original
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["convert", "ucf101", str(src), "-o", str(out), "--no-validate", "-j", "1"]
    result = runner.invoke(
        app, [*args, "--classes", "Archery,HandstandPushups", "--num-frames", "2"]
    )
    assert result.exit_code == 0, result.output
    records = _records(out, "train")
    assert {r["meta"]["label"] for r in records} == {"Archery", "HandstandPushups"}
    assert all(len(r["conversations"][0]["images"]) == 2 for r in records)
    bad = runner.invoke(app, [*args, "--classes", "Juggling", "--overwrite"])
    assert bad.exit_code == 2 and "Juggling" in bad.output
    unknown = runner.invoke(app, [*args, "--layout", "subset", "--overwrite"])
    assert unknown.exit_code == 2 and "no class folders" in unknown.output


def test_video_folder_itself_with_lists_beside_it(original, tmp_path: Path) -> None:
    src, _ = original
    _convert(src, tmp_path / "root", classes=("Archery",))
    _convert(src / "UCF-101", tmp_path / "inner", classes=("Archery",))
    for split in ("train", "test"):
        name = f"ucf101_{split}.jsonl"
        assert (tmp_path / "inner" / name).read_bytes() == (tmp_path / "root" / name).read_bytes()
    with pytest.raises(ConversionError, match="cannot tell the layout"):
        _convert(src / "UCF-101" / "Archery", tmp_path / "nowhere")
