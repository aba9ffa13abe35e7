"""A run's checkpoints: `checkpoint-N/` folders, their COMPLETE marker, rotation, resume.

The Trainer writes `checkpoint-N/` in place; once every process has finished writing, the
main process adds `checkpoint-N/COMPLETE` (`Phi3VTrainer._save_checkpoint`). `--resume
auto` takes the newest complete checkpoint and removes incomplete ones (left by a kill),
and `--save-total-limit` only ever deletes complete checkpoints older than a newer
complete one, so a crash at any moment leaves a checkpoint to resume from. (The weights
inside a model folder are `phi3v_train.weights`.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from phi3v_train.distributed import is_main_process
from phi3v_train.train_config import ConfigError, TrainConfig

COMPLETE_MARKER = "COMPLETE"
TRAIN_LOG_NAME = "train_log.jsonl"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `checkpoint-N` folder, oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE_MARKER).is_file()


def newest_complete_checkpoint(output_dir: Path) -> Path | None:
    complete = [path for _, path in checkpoint_dirs(output_dir) if is_complete(path)]
    return complete[-1] if complete else None


def remove_incomplete_checkpoints(output_dir: Path) -> list[Path]:
    removed = []
    for _, path in checkpoint_dirs(output_dir):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def rotate_checkpoints(output_dir: Path, keep: int | None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `keep` (never an incomplete one)."""
    if keep is None:
        return []
    complete = [path for _, path in checkpoint_dirs(output_dir) if is_complete(path)]
    doomed = complete[: max(0, len(complete) - keep)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def truncate_train_log(output_dir: Path, last_step: int) -> None:
    """Keep log lines up to `last_step` (a resumed run rewrites the steps after it)."""
    from phi3v_data.jsonl import atomic_write_bytes

    path = output_dir / TRAIN_LOG_NAME
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= last_step
    ]
    atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())


def resume_checkpoint(config: TrainConfig) -> Path | None:
    """The checkpoint to continue from: `--resume auto` = the newest complete one (or
    none: a fresh start); `--resume PATH` = that one, which must be complete.

    Raises:
        ConfigError: a PATH that is not a complete checkpoint, or a fresh run (no
            `--resume`) into a folder holding another run's checkpoints.
    """
    if config.resume is None:
        if checkpoint_dirs(config.output_dir):
            raise ConfigError(
                f"{config.output_dir} already holds checkpoints of a run: pass --resume auto "
                "to continue it, or choose another --output-dir"
            )
        return None
    if config.resume == "auto":
        if is_main_process():
            remove_incomplete_checkpoints(config.output_dir)
        return newest_complete_checkpoint(config.output_dir)
    path = Path(config.resume)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(f"--resume {path}: not a checkpoint folder (no trainer_state.json)")
    if not is_complete(path):
        raise ConfigError(
            f"--resume {path}: this checkpoint is incomplete (the run stopped while saving "
            "it); use --resume auto to take the newest complete one"
        )
    return path
