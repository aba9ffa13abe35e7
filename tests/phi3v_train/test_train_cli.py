"""`phi3v train` from the command line: refusals, pre-flight validation, eval during training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from train_fixtures import FAST_CLI_ARGS, write_colour_dataset
from typer.testing import CliRunner

from phi3v_data.cli import app

runner = CliRunner()


def _train(model: Path, data: Path, out: Path, *extra: str):
    args = ["train", "-d", str(data), "-m", str(model), "-o", str(out), *FAST_CLI_ARGS, *extra]
    result = runner.invoke(app, args, env={"COLUMNS": "1000"})
    return result, " ".join(result.output.split())


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


def test_flash_attention_with_fp16_is_refused(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    result, text = _train(
        tiny_model_dir, colour_dir, tmp_path / "o", "--fp16", "--attn", "flash_attention_2"
    )
    assert result.exit_code == 2
    assert "--attn flash_attention_2 with --fp16 is refused" in text and "Use --bf16" in text


def test_batch_size_must_divide(tiny_model_dir: Path, colour_dir: Path, tmp_path: Path) -> None:
    result, text = _train(tiny_model_dir, colour_dir, tmp_path / "o", "--batch-size", "5")
    assert result.exit_code == 2
    assert "--batch-size 5 is not a multiple of --per-device-batch-size 2" in text


def test_preflight_refuses_bad_data_and_skip_validation_trains_around_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = write_colour_dataset(tmp_path / "data", train=8, val=4)
    (data / "images" / "train" / "green_1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result, text = _train(tiny_model_dir, data, tmp_path / "refused", "--max-steps", "2")
    assert result.exit_code == 2
    assert "nothing was trained" in text and "colours_train.jsonl:2" in text
    assert not (tmp_path / "refused" / "checkpoint-2").exists()

    out = tmp_path / "run"
    result, text = _train(
        tiny_model_dir,
        data,
        out,
        "--max-steps",
        "4",
        "--skip-validation",
        "--eval-steps",
        "2",
        "--eval-max-samples",
        "2",
        "--max-new-tokens",
        "3",
    )
    assert result.exit_code == 0, result.output
    skipped = [json.loads(x) for x in (out / "skipped_samples.jsonl").read_text().splitlines()]
    assert {x["id"] for x in skipped} == {"train-0001"}
    assert {x["reason"] for x in skipped} == {"unreadable_image"}
    assert "unreadable_image" in text
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [e for e in log if "eval_loss" in e]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(0.0 <= e["eval_accuracy"] <= 1.0 for e in evals)
    shutil.rmtree(out)


def test_samples_over_max_length_are_dropped_and_counted(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    # At num_crops 1 an image takes 313 positions: 200 tokens hold only the text-only
    # samples; the validator's token budget finds the others before training starts.
    out = tmp_path / "o"
    result, text = _train(
        tiny_model_dir, colour_dir, out, "--max-length", "200", "--max-steps", "1"
    )
    assert result.exit_code == 0, result.output
    assert "6 sample(s): truncated where no image is cut, else dropped" in text
    skipped = [json.loads(x) for x in (out / "skipped_samples.jsonl").read_text().splitlines()]
    assert skipped and {x["reason"] for x in skipped} == {"dropped_too_long"}
    assert all(x["id"] not in ("train-0003", "train-0007") for x in skipped)  # text-only
