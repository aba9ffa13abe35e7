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
from phi3v_train.preflight import batching_report, preflight
from phi3v_train.run_report import (
    PLOT_NAME,
    SUMMARY_NAME,
    plot_training_curves,
    print_start_summary,
    read_train_log,
    skipped_counts,
)
from phi3v_train.train_config import RUN_CONFIG_NAME, ConfigError, TrainConfig, warmup_steps_for
from phi3v_train.trainer import (
    JsonlLogCallback,
    NonFiniteLossCallback,
    NonFiniteLossError,
    Phi3VTrainer,
    RichProgressCallback,
)


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    train_loss: float | None
    skipped: dict[str, int] = field(default_factory=dict)
    resumed_from: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


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
