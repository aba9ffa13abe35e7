"""`phi3v convert image-folder` on tiny trees of real PNG, JPEG, WEBP, BMP, GIF and TIFF files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import orjson
import pytest
from PIL import Image
from typer.testing import CliRunner

from converters.converter import ConversionError
from converters.framework import RunSettings, run_conversion
from converters.output import MANIFEST
from converters.samples.image_folder import ImageInfo, build_image_folder_tree
from converters.sources.image_folder import ImageFolderConverter, ImageFolderOptions
from phi3v_cli.app import app

PROMPT = "Classify the image into one of the following classes: bird, cat, dog."
EXTENSION = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}
EXTENSION["TIFF"] = ".tif"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ImageInfo]]:
    root = tmp_path_factory.mktemp("if") / "pets"
    return root, build_image_folder_tree(root, layout="classes")


def _convert(src: Path, out: Path, workers: int = 1, **options: object):
    options.setdefault("source", "pets")
    converter = ImageFolderConverter(ImageFolderOptions(**options))  # type: ignore[arg-type]
    return run_conversion(converter, src, RunSettings(out, workers=workers))


def _records(out: Path, split: str, source: str = "pets") -> list[dict]:
    path = out / f"{source}_{split}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _order(key: str) -> tuple[str, ...]:
    return tuple(key.split("/"))


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_class_layout_copies_checked_images(tree, tmp_path: Path) -> None:
    src, files = tree
    out = tmp_path / "out"
    summary = _convert(src, out)
    assert list(summary.splits) == ["train"]
    candidates = sorted(
        (k for k, info in files.items() if info.kind in ("ok", "corrupt", "not_image", "empty")),
        key=_order,
    )
    good = [k for k in candidates if files[k].kind == "ok"]
    records = _records(out, "train")
    assert [r["meta"]["file"] for r in records] == good
    assert [r["id"] for r in records] == [f"train-{candidates.index(k):010d}" for k in good]
    for record in records:
        key, meta = record["meta"]["file"], record["meta"]
        label, name = key.split("/")
        turn = record["conversations"][0]
        assert record["source"] == "pets" and turn["user"] == PROMPT
        assert turn["assistant"] == label == meta["label"]
        # Stored under its real format's extension; pic.png and pic.jpg keep whole names.
        stem = name if name.startswith("pic.") else PurePosixPath(name).stem
        real = files[key].format
        assert turn["images"] == [f"train/{label}/{stem}{EXTENSION[real]}"]
        stored = out / "images" / turn["images"][0]
        assert stored.read_bytes() == (src / key).read_bytes()
        assert (meta["format"], meta["width"], meta["height"]) == (real, 48, 32)
        with Image.open(stored) as image:
            assert image.format == real
    disguised = next(r for r in records if r["meta"]["file"].endswith("disguised.png"))
    assert disguised["conversations"][0]["images"] == ["train/bird/disguised.jpg"]


def test_bad_and_hidden_files(tree, tmp_path: Path) -> None:
    src, _ = tree
    out = tmp_path / "out"
    summary = _convert(src, out)
    reasons = {skip.item: skip.reason for skip in summary.skips}
    assert reasons == {
        "bird/broken.jpg": "image_corrupt",
        "bird/fake.png": "image_not_image",
        "bird/empty.png": "image_empty",
        "bird/notes.txt": "not_an_image",
    }
    text = (out / MANIFEST).read_text() + (out / "pets_train.jsonl").read_text()
    assert ".hidden" not in text and "Thumbs" not in text
    assert not list((out / "images").rglob(".hidden*"))


def test_split_layout(tmp_path: Path) -> None:
    src = tmp_path / "pets"
    files = build_image_folder_tree(src, layout="splits", groups=(1, 2, 3), per_group=1)
    out = tmp_path / "out"
    summary = _convert(src, out)
    assert list(summary.splits) == ["train", "val", "test"]
    for split in ("train", "val", "test"):
        good = sorted(
            (k for k, info in files.items() if k.startswith(f"{split}/") and info.kind == "ok"),
            key=_order,
        )
        records = _records(out, split)
        assert [r["meta"]["file"] for r in records] == good
        assert all(r["conversations"][0]["images"][0].startswith(f"{split}/") for r in records)
        assert all(r["conversations"][0]["user"] == PROMPT for r in records)
    assert summary.splits["train"].skipped == {
        "image_corrupt": 1,
        "image_empty": 1,
        "image_not_image": 1,
        "not_an_image": 1,
    }


def test_split_folder_names_are_normalised(tmp_path: Path) -> None:
    src = tmp_path / "pets"
    for folder in ("Training", "validation"):
        build_image_folder_tree(src / folder, groups=(1,), per_group=1, bad_files=False)
    summary = _convert(src, tmp_path / "out")
    assert list(summary.splits) == ["train", "val"]
    assert _records(tmp_path / "out", "val")[0]["meta"]["file"].startswith("validation/bird/")


def _groups_by_split(out: Path, summary) -> dict[str, dict[str, set[str]]]:
    """label -> group -> the splits its records (and skipped images) are in."""
    found: dict[str, dict[str, set[str]]] = {}
    for split in summary.splits:
        for record in _records(out, split):
            meta = record["meta"]
            group = meta.get("group", "file:" + meta["file"])
            found.setdefault(meta["label"], {}).setdefault(group, set()).add(split)
    for skip in summary.skips:  # the odd files are groups of their own
        if skip.reason.startswith("image_"):
            label = skip.item.split("/")[0]
            found[label].setdefault("file:" + skip.item, set()).add(skip.split)
    return found


def test_groups_within_a_class_are_split_per_class(tree, tmp_path: Path) -> None:
    src, files = tree
    out = tmp_path / "out"
    # The class name in the group: no group spans two classes, so each class is cut alone.
    summary = _convert(src, out, val_fraction=0.25, group_regex=r"^([a-z]+_g\d+)_")
    groups = _groups_by_split(out, summary)
    assert set(groups) == {"bird", "cat", "dog"}
    for label, by_group in groups.items():
        assert all(len(splits) == 1 for splits in by_group.values())
        val = {g for g, splits in by_group.items() if splits == {"val"}}
        named = {g for g in by_group if not g.startswith("file:")}
        assert named == {f"{label}_g{n:02d}" for n in (1, 2, 3, 4)}
        # round(0.25 x 4) = 1; bird also holds 6 odd files, each a group: round(0.25 x 10) = 3
        assert len(val) == (3 if label == "bird" else 1)
    assert sorted(r["meta"]["file"] for s in summary.splits for r in _records(out, s)) == sorted(
        k for k, info in files.items() if info.kind == "ok"
    )
    # Fractions that would take every group of a class keep one train group per class.
    keep = tmp_path / "keep"
    summary = _convert(
        src, keep, val_fraction=0.5, test_fraction=0.45, group_regex=r"^([a-z]+_g\d+)_"
    )
    for label, by_group in _groups_by_split(keep, summary).items():
        assert any(splits == {"train"} for splits in by_group.values()), label


def test_groups_across_classes_are_cut_globally(tree, tmp_path: Path) -> None:
    src, _ = tree
    out = tmp_path / "out"
    summary = _convert(src, out, test_fraction=0.3)  # default regex: _gNN_, in every class
    groups = _groups_by_split(out, summary)
    test_groups = {g for by_group in groups.values() for g, s in by_group.items() if "test" in s}
    train_groups = {g for by_group in groups.values() for g, s in by_group.items() if "train" in s}
    assert not test_groups & train_groups
    for label in ("cat", "dog"):  # same UCF group numbers in every class, so same split
        assert {g for g, s in groups[label].items() if s == {"test"}} == {
            g for g, s in groups["bird"].items() if s == {"test"} and not g.startswith("file:")
        }
    with pytest.raises(ConversionError, match="leave no train group"):
        _convert(src, tmp_path / "none", val_fraction=0.5, test_fraction=0.45)
    with pytest.raises(ConversionError, match="matches no file name"):
        _convert(src, tmp_path / "regex", val_fraction=0.2, group_regex=r"^subject(\d+)")


def test_workers_link_and_cli(tree, tmp_path: Path) -> None:
    src, _ = tree
    one, two = tmp_path / "one", tmp_path / "two"
    _convert(src, one, workers=1, val_fraction=0.2)
    _convert(src, two, workers=2, val_fraction=0.2)
    assert _tree_digest(one) == _tree_digest(two)
    linked = tmp_path / "linked"
    _convert(src, linked, link=True)
    record = _records(linked, "train")[0]
    stored = linked / "images" / record["conversations"][0]["images"][0]
    assert os.path.samefile(stored, src / record["meta"]["file"])

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        app, ["convert", "image-folder", str(src), "-o", str(out), "-j", "2", "--deep-check"]
    )
    assert result.exit_code == 0, result.output
    assert "no problems" in result.output
    records = _records(out, "train", source="pets")  # --source defaults to SRC's name
    assert records[0]["conversations"][0]["user"] == PROMPT
    custom = runner.invoke(
        app,
        [
            *["convert", "image-folder", str(src), "-o", str(tmp_path / "c2"), "--no-validate"],
            *["--source", "my-pets", "--prompt", "Which animal?\\nOne of: {classes}."],
        ],
    )
    assert custom.exit_code == 0, custom.output
    user = _records(tmp_path / "c2", "train", source="my-pets")[0]["conversations"][0]["user"]
    assert user == "Which animal?\nOne of: bird, cat, dog."
    bad = runner.invoke(
        app, ["convert", "image-folder", str(src), "-o", str(tmp_path / "c3"), "--source", "a/b"]
    )
    assert bad.exit_code == 2 and "--source" in bad.output
