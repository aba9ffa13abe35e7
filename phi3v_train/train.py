"""`phi3v train` as a library call: pre-flight, model for the mode, HF Trainer, final save.

    run_config.json ─┐
    data (JSONL) ──validate──> TrainDataset ──TrainCollator──> Phi3VTrainer ──> checkpoint-N/ (atomic)
    model dir ──modes──> model (full | freeze-vision | LoRA | QLoRA) ─┘            └──> final model + plot

Output folder: the final model (official layout, or a PEFT adapter for LoRA/QLoRA) with
the processor files, `run_config.json`, `train_log.jsonl`, `training_curves.png`,
TensorBoard events under `runs/`, `checkpoint-N/` folders, `skipped_samples.jsonl` when
samples were skipped, and `train_summary.json`, written last.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phi3v_train.checkpoints import (
    TRAIN_LOG_NAME,
    newest_complete_checkpoint,
    resume_checkpoint,
    truncate_train_log,
)
from phi3v_train.data import (
    SKIPPED_LOG_NAME,
    Sample,
    SkipLog,
    TrainDataset,
    load_samples,
    split_files,
)
from phi3v_train.distributed import (
    barrier,
    deepspeed_config,
    gradient_accumulation_steps,
    is_main_process,
    rank,
    shutdown,
    world_size,
)
from phi3v_train.mixing import (
    MixError,
    MixSampler,
    eval_data_files,
    interleave_by_source,
    load_parts,
    mix_report,
    part_weights,
    plan_parts,
)
from phi3v_train.model_files import copy_companion_files
from phi3v_train.train_config import RUN_CONFIG_NAME, ConfigError, TrainConfig, warmup_steps_for
from phi3v_train.trainer import (
    JsonlLogCallback,
    NonFiniteLossCallback,
    NonFiniteLossError,
    Phi3VTrainer,
    RichProgressCallback,
)

SUMMARY_NAME = "train_summary.json"
PLOT_NAME = "training_curves.png"


class PreflightError(RuntimeError):
    """The data failed validation; the message says where and how to see every problem."""


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    train_loss: float | None
    skipped: dict[str, int] = field(default_factory=dict)
    resumed_from: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


# -- pre-flight -----------------------------------------------------------------------------


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
    report = validate_paths(files, options)
    fatal = [
        p
        for p in report.problems
        if p.severity == "error"
        and p.code not in HANDLED_AT_TRAINING
        and not (several_sets and _id_of_another_folder(p))
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


def _id_of_another_folder(problem) -> bool:
    """A duplicate_id problem whose first use is in a file of another folder."""
    if problem.code != "duplicate_id" or " is already used at " not in problem.message:
        return False
    first = problem.message.rsplit(" is already used at ", 1)[1].rsplit(":", 1)[0]
    return Path(first).parent.resolve() != Path(problem.file).parent.resolve()


# -- the run --------------------------------------------------------------------------------


def _training_arguments(config: TrainConfig, precision: str, accumulation: int, total_steps: int):
    import torch
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()
    evaluate = config.eval_steps is not None
    kwargs: dict[str, Any] = {
        "output_dir": str(config.output_dir),
        "per_device_train_batch_size": config.per_device_batch_size,
        "per_device_eval_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": accumulation,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps if config.max_steps is not None else -1,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "adam_beta1": config.adam_beta1,
        "adam_beta2": config.adam_beta2,
        "adam_epsilon": config.adam_epsilon,
        "max_grad_norm": config.max_grad_norm,
        "lr_scheduler_type": "linear",
        "warmup_steps": warmup_steps_for(config, total_steps),
        "optim": "adamw_torch",
        "logging_steps": config.logging_steps,
        "logging_nan_inf_filter": False,  # a NaN must reach the guard, not be averaged away
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": None,  # rotation is ours: only complete checkpoints are deleted
        "eval_strategy": "steps" if evaluate else "no",
        "eval_steps": config.eval_steps,
        "prediction_loss_only": True,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "activation_checkpointing": config.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False},
        "report_to": [] if config.report_to == "none" else [config.report_to],
        "seed": config.seed,
        "dataloader_num_workers": config.workers,
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "disable_tqdm": True,
        "ddp_find_unused_parameters": False,
        "use_cpu": not on_gpu,
        "save_only_model": False,
    }
    if world_size() > 1:
        kwargs["ddp_backend"] = "nccl" if on_gpu else "gloo"
    if config.deepspeed is not None:
        kwargs["deepspeed"] = deepspeed_config(config.deepspeed, precision)
    return TrainingArguments(**kwargs)


def estimated_total_steps(config: TrainConfig, samples: int, accumulation: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    batches = math.ceil(samples / (config.per_device_batch_size * world_size()))
    return max(1, math.ceil(config.epochs * math.ceil(batches / accumulation)))


def run_training(config: TrainConfig, console=None, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train as `config` says; on every process of a torchrun launch.

    `callbacks`: extra `transformers.TrainerCallback`s (library use, e.g. custom logging).
    """
    try:
        result = _run(config, console if is_main_process() else None, callbacks)
    except BaseException:
        shutdown(wait=False)  # the other ranks may never reach a barrier
        raise
    shutdown()
    return result


