"""What a run shows and leaves behind: the start table, skipped-sample counts, the train
log, the loss/learning-rate plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from phi3v_train.checkpoints import TRAIN_LOG_NAME
from phi3v_train.data import SKIPPED_LOG_NAME
from phi3v_train.distributed import world_size
from phi3v_train.train_config import RUN_CONFIG_NAME, TrainConfig

SUMMARY_NAME = "train_summary.json"
PLOT_NAME = "training_curves.png"


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
