"""Hateful Memes: original and phase-1 folders, HF copies, prompts and labels."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from converters.framework import RunSettings, run_conversion
from converters.prompts import PromptChoice
from converters.samples.hateful_memes import build_hateful_memes_tree
from converters.sources.hateful_memes import QUESTIONS, HatefulMemesConverter, MemesOptions
from phi3v_data.validate import ValidateOptions, validate_paths


def _records(out: Path, split: str) -> list[dict]:
    path = out / f"hateful_memes_{split}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize(
    ("layout", "splits", "train_skips"),
    [
        (
            "original",
            ["train", "dev_seen", "dev_unseen", "test_seen", "test_unseen"],
            {"bad_label": 1, "bad_line": 1, "duplicate_id": 1, "image_missing": 1},
        ),
        (
            "phase1",
            ["train", "dev", "test"],
            {"bad_label": 1, "bad_line": 1, "duplicate_id": 1, "image_missing": 1},
        ),
        (
            "parquet",
            ["train", "dev", "test"],
            {"no_label": 1, "duplicate_id": 1, "image_missing": 1},
        ),
        ("disk", ["train", "dev", "test"], {"no_label": 1, "duplicate_id": 1, "image_missing": 1}),
    ],
)
def test_layouts_convert_and_validate(
    tmp_path: Path, layout: str, splits: list[str], train_skips: dict[str, int]
) -> None:
    src = build_hateful_memes_tree(tmp_path / "src", layout)
    out = tmp_path / "out"
    summary = run_conversion(HatefulMemesConverter(MemesOptions()), src, RunSettings(out))
    assert list(summary.splits) == splits
    assert summary.splits["train"].records == 5
    assert summary.splits["train"].skipped == train_skips
    test_split = splits[-1]
    assert summary.splits[test_split].inference_only
    assert not summary.splits["train"].inference_only
    train = _records(out, "train")
    assert [r["meta"]["label"] for r in train] == [0, 1, 0, 0, 1]
    assert [r["conversations"][0]["assistant"] for r in train] == [
        "No.",
        "Yes.",
        "No.",
        "No.",
        "Yes.",
    ]
    assert train[0]["id"] == "hateful_memes-train-10000"
    user = train[0]["conversations"][0]["user"]
    question, suffix = user.split("\n")
    assert question in QUESTIONS and suffix == "Answer yes or no."
    assert train[1]["conversations"][0]["images"][0].endswith(".jpg")  # JPEG in a .png
    if layout in ("original", "phase1"):
        assert train[2]["conversations"][0]["images"] == ["hateful_memes/img/010002.png"]
    tests = _records(out, test_split)
    assert all(r["conversations"][0]["assistant"] == "" and "label" not in r["meta"] for r in tests)
    assert validate_paths([out], ValidateOptions(workers=1)).ok


def test_seeded_choice_uses_many_questions_and_fixed_index_is_the_cauldrons(tmp_path: Path) -> None:
    src = build_hateful_memes_tree(tmp_path / "src", "original", extra=40)
    out = tmp_path / "out"
    run_conversion(HatefulMemesConverter(MemesOptions()), src, RunSettings(out))
    users = {r["conversations"][0]["user"] for r in _records(out, "train")}
    assert len(users) >= 8  # 45 memes over 11 questions
    again = tmp_path / "again"
    run_conversion(HatefulMemesConverter(MemesOptions()), src, RunSettings(again, workers=2))
    assert (out / "hateful_memes_train.jsonl").read_bytes() == (
        again / "hateful_memes_train.jsonl"
    ).read_bytes()
    fixed = tmp_path / "fixed"
    options = MemesOptions(include_text=True, prompt=PromptChoice(index=9))
    run_conversion(HatefulMemesConverter(options), src, RunSettings(fixed))
    users = [r["conversations"][0]["user"] for r in _records(fixed, "train")]
    assert users[0] == (  # the Cauldron's question 9
        'Text on the meme: "caption number 0 of train"\n'
        "Is the language used in this meme hateful?\nAnswer yes or no."
    )
    assert all(
        u.endswith("\nIs the language used in this meme hateful?\nAnswer yes or no.") for u in users
    )
    plain = tmp_path / "plain"
    run_conversion(
        HatefulMemesConverter(MemesOptions(prompt=PromptChoice(index=2))), src, RunSettings(plain)
    )
    assert _records(plain, "train")[0]["conversations"][0]["user"] == (
        "Can this meme be considered disrespectful?\nAnswer yes or no."  # the Cauldron's 2
    )


def test_custom_prompt_with_text_field(tmp_path: Path) -> None:
    src = build_hateful_memes_tree(tmp_path / "src", "phase1")
    out = tmp_path / "out"
    options = MemesOptions(
        include_text=True, prompt=PromptChoice(template="Meme says {text}. Hateful?")
    )
    run_conversion(HatefulMemesConverter(options), src, RunSettings(out))
    assert (
        _records(out, "dev")[0]["conversations"][0]["user"]
        == "Meme says caption number 0 of dev. Hateful?"
    )
