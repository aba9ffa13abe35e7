"""`phi3v convert <source>`: the shared options, progress bar, summary table and exit codes.

Each source module declares its command with the option types below and calls
`run_from_cli`; `register(app)` adds one sub-command per registered source.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from converters.framework import (
    ConversionError,
    ConversionSummary,
    Converter,
    ProgressSink,
    RunSettings,
    run_conversion,
)
from converters.registry import load_sources

SourceArgument = Annotated[
    Path,
    typer.Argument(
        help="The dataset folder as you have it on disk (see the source's notes above).",
        show_default=False,
    ),
]
OutDirOption = Annotated[
    Path,
    typer.Option(
        "--out-dir",
        "-o",
        help="Output folder: <source>_<split>.jsonl files, images/ and manifest.json.",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-j",
        min=1,
        help="Worker processes (default: all cores). The output is identical for any value.",
        show_default=False,
    ),
]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Delete a previous (finished or interrupted) conversion in --out-dir and start "
        "over. Without it, rerunning the same command resumes where it stopped.",
    ),
]
ValidateOption = Annotated[
    bool,
    typer.Option(
        "--validate/--no-validate",
        help="Run `phi3v validate` on the output at the end.",
    ),
]

console = Console(stderr=True)


class RichProgress(ProgressSink):
    """A progress bar with items, an optional rate counter (e.g. frames/s) and an ETA."""

    def __init__(self, progress: Progress, rate_counter: str | None) -> None:
        self.progress = progress
        self.rate_counter = rate_counter
        self.task: TaskID | None = None
        self.counted = 0

    def start(self, total_items: int, done_items: int, unit: str) -> None:
        self.unit = unit
        self.task = self.progress.add_task(
            f"converting {unit}", total=total_items, completed=done_items, rate=""
        )

    def advance(self, items: int, counters: Counter[str]) -> None:
        assert self.task is not None
        rate = ""
        if self.rate_counter:
            self.counted += counters.get(self.rate_counter, 0)
            elapsed = self.progress.tasks[self.task].elapsed or 0.0
            if elapsed > 0:
                rate = f"{self.counted / elapsed:,.0f} {self.rate_counter}/s"
        self.progress.update(self.task, advance=items, rate=rate)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_from_cli(
    converter: Converter,
    src: Path,
    out_dir: Path,
    workers: int | None,
    overwrite: bool,
    validate: bool,
) -> None:
    """Run a conversion with a progress bar, print the summary, validate, set the exit code."""
    settings = RunSettings(
        out_dir=out_dir,
        workers=workers or default_workers(),
        overwrite=overwrite,
        validate=validate,
    )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    try:
        with progress:
            summary = run_conversion(
                converter, src, settings, RichProgress(progress, converter.rate_counter)
            )
    except ConversionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/yellow] finished work is kept; rerun the same command to "
            "resume, or add --overwrite to start over."
        )
        raise typer.Exit(130) from None
    print_summary(summary)
    if settings.validate and not validate_output(out_dir, settings.workers):
        raise typer.Exit(1)


def print_summary(summary: ConversionSummary) -> None:
    if summary.already_complete:
        console.print(
            f"[green]{summary.out_dir} already holds this conversion[/green] (manifest.json); "
            "use --overwrite to redo it."
        )
    elif summary.resumed_shards:
        console.print(f"resumed: {summary.resumed_shards} finished shards were kept")
    table = Table(title=f"phi3v convert -> {summary.out_dir}")
    table.add_column("split")
    table.add_column("file")
    table.add_column("records", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("skip reasons")
    for name, split in summary.splits.items():
        reasons = ", ".join(f"{reason}: {count}" for reason, count in split.skipped.items())
        table.add_row(
            name, split.file, f"{split.records:,}", f"{sum(split.skipped.values()):,}", reasons
        )
    console.print(table)
    for skip in summary.skips[:10]:
        console.print(escape(f"  skipped [{skip.split}] {skip.item}: {skip.reason}: {skip.detail}"))
    if len(summary.skips) > 10:
        console.print(f"  ... {len(summary.skips) - 10} more skips in manifest.json")


def validate_output(out_dir: Path, workers: int) -> bool:
    """Validate the converted folder; print the validator's summary. True when clean."""
    from phi3v_data.validate import ValidateOptions, validate_paths

    report = validate_paths([out_dir], ValidateOptions(workers=workers))
    if report.ok:
        console.print(f"[green]phi3v validate: {out_dir} is clean[/green]")
        return True
    counts = ", ".join(f"{code}: {count}" for code, count in report.counts_by_code().items())
    console.print(f"[red]phi3v validate found problems in {out_dir}:[/red] {counts}")
    console.print(f"run `phi3v validate {out_dir}` for the details")
    return False


def register(app: typer.Typer) -> None:
    sources = load_sources()
    convert_app = typer.Typer(
        name="convert",
        help=(
            "Convert a dataset as you have it on disk into phi3v JSONL + images/.\n\n"
            f"Sources: {', '.join(sources) or '(none registered)'}. Interrupted runs resume "
            "when rerun with the same arguments; the output is identical for any --workers."
        ),
        no_args_is_help=True,
        rich_markup_mode="rich",
    )
    for source in sources.values():
        convert_app.command(source.name, help=source.help)(source.command)
    app.add_typer(convert_app)
