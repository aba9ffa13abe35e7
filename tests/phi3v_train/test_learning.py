"""End to end, the pipeline learns: labels, generation and decoding agree exactly.

A tiny random model overfits four samples (three colour pictures, one text-only); `phi3v
eval` on that split must then reproduce every answer exactly. A wrong label mask, a
placeholder/feature mix-up, a prompt that differs between training and generation, or a
decoder that drops tokens makes this fail.
"""

from __future__ import annotations

import json
from pathlib import Path

from train_fixtures import fast_config, losses, write_colour_dataset
from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_train.train import run_training


def test_overfit_samples_are_answered_exactly(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_colour_dataset(tmp_path / "data", train=4, val=1)
    run = tmp_path / "run"
    config = fast_config(
        tiny_model_dir,
        data,
        run,
        batch_size=4,
        per_device_batch_size=4,
        max_steps=80,
        learning_rate=5e-3,
        save_steps=80,
    )
    result = run_training(config)
    assert losses(result.log)[-1] < 0.05
    out = tmp_path / "eval"
    args = ["eval", "-m", str(run), "-d", str(data), "--split", "train", "-o", str(out)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["accuracy"], metrics["scored"], metrics["truncated"]) == (1.0, 4, 0)
    predictions = [
        json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()
    ]
    assert [p["prediction"] for p in predictions] == ["Red.", "Green.", "Blue.", "Hello."]
