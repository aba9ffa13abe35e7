"""`phi3v eval`: flags -> `EvalConfig` -> `run_evaluation` -> metrics table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phi3v_cli.flags import settings_values, with_settings
from phi3v_train.eval_config import EvalConfig

_HELP = """Generate answers for a split and score them: predictions.jsonl + metrics.json.

--metric auto picks per record source, as the reference does: ANLS for docvqa,
exact-match accuracy (strip, strip ".", lower-case) for the others. Gold answers are
meta.answers when present, else the last turn's answer.
--max-new-tokens defaults to the longest gold answer of the evaluated samples (in the
model's tokens) + 8; predictions cut at the limit without an end token are counted
("truncated" in metrics.json) and warned about.
Several GPUs: torchrun --nproc_per_node=N $(which phi3v) eval ... (sharded, gathered on rank 0)."""


@with_settings(EvalConfig)
def evaluate(
    settings: dict | None = None,
    show: Annotated[
        int,
        typer.Option(
            min=0, help="Print N predictions (spread over the split) beside their gold answers."
        ),
    ] = 8,
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from phi3v_train.data import DataError
    from phi3v_train.distributed import is_main_process, world_size
    from phi3v_train.evaluate import PREDICTIONS_NAME, ModelLoadError, run_evaluation

    console = Console(stderr=True)
    config = EvalConfig(**settings_values(EvalConfig, settings or {}))
    if config.data_dir is None and not config.files:
        raise typer.BadParameter("pass --data-dir OUT or JSONL files")
    progress = Progress(
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not is_main_process(),
    )
    try:
        with progress:
            task = progress.add_task("eval", total=None)
            metrics = run_evaluation(
                config, on_batch=lambda n: progress.advance(task, n * world_size())
            )
    except (DataError, ModelLoadError, FileNotFoundError) as exc:
        console.print(f"[red]phi3v eval:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    if not is_main_process():
        return
    table = Table(title=f"phi3v eval: {config.model}", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if name == "majority_baseline":
            continue
        if name == "accuracy" and "majority_baseline" in metrics:
            baseline = metrics["majority_baseline"]
            table.add_row(name, f"{value:.4f}  (chance: {baseline:.4f}, always the commonest)")
        elif isinstance(value, float):
            table.add_row(name, f"{value:.4f}")
        elif isinstance(value, int):
            table.add_row(name, str(value))
    console.print(table)
    if show:
        console.print(_predictions_table(config.out / PREDICTIONS_NAME, show))
    console.print(f"max new tokens: {metrics['max_new_tokens']} ({metrics['max_new_tokens_from']})")
    truncated = metrics.get("truncated", 0)
    if truncated:
        generated = metrics["samples"] - metrics["failed"]
        console.print(
            f"[yellow]warning:[/] {truncated} of {generated} predictions stopped at the "
            f"max-new-tokens limit ({metrics['max_new_tokens']}) without an end token: they "
            'may be cut short (raise --max-new-tokens; such lines say "truncated": true in '
            "predictions.jsonl)"
        )
    console.print(f"predictions.jsonl and metrics.json in {config.out}")


def _predictions_table(path: Path, count: int) -> Table:
    """`count` predictions spread evenly over `path`, beside their gold answers."""
    import json

    rows = path.read_text(encoding="utf-8").splitlines()
    picked = sorted({index * len(rows) // count for index in range(min(count, len(rows)))})
    table = Table(title=f"{len(picked)} of {len(rows)} predictions", title_justify="left")
    for column in ("id", "prediction", "gold", "score"):
        table.add_column(column, overflow="fold")
    for index in picked:
        row = json.loads(rows[index])
        prediction = row["prediction"] if row["prediction"] is not None else row.get("error")
        score = "-" if row["score"] is None else f"{row['score']:.2f}"
        table.add_row(
            escape(row["id"]), escape(str(prediction)), escape(" | ".join(row["answers"])), score
        )
    return table


def register(app: typer.Typer) -> None:
    app.command("eval", help=_HELP)(evaluate)