def _run(config: TrainConfig, console, extra_callbacks: Sequence[Any]) -> TrainResult:
    from transformers import PrinterCallback, set_seed

    from phi3v_train.modes import load_model_for_training, resolve_precision, trainable_parameters
    from phi3v_train.processing_phi3v import Phi3VProcessor

    config.check()
    accumulation = gradient_accumulation_steps(
        config.batch_size, config.per_device_batch_size, world_size()
    )
    precision = resolve_precision(config.precision)
    planned = plan_parts(config.data_dir, config.split, config.train_files)
    train_files = [path for part in planned for path in part.files]
    eval_files = eval_data_files(config.data_dir, config.eval_split, config.eval_files)
    if config.eval_steps is not None and not eval_files:
        raise ConfigError(
            "--eval-steps needs evaluation data: pass --eval-split (e.g. val) with --data-dir,"
            " or --eval-files FILE"
        )
    samples, parts = load_parts(planned, config.image_root)
    try:
        weights = part_weights(parts, config.mix)
    except MixError as exc:
        raise ConfigError(str(exc)) from None
    config.output_dir.mkdir(parents=True, exist_ok=True)
    resume = resume_checkpoint(config)

    stats: dict[str, Any] = {}
    if is_main_process() and not config.skip_validation:
        stats = preflight(config, train_files + eval_files, console, len(parts) > 1)
    if len(parts) > 1:
        stats["datasets"] = mix_report(parts, weights, config.batch_size)
    eval_samples = load_samples(eval_files, config.image_root) if eval_files else []

    set_seed(config.seed)
    processor = Phi3VProcessor.from_pretrained(
        config.model, num_crops=config.num_crops, image_layout=config.image_layout
    )
    train_lengths = None
    if config.group_by_length:  # on every rank: the sampler must be the same everywhere
        from phi3v_train.packing import sample_lengths

        train_lengths = sample_lengths(samples, processor, config.max_length)
    mix_sampler = None
    if len(parts) > 1:  # several data sets: each step's samples by weight, seeded
        mix_sampler = MixSampler(
            [part.size for part in parts],
            weights,
            config.batch_size,
            config.seed,
            lengths=train_lengths,
            micro_batch=config.per_device_batch_size,
        )
    batching = None
    if is_main_process():
        batching = batching_report(
            config, stats.pop("token_lengths", None), train_lengths, len(samples), accumulation
        )
        stats["batching"] = batching
    args = _training_arguments(
        config, precision, accumulation, estimated_total_steps(config, len(samples), accumulation)
    )
    # DeepSpeed places (and under ZeRO-3 partitions) the weights itself: keep them on CPU.
    device = "cpu" if config.deepspeed is not None else str(args.device)
    model = load_model_for_training(config, precision, device=device)
    model.config._name_or_path = str(config.model.resolve())
    if hasattr(model, "peft_config"):
        for adapter in model.peft_config.values():
            adapter.base_model_name_or_path = str(config.model.resolve())

    if is_main_process():
        config.save(config.output_dir / RUN_CONFIG_NAME)
        if resume is not None:
            truncate_train_log(config.output_dir, int(resume.name.split("-")[-1]))
        else:
            for stale in (TRAIN_LOG_NAME, SKIPPED_LOG_NAME):
                (config.output_dir / stale).unlink(missing_ok=True)
    if console is not None:
        print_start_summary(
            console,
            config,
            stats,
            len(samples),
            len(eval_samples),
            trainable_parameters(model),
            accumulation,
            precision,
            resume,
        )

    skips = SkipLog(config.output_dir / SKIPPED_LOG_NAME)
    train_dataset = TrainDataset(samples, processor, config.max_length, config.truncation, skips)
    eval_dataset = (
        TrainDataset(eval_samples, processor, config.max_length, config.truncation)
        if eval_samples
        else None
    )
    guard = NonFiniteLossCallback()
    callbacks = [JsonlLogCallback(config.output_dir / TRAIN_LOG_NAME), guard, *extra_callbacks]
    if console is not None:
        callbacks.append(RichProgressCallback(console))
    from phi3v_train.collator import TrainCollator

    trainer = Phi3VTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=TrainCollator(processor, packing=config.packing),
        processing_class=processor,
        callbacks=callbacks,
        run_config=config,
        task_evaluator=_task_evaluator(config, processor, eval_samples) if eval_samples else None,
        train_lengths=train_lengths,
        train_sampler=mix_sampler,
    )
    trainer.remove_callback(PrinterCallback)  # logs go to train_log.jsonl and the progress bar
    output = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    if guard.bad_step is not None:
        last_good = newest_complete_checkpoint(config.output_dir)
        raise NonFiniteLossError(
            f"the loss became {guard.bad_value} at step {guard.bad_step}; training stopped "
            f"and that step was not saved. Last good checkpoint: {last_good or 'none'}. "
            "Lower --learning-rate, use --bf16 instead of --fp16, or check the data, then "
            "resume with --resume PATH."
        )
    save_final(trainer, config, processor)
    log = read_train_log(config.output_dir)
    result = TrainResult(
        config.output_dir,
        trainer.state.global_step,
        output.training_loss,
        skipped_counts(config.output_dir),
        str(resume) if resume else None,
        log,
    )
    if is_main_process():
        plot_training_curves(log, config.output_dir / PLOT_NAME)
        from phi3v_data.jsonl import atomic_write_bytes

        summary = {
            "global_step": result.global_step,
            "train_loss": result.train_loss,
            "skipped_samples": result.skipped,
            "resumed_from": result.resumed_from,
            "batching": batching,
            "datasets": stats.get("datasets"),
        }
        atomic_write_bytes(
            config.output_dir / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode()
        )
    return result


