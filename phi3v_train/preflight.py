"""Before a run: validate the training data at the run's settings, and estimate batching.

`preflight` runs `phi3v validate` on the run's files (at its num_crops, max-length and image
layout) and stops the run on errors, unless `--skip-validation`; its statistics (token
lengths, per-source counts) feed the start summary and `batching_report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phi3v_train.data import split_files
from phi3v_train.distributed import world_size
from phi3v_train.train_config import TrainConfig


class PreflightError(RuntimeError):
    """The data failed validation; the message says where and how to see every problem."""


def data_files(config: TrainConfig, split: str | None, explicit: tuple[Path, ...]) -> list[Path]:
    """`explicit` files, else `split` of every --data-dir folder."""
    if explicit:
        return list(explicit)
    if not config.data_dir or split is None:
        return []
    return [path for folder in config.data_dir for path in split_files(folder, split)]


# Problems the training run itself handles (and counts): a sample over --max-length is
# truncated or dropped by the --truncation policy instead of stopping the run.
HANDLED_AT_TRAINING = frozenset({"token_budget"})


def preflight(
    config: TrainConfig, files: list[Path], console=None, several_sets: bool = False
) -> dict[str, Any]:
    """Validate `files` at the run's num_crops and max-length; return the data statistics.

    `several_sets`: the files come from several data sets, whose ids need only be unique
    within each one (a record id repeated in a file of another folder is no error).

    Raises:
        PreflightError: when the validator finds errors (unless `--skip-validation`).
    """
    from phi3v_data.validate import ValidateOptions, validate_paths

    tokenizer = config.model if (config.model / "tokenizer.json").is_file() else None
    options = ValidateOptions(
        image_root=config.image_root,
        max_length=config.max_length,
        num_crops=config.num_crops,
        image_layout=config.image_layout,
        tokenizer=tokenizer,
        show_progress=console is not None,
    )
    report = validate_paths(files, options, ids_per_folder=several_sets)
    fatal = [
        p for p in report.problems if p.severity == "error" and p.code not in HANDLED_AT_TRAINING
    ]
    if fatal and not config.skip_validation:
        shown = [f"  {p.location}: [{p.code}] {p.message}" for p in fatal[:20]]
        more = [f"  ... and {len(fatal) - 20} more"] if len(fatal) > 20 else []
        raise PreflightError(
            f"the training data has {len(fatal)} error(s); nothing was trained:\n"
            + "\n".join(shown + more)
            + "\nFix them (see `phi3v validate` for the full report), or pass "
            "--skip-validation to train anyway (bad samples are then skipped and counted)."
        )
    stats = report.stats.to_dict()
    stats["over_max_length"] = sum(1 for p in report.problems if p.code in HANDLED_AT_TRAINING)
    # Per-sample lengths in file order (train files first): tokens per step and padding.
    stats["token_lengths"] = list(report.stats.token_lengths)
    return stats


def batching_report(
    config: TrainConfig,
    validated_lengths: list[int] | None,
    train_lengths: list[int] | None,
    samples: int,
    accumulation: int,
) -> dict[str, Any] | None:
    """Tokens per step and padding fractions (padded, packed, length-grouped) of one epoch,
    from the exact lengths of the training samples when `--group-by-length` computed them,
    else from the validator's (capped at `--max-length`); None without either."""
    from phi3v_train.packing import packing_report

    lengths = train_lengths
    if lengths is None and validated_lengths:
        cap = config.max_length
        lengths = [min(n, cap) if cap is not None else n for n in validated_lengths[:samples]]
    if not lengths:
        return None
    report = packing_report(
        lengths,
        config.per_device_batch_size,
        world_size() * accumulation,
        config.seed,
        config.group_by_length,
    )
    report["packing"] = config.packing
    report["group_by_length"] = config.group_by_length
    return report
