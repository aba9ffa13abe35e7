"""Two CPU processes under torchrun (gloo), DDP and DeepSpeed ZeRO-2/3, against one process.

Same global batch (4 = 2 per device x 2 processes x 1 step, vs 2 x 1 x 2 accumulation
steps): the Trainer deals consecutive per-device batches to the processes, so both runs
see the same samples per step, and the loss normalised by `num_items_in_batch` (the
target tokens of the whole global batch) is the same number. Tolerance: relative 1e-5,
for the different summation order of the gradient all-reduce.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import (
    FAST_CLI_ARGS,
    cli_command,
    cli_env,
    fast_config,
    losses,
    write_colour_dataset,
)

from phi3v_train.run_report import read_train_log
from phi3v_train.train import run_training

STEPS = 4


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


@pytest.fixture(scope="module")
def single_dir(tiny_model_dir: Path, colour_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    run_training(fast_config(tiny_model_dir, colour_dir, out, max_steps=STEPS))
    return out


@pytest.fixture(scope="module")
def single_process_losses(single_dir: Path) -> list[float]:
    return losses(read_train_log(single_dir))


def _torchrun(model: Path, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = (
        "train",
        "-d",
        data,
        "-m",
        model,
        "-o",
        out,
        *FAST_CLI_ARGS,
        "--max-steps",
        STEPS,
        *extra,
    )
    command = cli_command(*args, processes=2)
    return subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=540)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["ddp", "deepspeed-zero2", "deepspeed-zero3"])
def test_two_processes_match_one(
    tiny_model_dir: Path,
    colour_dir: Path,
    tmp_path: Path,
    single_dir: Path,
    single_process_losses: list[float],
    launcher: str,
) -> None:
    out = tmp_path / "run"
    # Each run also evaluates on the way (eval loss + generation metric, sharded over the
    # ranks and gathered; under ZeRO-3 with every rank in every forward pass).
    evaluate = ("--eval-steps", "2", "--eval-max-samples", "3", "--max-new-tokens", "3")
    sharding = ("--deepspeed", launcher.split("-")[1]) if launcher.startswith("deepspeed") else ()
    extra = (*evaluate, *sharding)
    done = _torchrun(tiny_model_dir, colour_dir, out, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    # A clean shutdown: no C++ abort or Python traceback from any rank at exit.
    assert "terminate called" not in done.stderr and "Traceback" not in done.stderr
    log = read_train_log(out)
    assert losses(log) == pytest.approx(single_process_losses, rel=1e-5)
    assert len(single_process_losses) == STEPS
    # The final model holds every weight (ZeRO-3 gathers its partitions to save).
    single = load_file(single_dir / "model.safetensors")
    saved = load_file(out / "model.safetensors")
    assert set(saved) == set(single)
    assert all(torch.allclose(saved[k], single[k], atol=1e-4) for k in single)
    evals = [e for e in log if "eval_loss" in e]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(0.0 <= e["eval_accuracy"] <= 1.0 for e in evals)
    assert (out / f"checkpoint-{STEPS}" / "COMPLETE").is_file()


# -- text-only micro-batches ------------------------------------------------------------
#
# One image record among three text-only ones, one sample per device, global batch 2:
# whatever order the sampler draws, every epoch has a step where one rank's micro-batch is
# text-only while the other's holds the image, and a step that is text-only on every rank.
# The val split is [image, text], so evaluation (loss and generation) gives rank 1 a
# text-only shard. One process runs the same steps as two accumulated micro-batches.
MIXED_ARGS = ("--per-device-batch-size", "1", "--batch-size", "2", "--num-crops", "2")
MIXED_EVAL = ("--eval-steps", "2", "--eval-max-samples", "2", "--max-new-tokens", "3")


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(
        tmp_path_factory.mktemp("mixed"), train=4, val=2, text_only=lambda i: i % 4 != 0
    )


@pytest.fixture(scope="module")
def mixed_single(tiny_model_dir: Path, mixed_dir: Path, tmp_path_factory):
    """One-process reference runs, by mode: the run folder."""
    runs: dict[str, Path] = {}

    def run(mode: str) -> Path:
        if mode not in runs:
            out = tmp_path_factory.mktemp(f"mixed-single-{mode}") / "run"
            settings = {
                "per_device_batch_size": 1,
                "batch_size": 2,
                "num_crops": 2,
                "eval_steps": 2,
                "eval_max_samples": 2,
                "eval_split": "val",
                "max_new_tokens": 3,
            }
            config = fast_config(tiny_model_dir, mixed_dir, out, mode=mode, **settings)
            run_training(config)
            runs[mode] = out
        return runs[mode]

    return run


def _eval_entries(log: list[dict]) -> list[float]:
    """step, eval loss, eval accuracy of each evaluation, flattened."""
    entries = [e for e in log if "eval_loss" in e]
    return [value for e in entries for value in (e["step"], e["eval_loss"], e["eval_accuracy"])]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("launcher", ["ddp", "deepspeed-zero2", "deepspeed-zero3"])
def test_text_only_micro_batches_match_one_process(
    tiny_model_dir: Path, mixed_dir: Path, mixed_single, tmp_path: Path, launcher: str, mode: str
) -> None:
    sharding = ("--deepspeed", launcher.split("-")[1]) if launcher.startswith("deepspeed") else ()
    out = tmp_path / "run"
    done = _torchrun(
        tiny_model_dir, mixed_dir, out, *MIXED_ARGS, *MIXED_EVAL, "--mode", mode, *sharding
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr
    single = read_train_log(mixed_single(mode))
    log = read_train_log(out)
    assert len(losses(single)) == STEPS
    # Same samples per step; relative 1e-5 for the order of the gradient all-reduce.
    assert losses(log) == pytest.approx(losses(single), rel=1e-5)
    evals, single_evals = _eval_entries(log), _eval_entries(single)
    assert evals[0::3] == [2, 4]
    assert evals == pytest.approx(single_evals, rel=1e-5)
