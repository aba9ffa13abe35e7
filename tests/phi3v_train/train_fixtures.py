"""Tiny converted data sets for the training tests: real JPEG/PNG files, a manifest.

The task is learnable by the tiny model in a few steps: name the colour of a plain
picture; a few text-only records are mixed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from phi3v_data.records import Record, Turn

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SIZES = [(64, 48), (48, 64), (56, 56)]
QUESTION = "What colour is this picture? Answer with one word."


def _records(
    images: Path, split: str, count: int, source: str, text_only: Callable[[int], bool]
) -> list[Record]:
    records = []
    names = list(COLOURS)
    for i in range(count):
        if text_only(i):
            turn = Turn("Say hello.", "Hello.")
        else:
            colour = names[i % len(names)]
            rel = f"{split}/{colour}_{i}.{'png' if i % 2 else 'jpg'}"
            path = images / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", SIZES[i % len(SIZES)], COLOURS[colour]).save(path)
            turn = Turn(QUESTION, colour.capitalize() + ".", (rel,))
        records.append(Record(f"{split}-{i:04d}", source, (turn,)))
    return records


def write_colour_dataset(
    out: Path,
    train: int = 8,
    val: int = 4,
    source: str = "colours",
    text_only: Callable[[int], bool] = lambda i: i % 4 == 3,
) -> Path:
    """A converted folder: `<source>_train.jsonl`, `<source>_val.jsonl`, images/, manifest.

    `text_only(i)`: whether record i of a split is a text-only one (every fourth by default).
    """
    images = out / "images"
    splits = {}
    for split, count in (("train", train), ("val", val)):
        records = _records(images, split, count, source, text_only)
        lines = b"".join(r.to_json_line() for r in records)
        name = f"{source}_{split}.jsonl"
        (out / name).write_bytes(lines)
        splits[split] = {
            "file": name,
            "records": count,
            "sha256": hashlib.sha256(lines).hexdigest(),
            "inference_only": False,
            "skipped": {},
        }
    manifest = {
        "source": source,
        "tool_version": "test",
        "options": {},
        "splits": splits,
        "skips": [],
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def fast_config(model: Path, data: Path, out: Path, **overrides: object):
    """A TrainConfig that runs in seconds on CPU with the tiny model."""
    from phi3v_train.train_config import TrainConfig

    settings: dict[str, object] = {
        "model": model,
        "output_dir": out,
        "data_dir": data,
        "num_crops": 1,
        "batch_size": 4,
        "per_device_batch_size": 2,
        "max_steps": 4,
        "learning_rate": 2e-3,
        "save_steps": 2,
        "report_to": "none",
        "lora_rank": 8,
        "max_new_tokens": 4,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def losses(log: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log if "loss" in entry]


# The command-line twin of `fast_config` (the same run when given the same --max-steps).
FAST_CLI_ARGS = (
    "--num-crops", "1", "--batch-size", "4", "--per-device-batch-size", "2", "--lr", "2e-3",
    "--save-steps", "2", "--report-to", "none", "--lora-rank", "8",
)  # fmt: skip


def cli_command(*args: object, processes: int = 1) -> list[str]:
    """`phi3v ARGS` as a subprocess command; under `torchrun` for several processes."""
    import socket
    import sys

    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "phi3v"), *(str(a) for a in args)]
    if processes == 1:
        return command
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = [str(bin_dir / "torchrun"), f"--nproc_per_node={processes}", f"--master_port={port}"]
    return launcher + command


def cli_env(one_thread: bool = True) -> dict[str, str]:
    """The subprocess environment: offline; one thread per process (two processes share
    the two cores), or this process's own threading where results must match it bit for bit."""
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    return env
