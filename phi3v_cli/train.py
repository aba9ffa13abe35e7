"""`phi3v train`: flags -> `TrainConfig` -> `run_training` -> summary and exit code."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from phi3v_cli.flags import with_settings
from phi3v_train.train_config import ConfigError, TrainConfig

_HELP = """Fine-tune Phi-3.5-vision on a converted folder (or JSONL files).

Defaults reproduce the reference recipe: AdamW (0.9, 0.95, eps 1e-7), weight decay 0.01,
max grad norm 1.0, linear schedule with 50 warm-up steps (capped at 10 % of short runs),
gradient checkpointing, global batch 64, LoRA r64 / alpha 128 / dropout 0.

Several GPUs or nodes: launch with torchrun, e.g.
  torchrun --nproc_per_node=8 $(which phi3v) train --data-dir OUT --model M -o RUN --deepspeed zero2
Many nodes: add --nnodes=N --node_rank=I --master_addr=HOST --master_port=PORT (shared --output-dir).
The global --batch-size stays the same; gradient accumulation follows from it.

Several data sets: -d A -d B (or several JSONL files), --mix A=0.7,B=0.3 for each one's
share of every step's samples (default: by size).
Settings from a file: --config run.yaml (keys: the long flag names); flags given here win.
A run's run_config.json is such a file: --config RUN/run_config.json -o NEW repeats it.

Interrupted? Run the same command with --resume auto: it continues from the newest
complete checkpoint with exactly the losses of an uninterrupted run."""


@with_settings(TrainConfig, optional=("model", "output_dir"))
def train(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings from a YAML file (keys: the long flag names, with - or _; lists"
            " for repeated flags); flags on the command line win. A run's run_config.json"
            " is one: --config RUN/run_config.json -o NEW repeats the run.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    settings: dict | None = None,
    bf16: Annotated[bool, typer.Option("--bf16", hidden=True)] = False,
    fp16: Annotated[bool, typer.Option("--fp16", hidden=True)] = False,
    fp32: Annotated[bool, typer.Option("--fp32", hidden=True)] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Show third-party log messages and warnings (hidden by default)."
        ),
    ] = False,
) -> None:
    from phi3v_train.data import DataError, has_split, split_files
    from phi3v_train.distributed import gradient_accumulation_steps, is_main_process, world_size
    from phi3v_train.run_file import config_from, merge_settings

    console = Console(stderr=True)
    # The TrainConfig flags arrive in `settings` and in ctx.params under their field names:
    # the values (with a --config file under the command line) become the config.
    try:
        values = merge_settings(ctx, config_file)
        for required, flag in (("model", "--model/-m"), ("output_dir", "--output-dir/-o")):
            if values.get(required) is None:
                raise ConfigError(f"{flag} is required (on the command line or in --config)")
        # --bf16/--fp16/--fp32: hidden shorthands for --precision, kept for old command lines.
        shorthands = [name for name in ("bf16", "fp16", "fp32") if values.get(name)]
        if len(shorthands) > 1 or (shorthands and values["precision"] != "auto"):
            raise ConfigError("give the precision once: --precision auto|bf16|fp16|fp32")
        if shorthands:
            values["precision"] = shorthands[0]
        config = config_from(values)
        if (
            config.eval_steps is not None
            and config.eval_split is None
            and not config.eval_files
            and any(folder.is_dir() and has_split(folder, "val") for folder in config.data_dir)
        ):
            config = dataclasses.replace(config, eval_split="val")
    except ConfigError as exc:
        _cannot_start(console, exc)
    verbose = bool(values.get("verbose"))
    # Usage errors first, before torch and transformers load (seconds), and before
    # anything is written.
    try:
        _check_paths(config)
        config.check()
        gradient_accumulation_steps(config.batch_size, config.per_device_batch_size, world_size())
        for folder in config.data_dir:
            split_files(folder, config.split)
        if config.eval_split is not None and not config.eval_files:
            from phi3v_train.mixing import eval_data_files

            eval_data_files(config.data_dir, config.eval_split, ())
    except (ConfigError, DataError) as exc:
        _cannot_start(console, exc)
    from phi3v_train.console import quiet_third_party

    quiet_third_party(verbose)
    from phi3v_train.preflight import PreflightError
    from phi3v_train.train import run_training
    from phi3v_train.trainer import NonFiniteLossError
    from phi3v_train.weights import CheckpointError

    try:
        result = run_training(config, console)
    except (ConfigError, DataError, PreflightError, CheckpointError, ImportError) as exc:
        _cannot_start(console, exc)
    except NonFiniteLossError as exc:
        console.print(f"[red]phi3v train: stopped:[/] {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        if is_main_process():
            console.print(_interrupted_message(config.output_dir))
        raise typer.Exit(code=130) from None
    if is_main_process():
        skipped = ", ".join(f"{k} {v}" for k, v in result.skipped.items()) or "none"
        console.print(
            f"[green]done[/]: {result.global_step} steps, mean train loss "
            f"{result.train_loss:.4f}; skipped samples: {skipped}\n"
            f"model, train_log.jsonl and training_curves.png in {result.output_dir}"
        )


def _check_paths(config: TrainConfig) -> None:
    """Paths from a --config file are not checked by the flags' own checks: check them."""
    from phi3v_train.data import DataError

    for folder in config.data_dir:
        if not folder.is_dir():
            raise DataError(f"--data-dir {folder}: no such folder")
    for path in (*config.train_files, *config.eval_files):
        if not path.is_file():
            raise DataError(f"{path}: no such file")


def _cannot_start(console: Console, exc: Exception) -> None:
    console.print(f"[red]phi3v train: cannot start:[/]\n{escape(str(exc))}")
    raise typer.Exit(code=2)


def _interrupted_message(output_dir: Path) -> str:
    """Where an interrupted run stands and how to continue it."""
    from phi3v_train.checkpoints import newest_complete_checkpoint
    from phi3v_train.run_report import read_train_log

    steps = [entry["step"] for entry in read_train_log(output_dir) if "loss" in entry]
    where = f"stopped at step {steps[-1]}" if steps else "stopped before the first step"
    checkpoint = newest_complete_checkpoint(output_dir)
    if checkpoint is None:
        return f"[yellow]{where}[/]; no complete checkpoint yet, so a rerun starts afresh."
    return (
        f"[yellow]{where}[/]; {checkpoint.name} is complete: rerun the same command with "
        "--resume auto to continue from it."
    )


def register(app: typer.Typer) -> None:
    app.command("train", help=_HELP)(train)
