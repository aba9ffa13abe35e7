"""`phi3v convert video-folder` on tiny trees of clips in many containers and codecs."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import av
import orjson
import pytest
from PIL import Image
from typer.testing import CliRunner

from converters.converter import ConversionError
from converters.framework import RunSettings, run_conversion
from converters.output import MANIFEST
from converters.samples.ucf101 import frame_index_of
from converters.samples.video_folder import FORMATS, ClipInfo, build_video_folder_tree
from converters.sources.video_folder import VideoFolderConverter, VideoFolderOptions
from converters.video import sample_frame_indices
from phi3v_cli.app import app

CLASSES = ("Archery", "Basketball", "Drumming")
PROMPT = "Classify the video into one of the following classes: Archery, Basketball, Drumming."
CODEC_OF_FORMAT = {
    "mp4-h264": "h264",
    "webm-vp9": "vp9",
    "mkv-h264-vfr": "h264",
    "mov-h264": "h264",
    "avi-mpeg4": "mpeg4",
    "m4v-mpeg4": "mpeg4",
    "mp4-hevc": "hevc",
    "webm-vp8": "vp8",
    "mkv-av1": "av1",
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ClipInfo]]:
    root = tmp_path_factory.mktemp("vf") / "clips"
    return root, build_video_folder_tree(root, layout="classes")


@pytest.fixture(scope="module")
def converted(tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vf-out") / "out"
    _convert(tree[0], out)
    return out


def _convert(src: Path, out: Path, workers: int = 1, **options: object):
    options.setdefault("source", "clips")
    converter = VideoFolderConverter(VideoFolderOptions(**options))  # type: ignore[arg-type]
    return run_conversion(converter, src, RunSettings(out, workers=workers))


def _records(out: Path, split: str, source: str = "clips") -> list[dict]:
    path = out / f"{source}_{split}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _read_back(out: Path, record: dict) -> list[int]:
    images = record["conversations"][0]["images"]
    return [frame_index_of(Image.open(out / "images" / rel)) for rel in images]


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_class_layout_gives_exact_frames_in_every_container(tree, converted: Path) -> None:
    _, files = tree
    out = converted
    manifest = orjson.loads((out / MANIFEST).read_bytes())
    assert list(manifest["splits"]) == ["train"] and manifest["source"] == "clips"
    # Candidates are the visible files with a video extension directly in a class folder,
    # in (class, name) order; ids are their positions, so skipped ones leave gaps.
    candidates = sorted(
        (key for key, info in files.items() if info.kind in ("ok", "corrupt", "truncated")),
        key=lambda key: tuple(key.split("/")),
    )
    good = [key for key in candidates if files[key].kind == "ok"]
    records = _records(out, "train")
    assert [r["meta"]["file"] for r in records] == good
    assert [r["id"] for r in records] == [f"train-{candidates.index(k):010d}" for k in good]
    for record in records:
        key, meta = record["meta"]["file"], record["meta"]
        info = files[key]
        label, name = key.split("/")
        turn = record["conversations"][0]
        assert record["source"] == "clips" and turn["user"] == PROMPT
        assert turn["assistant"] == label == meta["label"]
        indices = sample_frame_indices(info.frames, 8)
        assert meta["frame_indices"] == indices and meta["frame_count"] == info.frames
        # clip.mp4 and clip.webm share a stem: their frames are named by the whole name.
        stem = name if name.startswith("clip.") else PurePosixPath(name).stem
        assert turn["images"] == [f"train/{label}/{stem}.{i}.jpg" for i in range(8)]
        assert _read_back(out, record) == indices, key
        assert meta["codec"] == CODEC_OF_FORMAT[info.format]
        if info.frame_ms is not None:  # variable frame rate: times from the stream
            assert meta["variable_frame_rate"] is True
            assert meta["timestamps"] == [info.frame_ms[i] / 1000 for i in indices]
        else:
            assert "variable_frame_rate" not in meta
            assert meta["timestamps"] == [round(i / 25, 3) for i in indices]
        if info.group is not None:
            assert "group" not in meta  # only recorded when groups split the files
    assert manifest["counters"]["frames"] == 8 * len(records)


def test_bad_hidden_and_stray_files_are_named_skips(tree, converted: Path) -> None:
    _, files = tree
    manifest = orjson.loads((converted / MANIFEST).read_bytes())
    reasons = {skip["item"]: skip["reason"] for skip in manifest["skips"]}
    assert reasons == {
        "Archery/corrupt.mp4": "corrupt",
        "Archery/empty.webm": "corrupt",
        "Archery/cut.avi": "truncated",
        "Archery/notes.txt": "not_a_video",
        "Archery/cover.jpg": "not_a_video",
        "Archery/extra/": "nested_folder",
        "stray.mp4": "not_in_class_folder",
    }
    assert {k for k, info in files.items() if info.kind not in ("ok", "hidden")} == {
        k.rstrip("/") + ("/inner.mp4" if k.endswith("/") else "") for k in reasons
    }
    text = (converted / MANIFEST).read_text() + (converted / "clips_train.jsonl").read_text()
    assert "hidden" not in text and "DS_Store" not in text  # ignored, not skipped
    assert manifest["splits"]["train"]["skipped"] == {
        "corrupt": 2,
        "nested_folder": 1,
        "not_a_video": 2,
        "not_in_class_folder": 1,
        "truncated": 1,
    }


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda fmt: fmt.name)
def test_each_codec_is_read(tree, converted: Path, fmt) -> None:
    if fmt.encoder not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {fmt.encoder} encoder to make a {fmt.name} clip")
    _, files = tree
    keys = [key for key, info in files.items() if info.format == fmt.name and info.kind == "ok"]
    assert keys, f"the sample tree has no {fmt.name} clip"
    by_file = {r["meta"]["file"]: r for r in _records(converted, "train")}
    for key in keys:
        assert by_file[key]["meta"]["codec"] == CODEC_OF_FORMAT[fmt.name]
        assert _read_back(converted, by_file[key]) == by_file[key]["meta"]["frame_indices"]


def _frames_on_screen(frame_ms: tuple[int, ...], per_second: int) -> list[int]:
    """The frame shown at 0, 1/k, 2/k... s (an independent statement of --sampling fps)."""
    end = frame_ms[-1] + (frame_ms[-1] - frame_ms[-2])
    picked: list[int] = []
    step = 1000 // per_second
    for t in range(0, end, step):
        index = max(i for i, ms in enumerate(frame_ms) if ms <= t)
        if index not in picked:
            picked.append(index)
    return picked


def test_fps_sampling_uses_timestamps_on_variable_rate_clips(tree, tmp_path: Path) -> None:
    src, files = tree
    variable = [key for key, info in files.items() if info.frame_ms and info.kind == "ok"]
    if not variable:
        pytest.skip("no libx264 encoder here to make the variable-rate sample clip")
    label = variable[0].split("/")[0]
    out = tmp_path / "out"
    _convert(src, out, sampling="fps", num_frames=5, max_frames=64, classes=(label,))
    records = _records(out, "train")
    assert variable[0] in {r["meta"]["file"] for r in records}
    for record in records:
        info, meta = files[record["meta"]["file"]], record["meta"]
        if info.frame_ms is not None:
            expected = _frames_on_screen(info.frame_ms, 5)
        else:
            expected = sample_frame_indices(info.frames, 5, "fps", 25.0)
        assert meta["frame_indices"] == expected
        assert _read_back(out, record) == expected
    assert all(r["conversations"][0]["user"].endswith(f"classes: {label}.") for r in records)


def test_split_layout(tmp_path: Path) -> None:
    src = tmp_path / "by_split"
    files = build_video_folder_tree(src, layout="splits", groups=(1, 2, 3))
    out = tmp_path / "out"
    summary = _convert(src, out, num_frames=3, sampling="center")
    assert list(summary.splits) == ["train", "val", "test"]
    for split in ("train", "val", "test"):
        good = sorted(
            (k for k, info in files.items() if k.startswith(f"{split}/") and info.kind == "ok"),
            key=lambda key: tuple(key.split("/")),
        )
        records = _records(out, split)
        assert [r["meta"]["file"] for r in records] == good
        for record in records:
            info = files[record["meta"]["file"]]
            assert record["conversations"][0]["user"] == PROMPT
            assert record["conversations"][0]["images"][0].startswith(f"{split}/")
            assert record["meta"]["frame_indices"] == sample_frame_indices(info.frames, 3, "center")
            assert _read_back(out, record) == record["meta"]["frame_indices"]
    assert summary.splits["train"].skipped == {
        "corrupt": 2,
        "nested_folder": 1,
        "not_a_video": 2,
        "not_in_class_folder": 1,
        "truncated": 1,
    }
    with pytest.raises(ConversionError, match="own split folders"):
        _convert(src, tmp_path / "other", val_fraction=0.2)


def test_val_and_test_take_whole_groups(tree, tmp_path: Path) -> None:
    src, files = tree
    out = tmp_path / "out"
    summary = _convert(src, out, val_fraction=0.2, test_fraction=0.2, num_frames=2)
    assert list(summary.splits) == ["train", "val", "test"]
    split_of_group: dict[str, set[str]] = {}
    seen = []
    for split in ("train", "val", "test"):
        for record in _records(out, split):
            key = record["meta"]["file"]
            seen.append(key)
            group = record["meta"].get("group", f"file:{key}")
            if files[key].group is not None:  # v_<Class>_gGG_c01: UCF-style group GG
                assert group == str(files[key].group)
            split_of_group.setdefault(group, set()).add(split)
            assert record["conversations"][0]["images"][0].startswith(f"{split}/")
    assert sorted(seen) == sorted(k for k, info in files.items() if info.kind == "ok")
    for skip in summary.skips:  # clips that failed to decode were assigned a split too
        if skip.reason in ("corrupt", "truncated"):
            split_of_group.setdefault(f"file:{skip.item}", set()).add(skip.split)
    assert all(len(splits) == 1 for splits in split_of_group.values())  # no straddling
    # Groups span classes (g01 is in every class), so they are cut across all classes:
    # 4 UCF groups + 5 files without one (clip.mp4, clip.webm, corrupt, cut, empty) = 9;
    # round(0.2 x 9) = 2 groups each to val and test.
    counts = {
        s: sum(1 for splits in split_of_group.values() if s in splits) for s in summary.splits
    }
    assert counts == {"train": 5, "val": 2, "test": 2}
    again = tmp_path / "again"
    _convert(src, again, val_fraction=0.2, test_fraction=0.2, num_frames=2, workers=2)
    assert _tree_digest(out) == _tree_digest(again)  # deterministic, for any -j
    other_seed = tmp_path / "seed"
    _convert(src, other_seed, val_fraction=0.2, test_fraction=0.2, num_frames=2, split_seed=7)
    assert _tree_digest(out) != _tree_digest(other_seed)


def test_one_and_two_workers_give_identical_output_and_resume(tree, tmp_path: Path) -> None:
    src, _ = tree
    one, two = tmp_path / "one", tmp_path / "two"
    _convert(src, one, workers=1, max_side=32)
    _convert(src, two, workers=2, max_side=32)
    assert _tree_digest(one) == _tree_digest(two)
    assert _convert(src, two, workers=2, max_side=32).already_complete


def test_cli_defaults_source_to_the_folder_name_and_fills_the_prompt(tree, tmp_path: Path) -> None:
    src, _ = tree
    runner = CliRunner()
    out = tmp_path / "out"
    base = ["convert", "video-folder", str(src), "-o", str(out), "-j", "1"]
    result = runner.invoke(
        app,
        [
            *base,
            "--classes",
            "Basketball,Drumming",
            "--num-frames",
            "2",
            "--prompt",
            "Which sport is this? {classes}",
        ],
    )
    assert result.exit_code == 0, result.output
    records = _records(out, "train", source="clips")
    assert {r["meta"]["label"] for r in records} == {"Basketball", "Drumming"}
    assert {r["conversations"][0]["user"] for r in records} == {
        "Which sport is this? Basketball, Drumming"
    }
    assert all(len(r["conversations"][0]["images"]) == 2 for r in records)
    bad_prompt = runner.invoke(app, [*base, "--prompt", "What is {label}?", "--overwrite"])
    assert bad_prompt.exit_code == 2 and "{classes}" in bad_prompt.output
    lone_regex = runner.invoke(app, [*base, "--group-regex", "g(\\d+)", "--overwrite"])
    assert lone_regex.exit_code == 2 and "--val-fraction" in lone_regex.output
    unknown = runner.invoke(app, [*base, "--classes", "Juggling", "--overwrite"])
    assert unknown.exit_code == 2 and "Juggling" in unknown.output


def test_unusable_folders_are_clear_errors(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.mp4").write_bytes(b"")
    with pytest.raises(ConversionError, match="no video file in any class folder"):
        _convert(flat, tmp_path / "out1")
    mixed = tmp_path / "mixed"
    for folder in ("train", "Archery"):
        (mixed / folder).mkdir(parents=True)
    with pytest.raises(ConversionError, match="mixes split folders"):
        _convert(mixed, tmp_path / "out2")
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