def _task_evaluator(config: TrainConfig, processor, eval_samples: list[Sample]):
    """Generation metric on (at most `--eval-max-samples`) eval samples, sharded over ranks."""
    from phi3v_train.evaluate import gather_predictions, generate_answers, shard, summarize

    # Every source gets its turn within the first --eval-max-samples.
    chosen = interleave_by_source(eval_samples)[: config.eval_max_samples]

    def evaluate(model) -> dict[str, float]:
        samples = shard(chosen, rank(), world_size())
        real = len(samples)
        synced = config.deepspeed is not None and world_size() > 1
        if synced:  # ZeRO-3 needs every rank in every forward: equal shards, padded
            longest = math.ceil(len(chosen) / world_size())
            samples += [samples[-1] if samples else chosen[0]] * (longest - real)
        local = generate_answers(
            model,
            processor,
            samples,
            batch_size=config.per_device_batch_size,
            max_new_tokens=config.max_new_tokens,
            synced_gpus=synced,
        )[:real]
        summary = summarize(gather_predictions(local))
        return {
            k: float(v) for k, v in summary.items() if k not in ("scored", "unscored", "failed")
        }

    return evaluate


def save_final(trainer, config: TrainConfig, processor) -> None:
    """Final model (or adapter) into the output folder: written aside, then moved in, with
    the base's remote code and processor/tokenizer files (`copy_companion_files`)."""
    staging = config.output_dir / ".final.tmp"
    if is_main_process() and staging.exists():
        shutil.rmtree(staging)
    barrier()
    trainer.save_model(str(staging))  # every rank: ZeRO-3 gathers the weights here
    barrier()
    if is_main_process():
        copy_companion_files(config.model, staging, config.num_crops, processor=processor)
        for item in sorted(staging.iterdir()):
            target = config.output_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        staging.rmdir()
    barrier()


