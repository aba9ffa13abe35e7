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
    NothingConverted,
    ProgressSink,
    RunSettings,
    Skip,
    record_validation,
    recorded_validation,
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
        help="Replace the conversion in --out-dir (finished or interrupted, of any source): "
        "first delete what a conversion wrote there (manifest.json, the *.jsonl files it "
        "made, images/, its work folder) and nothing else: other files are left alone, and "
        "*.jsonl files or an images/ folder that no conversion wrote stop the run, deleting "
        "nothing (move them away or choose another --out-dir). Without --overwrite, rerunning "
        "the same command resumes an interrupted run, and does nothing when the finished "
        "output is unchanged (JSONL sha256 as in manifest.json; validated again only if its "
        "last validation failed or never ran).",
    ),
]
ValidateOption = Annotated[
    bool,
    typer.Option(
        "--validate/--no-validate",
        help="Run `phi3v validate` on the output at the end (exit 1 on errors; warnings are "
        "shown, as `phi3v validate` shows them).",
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
    except NothingConverted as exc:
        print_summary(exc.summary, examples=False)
        print_skip_examples(exc.summary.skips, more_in_manifest=False)
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    except ConversionError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/yellow] finished work is kept; rerun the same command to "
            "resume, or add --overwrite to start over."
        )
        raise typer.Exit(130) from None
    if summary.already_complete:
        print_summary(summary, examples=False)
        record = recorded_validation(out_dir)
        if not settings.validate or (record is not None and record["passed"]):
            verdict = ""
            if settings.validate and record is not None:
                warnings = record.get("warnings", 0)
                plural = "s" if warnings != 1 else ""
                verdict = " Validated when converted: OK" + (
                    f" with {warnings:,} warning{plural}." if warnings else "."
                )
            console.print(
                f"[green]{escape(str(out_dir))} is already converted with the same options; "
                f"nothing to do (--overwrite to redo).[/green]{verdict}"
            )
            return
        why = "was never validated" if record is None else "failed its last validation"
        console.print(
            f"{escape(str(out_dir))} is already converted with the same options, but it {why}: "
            "validating it (--no-validate to skip)."
        )
    else:
        print_summary(summary)
    if settings.validate and not validate_output(out_dir, settings.workers):
        raise typer.Exit(1)


def print_summary(summary: ConversionSummary, examples: bool = True) -> None:
    """The per-split table, what --overwrite replaced, empty splits and skip examples."""
    if summary.removed:
        console.print(
            escape(
                f"--overwrite: removed the previous conversion from {summary.out_dir}: "
                f"{', '.join(summary.removed)}"
            )
        )
        if summary.kept:
            console.print(
                escape(f"  left alone (not written by a conversion): {_few(summary.kept)}")
            )
    if summary.resumed_shards:
        console.print(f"resumed: {summary.resumed_shards} finished shards were kept")
    table = Table(title=escape(f"phi3v convert -> {summary.out_dir}"))
    table.add_column("split")
    table.add_column("file")
    table.add_column("records", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("skip reasons")
    for name, split in summary.splits.items():
        reasons = ", ".join(f"{reason}: {count}" for reason, count in split.skipped.items())
        table.add_row(
            escape(name),
            escape(split.file),
            f"{split.records:,}",
            f"{sum(split.skipped.values()):,}",
            escape(reasons),
        )
    console.print(table)
    if not examples:
        return
    print_skip_examples(summary.skips, more_in_manifest=True)
    if summary.records:
        for name, split in summary.splits.items():
            if split.records:
                continue
            skipped = sum(split.skipped.values())
            why = (
                f"all {skipped:,} of its inputs were skipped ({_reasons(split.skipped)})"
                if skipped
                else "the input lists nothing for it"
            )
            console.print(
                escape(f"warning: split {name} has no records ({split.file} is empty): {why}"),
                style="yellow",
            )


def print_skip_examples(skips: list[Skip], more_in_manifest: bool, per_reason: int = 3) -> None:
    """The first few skips of each reason, most frequent reason first."""
    by_reason: dict[str, list[Skip]] = {}
    for skip in skips:
        by_reason.setdefault(skip.reason, []).append(skip)
    shown = 0
    for reason, group in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        console.print(escape(f"skipped: {reason} x{len(group):,}"))
        for skip in group[:per_reason]:
            console.print(escape(f"  [{skip.split}] {skip.item}: {skip.detail}"))
            shown += 1
    if len(skips) > shown:
        where = " (every one is in manifest.json)" if more_in_manifest else ""
        console.print(f"  ... {len(skips) - shown:,} more skips{where}")


def _reasons(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{reason}: {count:,}" for reason, count in ordered)


def _few(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def validate_output(out_dir: Path, workers: int) -> bool:
    """Validate the converted folder and print the report as `phi3v validate` does.

    True when it passed (no errors; warnings are shown). The verdict is recorded beside
    the manifest, so that a rerun of the same command on the unchanged output need not
    validate it again. (Tests count the calls by patching `converters.cli.validate_output`.)
    """
    from phi3v_data.validate import ValidateOptions, validate_paths
    from phi3v_cli.validate import print_report

    console.print(escape(f"phi3v validate {out_dir}"), style="bold")
    report = validate_paths([out_dir], ValidateOptions(workers=workers))
    print_report(report, console, 3, False)
    passed = report.passed(False)
    record_validation(out_dir, passed, report.errors, report.warnings)
    if not passed:
        console.print(
            escape(
                f"The conversion is complete, but the output has errors: `phi3v validate "
                f"{out_dir} --format json --output report.json` lists every problem."
            )
        )
    return passed


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
