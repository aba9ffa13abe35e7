"""Exact resume: a run killed with SIGKILL and resumed with `--resume auto` logs the same
per-step losses as an uninterrupted run (full and LoRA, tiny model, CPU)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
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

STEPS = 8


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=12, val=4)


def _start_cli_run(model: Path, data: Path, out: Path, mode: str) -> subprocess.Popen:
    """The same run as `fast_config(..., max_steps=STEPS, mode=mode)`, through the CLI."""
    args = ("train", "-d", data, "-m", model, "-o", out, "--mode", mode, *FAST_CLI_ARGS)
    command = cli_command(*args, "--max-steps", STEPS)
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env(one_thread=False)
    )


def _kill_after_first_checkpoint(process: subprocess.Popen, out: Path) -> None:
    marker = out / "checkpoint-2" / "COMPLETE"
    deadline = time.monotonic() + 240
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited early: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 240 s")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_resume_after_kill_gives_the_same_losses(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path, mode: str
) -> None:
    reference = run_training(
        fast_config(tiny_model_dir, colour_dir, tmp_path / "ref", max_steps=STEPS, mode=mode)
    )
    expected = losses(reference.log)
    assert len(expected) == STEPS

    out = tmp_path / "killed"
    _kill_after_first_checkpoint(_start_cli_run(tiny_model_dir, colour_dir, out, mode), out)
    assert not (out / "train_summary.json").exists(), "the run finished before it was killed"
    interrupted_at = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert interrupted_at < STEPS

    resumed = run_training(
        fast_config(tiny_model_dir, colour_dir, out, max_steps=STEPS, mode=mode, resume="auto")
    )
    assert resumed.resumed_from is not None
    assert int(Path(resumed.resumed_from).name.split("-")[1]) >= 2
    log = read_train_log(out)
    assert [e["step"] for e in log if "loss" in e] == list(range(1, STEPS + 1))
    # CPU training is deterministic: the resumed run reproduces the losses bit for bit.
    assert losses(log) == expected
    final = "model.safetensors" if mode == "full" else "adapter_model.safetensors"
    assert (out / final).is_file()


def test_resume_auto_without_checkpoints_starts_fresh(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    (out / "checkpoint-6").mkdir(parents=True)  # half-written by a killed run: no COMPLETE
    result = run_training(fast_config(tiny_model_dir, colour_dir, out, max_steps=2, resume="auto"))
    assert result.resumed_from is None
    assert result.global_step == 2
    assert not (out / "checkpoint-6").exists()
