"""`phi3v train`: flags -> `TrainConfig` -> `run_training` -> summary and exit code."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from phi3v_data.records import IMAGE_LAYOUT_HELP
from phi3v_data.tokens import NUM_CROPS_HELP
from phi3v_train.config import (
    LANGUAGE_LORA_TARGETS,
    ConfigError,
    TrainConfig,
)

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


def train(
    ctx: typer.Context,
    train_files: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="FILES",
            help="JSONL files to train on (each one a data set, like a --data-dir).",
            show_default=False,
        ),
    ] = None,
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
    data_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--data-dir",
            "-d",
            help="A folder written by `phi3v convert`; repeat for several data sets.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    mix: Annotated[
        str | None,
        typer.Option(
            help="Several data sets: each one's share of every step's samples, e.g."
            " docvqa=0.7,ucf101=0.3 (keys: the source or the folder/file name). Default:"
            " by size.",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="Checkpoint folder in the official layout (the downloaded "
            "Phi-3.5-vision-instruct, or `phi3v init-model` output). Required.",
            show_default=False,
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Run folder: checkpoints, logs, final model. Required.",
            show_default=False,
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(help="Image root for JSONL files (default: images/ beside each file)."),
    ] = None,
    split: Annotated[str, typer.Option(help="Training split of --data-dir.")] = "train",
    eval_split: Annotated[
        str | None,
        typer.Option(help="Evaluation split of --data-dir (default with --eval-steps: val)."),
    ] = None,
    eval_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--eval-files",
            help="JSONL file(s) to evaluate on (repeat the flag), e.g. with positional"
            " training files.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    mode: Annotated[
        Literal["full", "freeze-vision", "lora", "qlora"],
        typer.Option(
            help="full fine-tuning (the reference) | freeze-vision (CLIP + projector frozen)"
            " | lora | qlora (LoRA over a 4-bit nf4 base)."
        ),
    ] = "full",
    freeze_vision: Annotated[
        bool, typer.Option(help="LoRA/QLoRA: no adapters on the vision tower and projector.")
    ] = False,
    num_crops: Annotated[int, typer.Option(help=NUM_CROPS_HELP)] = 4,
    image_layout: Annotated[
        Literal["seed", "per-line"], typer.Option(help=IMAGE_LAYOUT_HELP)
    ] = "seed",
    max_length: Annotated[
        int | None,
        typer.Option(help="Longest sequence in tokens (images included). Default: no limit."),
    ] = None,
    truncation: Annotated[
        Literal["truncate", "drop"],
        typer.Option(
            help="Samples over --max-length: 'truncate' cuts the text when no image is cut "
            "(else drops), 'drop' always drops. Both are counted and reported."
        ),
    ] = "truncate",
    batch_size: Annotated[
        int, typer.Option(help="Global batch (all processes, all accumulation steps).")
    ] = 64,
    per_device_batch_size: Annotated[
        int,
        typer.Option(
            help="Samples per device per step. Raise it while memory allows; lower it on OOM."
        ),
    ] = 1,
    packing: Annotated[
        bool,
        typer.Option(
            help="Concatenate each micro-batch's samples into one row without padding"
            " (position ids restart per sample, attention stays within it): the same steps"
            " and losses as padded batches, less compute when lengths vary."
        ),
    ] = False,
    group_by_length: Annotated[
        bool,
        typer.Option(
            help="Put samples of similar length in the same micro-batch (seeded, restored on"
            " resume): less padding; the summary shows how much."
        ),
    ] = False,
    epochs: Annotated[float, typer.Option(help="Passes over the training data.")] = 1.0,
    max_steps: Annotated[
        int | None, typer.Option(help="Optimizer steps (overrides --epochs).")
    ] = None,
    learning_rate: Annotated[
        float, typer.Option("--learning-rate", "--lr", help="Language model LR.")
    ] = 4e-5,
    vision_learning_rate: Annotated[
        float | None,
        typer.Option(
            "--vision-lr", "--vision-learning-rate", help="Vision tower LR (default: --lr)."
        ),
    ] = None,
    projector_learning_rate: Annotated[
        float | None,
        typer.Option(
            "--projector-lr", "--projector-learning-rate", help="Projector LR (default: --lr)."
        ),
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help="Warm-up steps (default: 50, at most 10 % of the run).")
    ] = None,
    weight_decay: Annotated[float, typer.Option()] = 0.01,
    max_grad_norm: Annotated[float, typer.Option()] = 1.0,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (reference 64).")] = 64,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha (default 2 x rank).")] = None,
    lora_dropout: Annotated[float, typer.Option()] = 0.0,
    lora_targets: Annotated[
        str,
        typer.Option(
            help="Comma-separated module names. The default adds the CLIP and projector "
            "targets when vision trains."
        ),
    ] = ",".join(LANGUAGE_LORA_TARGETS),
    precision: Annotated[
        Literal["auto", "bf16", "fp16", "fp32"],
        typer.Option(
            help="bf16 mixed precision (Ampere+ GPUs), fp16 (older GPUs), fp32. auto: bf16 if"
            " the GPU has it, else fp16; fp32 on CPU."
        ),
    ] = "auto",
    bf16: Annotated[bool, typer.Option("--bf16", hidden=True)] = False,
    fp16: Annotated[bool, typer.Option("--fp16", hidden=True)] = False,
    fp32: Annotated[bool, typer.Option("--fp32", hidden=True)] = False,
    attn: Annotated[
        Literal["sdpa", "flash_attention_2", "eager"],
        typer.Option(help="Attention kernel; flash_attention_2 needs bf16 and a GPU."),
    ] = "sdpa",
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(help="Recompute activations in backward: much less memory, ~30 % slower."),
    ] = True,
    deepspeed: Annotated[
        str | None,
        typer.Option(
            help="zero2 (the reference settings) | zero3 | PATH to a DeepSpeed JSON config."
        ),
    ] = None,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N optimizer steps.")] = 200,
    save_total_limit: Annotated[
        int | None, typer.Option(help="Keep at most N complete checkpoints (default 2).")
    ] = 2,
    resume: Annotated[
        str | None,
        typer.Option(
            help="'auto' (newest complete checkpoint in --output-dir, if any) or a checkpoint folder."
        ),
    ] = None,
    eval_steps: Annotated[
        int | None, typer.Option(help="Evaluate (loss + task metric) every N steps.")
    ] = None,
    eval_max_samples: Annotated[
        int, typer.Option(help="Samples used for the generation metric at each evaluation.")
    ] = 64,
    max_new_tokens: Annotated[
        int, typer.Option(help="Generation length for the task metric.")
    ] = 64,
    report_to: Annotated[
        Literal["tensorboard", "none"],
        typer.Option(help="tensorboard writes runs/ in --output-dir."),
    ] = "tensorboard",
    seed: Annotated[int, typer.Option()] = 42,
    workers: Annotated[
        int, typer.Option(help="Data loader worker processes (4+ feeds a GPU).")
    ] = 0,
    skip_validation: Annotated[
        bool,
        typer.Option(help="Train even if `phi3v validate` finds errors (bad samples are skipped)."),
    ] = False,
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
    # Each parameter is named as its TrainConfig field: the values (with a --config file
    # under the command line) become the config with no mapping written out here.
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
    from phi3v_train.checkpoint import CheckpointError
    from phi3v_train.train import PreflightError, run_training
    from phi3v_train.trainer import NonFiniteLossError

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
    from phi3v_train.train import read_train_log
    from phi3v_train.trainer import newest_complete_checkpoint

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
