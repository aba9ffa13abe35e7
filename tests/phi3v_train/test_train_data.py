"""Training data set, skip reporting, `--max-length` policy and right-padded batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_fixtures import write_colour_dataset

from phi3v_data.records import Record, Turn
from phi3v_train.collator import TrainCollator, fit_to_max_length
from phi3v_train.data import (
    DataError,
    Sample,
    SkipLog,
    TrainDataset,
    gold_answers,
    load_samples,
    split_files,
)


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    from phi3v_train.processing_phi3v import Phi3VProcessor

    return Phi3VProcessor.from_pretrained(tiny_model_dir, num_crops=1)


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


def test_split_files_from_manifest_and_by_name(colour_dir: Path, tmp_path: Path) -> None:
    assert split_files(colour_dir, "val") == [colour_dir / "colours_val.jsonl"]
    with pytest.raises(DataError, match=r"no split .test. in manifest\.json \(found: train, val\)"):
        split_files(colour_dir, "test")
    (tmp_path / "x_train.jsonl").write_text((colour_dir / "colours_train.jsonl").read_text())
    assert split_files(tmp_path, "train") == [tmp_path / "x_train.jsonl"]
    with pytest.raises(DataError, match=r"no split 'val' among its \*\.jsonl \(found: train\)"):
        split_files(tmp_path, "val")
    # The names `validate` and `report` accept: train.jsonl / val.jsonl, source prefixes.
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("train.jsonl", "val.jsonl", "hateful_memes_dev_seen.jsonl"):
        (plain / name).write_text("")
    assert split_files(plain, "train") == [plain / "train.jsonl"]
    assert split_files(plain, "val") == [plain / "val.jsonl"]
    assert split_files(plain, "dev_seen") == [plain / "hateful_memes_dev_seen.jsonl"]


def test_unreadable_image_is_reported_counted_and_replaced(
    colour_dir: Path, processor, tmp_path: Path
) -> None:
    samples = load_samples([colour_dir / "colours_train.jsonl"])
    broken_root = tmp_path / "images"
    broken_root.mkdir()
    # Sample 0's image is garbage bytes; sample 1 is fine.
    (broken_root / "bad.jpg").write_bytes(b"not a jpeg at all")
    bad = Sample(
        Record("bad-1", "colours", (Turn("What colour?", "Red.", ("bad.jpg",)),)),
        broken_root,
        "x:1",
    )
    skips = SkipLog(tmp_path / "skipped.jsonl")
    dataset = TrainDataset([bad, samples[1]], processor, skips=skips)
    item = dataset[0]
    expected = processor.encode(samples[1].record, [_image(samples[1])])
    assert torch.equal(item["input_ids"], expected["input_ids"])
    assert skips.counts == {"unreadable_image": 1}
    logged = json.loads((tmp_path / "skipped.jsonl").read_text())
    assert logged["id"] == "bad-1" and logged["reason"] == "unreadable_image"
    assert "bad.jpg" in logged["detail"]


def _image(sample: Sample):
    from phi3v_train.data import load_images

    return load_images(sample)[0]


def test_only_bad_samples_raise_a_clear_error(processor, tmp_path: Path) -> None:
    bad = Sample(Record("b", "s", (Turn("q", "a", ("missing.jpg",)),)), tmp_path, "x:1")
    with pytest.raises(DataError, match="unusable samples in a row"):
        TrainDataset([bad, bad], processor)[0]


def test_max_length_never_cuts_an_image(colour_dir: Path, processor) -> None:
    sample = load_samples([colour_dir / "colours_train.jsonl"])[0]
    encoded = processor.encode(sample.record, [_image(sample)])
    ids = encoded["input_ids"]
    image_positions = (ids == processor.image_token_id).nonzero().flatten()
    first, last = int(image_positions[0]), int(image_positions[-1])
    length = len(ids)

    assert fit_to_max_length(encoded, length, processor.image_token_id) == (encoded, "fits")
    # A cut inside the placeholders drops the sample.
    assert (
        fit_to_max_length(encoded, (first + last) // 2, processor.image_token_id)[1]
        == "dropped_too_long"
    )
    # A cut after the image but inside the answer keeps the prefix.
    cut_at = length - 2
    fitted, outcome = fit_to_max_length(encoded, cut_at, processor.image_token_id)
    assert outcome == "truncated"
    assert torch.equal(fitted["input_ids"], ids[:cut_at])
    assert torch.equal(fitted["labels"], encoded["labels"][:cut_at])
    assert fitted["pixel_values"] is encoded["pixel_values"]
    # A cut that leaves no target token drops the sample too.
    first_target = int((encoded["labels"] != -100).nonzero()[0])
    assert (
        fit_to_max_length(encoded, first_target, processor.image_token_id)[1] == "dropped_too_long"
    )
    assert (
        fit_to_max_length(encoded, cut_at, processor.image_token_id, "drop")[1]
        == "dropped_too_long"
    )


def test_too_long_samples_are_counted(colour_dir: Path, processor) -> None:
    samples = load_samples([colour_dir / "colours_train.jsonl"])
    text_only = samples[3]
    assert not text_only.record.images
    skips = SkipLog()
    # Every image sample is over 100 tokens (313 image positions at num_crops=1).
    dataset = TrainDataset(samples[:4], processor, max_length=100, skips=skips)
    item = dataset[0]
    assert torch.equal(item["input_ids"], processor.encode(text_only.record, [])["input_ids"])
    assert skips.counts == {"dropped_too_long": 3}


def test_mixed_batch_is_right_padded_with_masks(colour_dir: Path, processor) -> None:
    samples = load_samples([colour_dir / "colours_train.jsonl"])
    chosen = [samples[0], samples[3], samples[1]]  # image, text-only, image
    dataset = TrainDataset(chosen, processor)
    encoded = [dataset[i] for i in range(3)]
    batch = TrainCollator(processor)(encoded)
    lengths = [len(e["input_ids"]) for e in encoded]
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    for row, length in enumerate(lengths):
        assert torch.equal(batch["input_ids"][row, :length], encoded[row]["input_ids"])
        assert (batch["labels"][row, length:] == -100).all()
        assert (batch["attention_mask"][row, :length] == 1).all()
    # Two images in the batch, in order of appearance; the text-only sample adds none.
    assert batch["pixel_values"].shape[0] == 2
    assert batch["image_sizes"].shape == (2, 2)
    assert int((batch["input_ids"] == processor.image_token_id).sum()) == sum(
        int((e["input_ids"] == processor.image_token_id).sum()) for e in encoded
    )


def test_text_only_batch_has_no_pixel_values(colour_dir: Path, processor) -> None:
    samples = load_samples([colour_dir / "colours_train.jsonl"])
    batch = TrainCollator(processor)([TrainDataset([samples[3]], processor)[0]])
    assert "pixel_values" not in batch and "image_sizes" not in batch


def test_gold_answers_prefer_meta() -> None:
    turn = Turn("q", "Report 1")
    assert gold_answers(Record("a", "docvqa", (turn,), {"answers": ["x", "y"]})) == ["x", "y"]
    assert gold_answers(Record("a", "docvqa", (turn,))) == ["Report 1"]


def test_invalid_lines_are_skipped_when_loading(
    colour_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = (colour_dir / "colours_train.jsonl").read_text().splitlines()
    broken = tmp_path / "mixed.jsonl"
    broken.write_text("\n".join([lines[0], '{"id": "x"}', "not json", lines[1]]) + "\n")
    samples = load_samples([broken], colour_dir / "images")
    assert [s.record.id for s in samples] == ["train-0000", "train-0001"]
    assert f"{broken}:2: not a valid record" in caplog.text