def skipped_counts(output_dir: Path) -> dict[str, int]:
    """Skipped training samples by reason, over all ranks and loader workers (they all
    append to one file). A resumed run may count a sample again that the killed run had
    already fetched after its last checkpoint."""
    from collections import Counter

    path = output_dir / SKIPPED_LOG_NAME
    if not path.is_file():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return dict(Counter(line["reason"] for line in lines))


def read_train_log(output_dir: Path) -> list[dict[str, Any]]:
    path = output_dir / TRAIN_LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training_curves(log: list[dict[str, Any]], path: Path) -> None:
    """Loss (train and eval) and learning rate against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log if "eval_loss" in e]
    rates = [(e["step"], e["learning_rate"]) for e in log if "learning_rate" in e]
    figure, (loss_axes, lr_axes) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    if train:
        loss_axes.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        loss_axes.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    loss_axes.set_ylabel("loss")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    if rates:
        lr_axes.plot(*zip(*rates, strict=True), color="tab:orange")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("step")
    lr_axes.grid(alpha=0.3)
    figure.tight_layout()
    from phi3v_data.jsonl import atomic_write

    with atomic_write(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=100)
    plt.close(figure)


def print_start_summary(
    console,
    config: TrainConfig,
    stats: dict[str, Any],
    samples: int,
    eval_samples: int,
    trainable: dict[str, int],
    accumulation: int,
    precision: str,
    resume: Path | None,
) -> None:
    from rich.table import Table

    table = Table(title="phi3v train", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "mode",
        f"{config.mode}  ({precision}, attn {config.attn}, "
        f"gradient checkpointing {'on' if config.gradient_checkpointing else 'off'})",
    )
    table.add_row("samples", f"{samples} train, {eval_samples} eval")
    for row in stats.get("datasets") or ():
        source = f" ({row['source']})" if row["source"] and row["source"] != row["name"] else ""
        table.add_row(
            f"  {row['name']}{source}",
            f"{row['samples']} samples: {row['share']:.1%} of each step's samples "
            f"(~{row['per_step']:g} of {config.batch_size}), "
            f"{row['passes_per_epoch']:g} pass(es) over it per epoch",
        )
    tokens = stats.get("tokens", {})
    if tokens.get("samples"):
        exact = "exact" if tokens.get("exact") else "estimated"
        table.add_row(
            "tokens per sample",
            f"p50 {tokens['p50']}  p90 {tokens['p90']}  p99 {tokens['p99']}  max {tokens['max']}"
            f"  ({exact}, num_crops {tokens.get('num_crops')})",
        )
    batching = stats.get("batching")
    if batching:
        packed, padded = "packed", "padded"
        if config.packing:
            packed += " (in use)"
        else:
            padded += " (in use)"
        table.add_row(
            "tokens per step",
            f"{batching['tokens_per_step']:,.0f} sample tokens; computed "
            f"{batching['tokens_per_step']:,.0f} {packed}, "
            f"{batching['padded_tokens_per_step']:,.0f} {padded}  (one epoch, estimated)",
        )
        random_pad = batching["random_order_padding_fraction"]
        grouped_pad = batching["length_grouped_padding_fraction"]
        if config.group_by_length:
            order = f"length-grouped; {random_pad:.1%} in random order"
        else:
            order = f"random order; --group-by-length would make it {grouped_pad:.1%}"
        table.add_row(
            "padding",
            f"{packed} 0%; {padded} {batching['padding_fraction']:.1%} ({order})",
        )
    if stats.get("over_max_length"):
        policy = (
            "truncated where no image is cut, else dropped"
            if config.truncation == "truncate"
            else "dropped"
        )
        table.add_row(
            "over --max-length",
            f"{stats['over_max_length']} sample(s): {policy} (counted in skipped_samples.jsonl)",
        )
    table.add_row(
        "trainable parameters",
        "  ".join(f"{name} {count:,}" for name, count in trainable.items()),
    )
    table.add_row(
        "effective batch",
        f"{config.batch_size} = {config.per_device_batch_size} per device x {world_size()} "
        f"process(es) x {accumulation} accumulation step(s)",
    )
    table.add_row("deepspeed", config.deepspeed or "off")
    table.add_row("resume", str(resume) if resume else "no (fresh run)")
    table.add_row("output", str(config.output_dir))
    table.add_row("every setting", str(config.output_dir / RUN_CONFIG_NAME))
    console.print(table)
