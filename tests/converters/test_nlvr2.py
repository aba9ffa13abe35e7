"""NLVR2: lil-lab layout, HF copies (left/right columns, list column), two images per record."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from converters.framework import RunSettings, run_conversion
from converters.prompts import PromptChoice
from converters.samples.nlvr2 import build_nlvr2_tree
from converters.sources.nlvr2 import (
    PREFIX,
    TEMPLATES,
    NLVR2Converter,
    NLVR2Options,
    _image_names,
)
from phi3v_data.validate import ValidateOptions, validate_paths


def _records(out: Path, split: str) -> list[dict]:
    return [orjson.loads(line) for line in (out / f"nlvr2_{split}.jsonl").read_bytes().splitlines()]


def test_identifier_to_file_names() -> None:
    assert _image_names("train-10171-0-0") == ("train-10171-0-img0.png", "train-10171-0-img1.png")
    assert _image_names("dev-850-0-3") == ("dev-850-0-img0.png", "dev-850-0-img1.png")
    assert _image_names("train-1-0") is None


@pytest.mark.parametrize(
    ("layout", "train_skips"),
    [
        ("lil-lab", {"bad_label": 1, "bad_line": 1, "duplicate_id": 1, "image_missing": 1}),
        ("parquet", {"bad_annotation": 1, "duplicate_id": 1, "image_missing": 1}),
        ("disk", {"bad_annotation": 1, "duplicate_id": 1, "image_missing": 1}),
    ],
)
def test_layouts_convert_and_validate(
    tmp_path: Path, layout: str, train_skips: dict[str, int]
) -> None:
    src = build_nlvr2_tree(tmp_path / "src", layout)
    out = tmp_path / "out"
    summary = run_conversion(NLVR2Converter(NLVR2Options()), src, RunSettings(out))
    assert {name: s.records for name, s in summary.splits.items()} == {
        "train": 5,
        "dev": 2,
        "test1": 2,
    }
    assert list(summary.splits) == ["train", "dev", "test1"]
    assert summary.splits["train"].skipped == train_skips
    if layout == "lil-lab":
        # A missing image names the pair and every folder that was searched.
        (missing,) = [skip.detail for skip in summary.skips if skip.reason == "image_missing"]
        assert missing.startswith("left image: train-") or missing.startswith("right image: ")
        assert f"{src / 'images' / 'train'}" in missing and "(searched recursively)" in missing
    train = _records(out, "train")
    assert [r["id"] for r in train] == [
        "nlvr2-train-100-0-0",
        "nlvr2-train-100-1-0",
        "nlvr2-train-101-1-0",
        "nlvr2-train-102-0-0",
        "nlvr2-train-102-1-0",
    ]
    assert [r["meta"]["label"] for r in train] == ["False", "True", "False", "True", "True"]
    assert [r["conversations"][0]["assistant"] for r in train] == [
        "No.",
        "Yes.",
        "No.",
        "Yes.",
        "Yes.",
    ]
    turn = train[1]["conversations"][0]
    assert len(turn["images"]) == 2 and turn["images"][0].endswith(".jpg")  # JPEG in a .png
    assert turn["user"].startswith(PREFIX) and turn["user"].endswith(" Answer yes or no.")
    assert '"There are 2 animals in the pair of pictures."' in turn["user"]
    if layout == "lil-lab":
        assert turn["images"] == [
            "nlvr2/train/1/train-100-1-img0.jpg",
            "nlvr2/train/1/train-100-1-img1.png",
        ]
        assert train[0]["meta"]["directory"] == "0" and train[0]["meta"]["synset"] == "dog"
    else:
        left, right = (out / "images" / rel for rel in train[0]["conversations"][0]["images"])
        assert left.read_bytes() != right.read_bytes()
    assert validate_paths([out], ValidateOptions(workers=1)).ok


def test_missing_labels_make_an_inference_split(tmp_path: Path) -> None:
    src = build_nlvr2_tree(tmp_path / "src", "lil-lab")
    test1 = src / "data" / "test1.json"
    lines = [orjson.loads(line) for line in test1.read_bytes().splitlines()]
    test1.write_bytes(
        b"\n".join(orjson.dumps({k: v for k, v in x.items() if k != "label"}) for x in lines)
    )
    out = tmp_path / "out"
    summary = run_conversion(NLVR2Converter(NLVR2Options()), src, RunSettings(out))
    assert summary.splits["test1"].inference_only and summary.splits["test1"].records == 2
    assert all(r["conversations"][0]["assistant"] == "" for r in _records(out, "test1"))
    assert validate_paths([out], ValidateOptions(workers=1)).ok


def test_fixed_index_is_the_cauldrons_template_and_seeded_choice_spreads(tmp_path: Path) -> None:
    src = build_nlvr2_tree(tmp_path / "src", "lil-lab", extra=40)
    fixed = tmp_path / "fixed"
    options = NLVR2Options(prompt=PromptChoice(index=4))
    run_conversion(NLVR2Converter(options), src, RunSettings(fixed))
    by_id = {r["id"]: r["conversations"][0]["user"] for r in _records(fixed, "train")}
    assert by_id["nlvr2-train-100-1-0"] == (  # the Cauldron's template 4
        "The first image is the image on the left, the second image is the image on the right. "
        'Considering the images on both sides, is "There are 2 animals in the pair of pictures." '
        "valid? Answer yes or no."
    )
    seeded = tmp_path / "seeded"
    run_conversion(NLVR2Converter(NLVR2Options()), src, RunSettings(seeded))
    users = [r["conversations"][0]["user"] for r in _records(seeded, "train")]
    assert len(users) >= 40
    used = {i for i, t in enumerate(TEMPLATES) for u in users if u.startswith(t.split('"')[0])}
    assert len(used) >= 6  # 45 statements over 8 templates
