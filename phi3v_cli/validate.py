"""`phi3v validate`: flags -> `ValidateOptions` -> `validate_paths` -> summary and exit code."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phi3v_cli.flags import settings_values, with_settings
from phi3v_data.flags import FlagError
from phi3v_data.jsonl import atomic_write_bytes
from phi3v_data.validate import (
    CODES,
    ValidateOptions,
    ValidationReport,
    iter_problem_examples,
    validate_paths,
)

# Inputs larger than this show a progress bar.
_PROGRESS_BYTES = 8 * 1024 * 1024


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


def _codes_table() -> Table:
    table = Table(title="phi3v validate: problem codes", title_justify="left")
    table.add_column("code", style="bold")
    table.add_column("severity")
    table.add_column("what it means")
    table.add_column("what to do")
    for code, info in CODES.items():
        style = "red" if info.severity == "error" else "yellow"
        # Hints hold commands with brackets (jq '.[]', sys.argv[1]): never markup.
        table.add_row(code, f"[{style}]{info.severity}[/]", escape(info.summary), escape(info.hint))
    return table


@with_settings(ValidateOptions, exclude=("show_progress", "max_pixels", "max_line_bytes"))
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="JSONL files and/or converted directories (all *.jsonl, images under DIR/images).",
            show_default=False,
        ),
    ] = None,
    settings: dict | None = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (exit 1) on warnings too, not only on errors.")
    ] = False,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="text: summary tables. json: the full report (every problem) on stdout, or"
            " in --output.",
        ),
    ] = OutputFormat.text,
    output: Annotated[
        Path | None,
        typer.Option(help="Write the full JSON report (every problem) to this file."),
    ] = None,
    examples: Annotated[
        int, typer.Option(min=0, help="Examples shown per problem code in the text summary.")
    ] = 3,
    list_codes: Annotated[
        bool,
        typer.Option(
            "--list-codes", help="Print every problem code with its severity and hint, then exit."
        ),
    ] = False,
) -> None:
    """Prove a dataset is trainable before a GPU is spent on it.

    Checks every line (JSON, schema, duplicate ids, image paths, tags, turns), every
    image file, and with --max-length each sample's token length; reports every problem
    with file:line, record id, field, a code and a hint. Exit code 0: clean (warnings
    allowed unless --strict), 1: problems found, 2: usage error. `--list-codes` prints
    every problem code with its severity and what to do.

    Examples: [bold]phi3v validate out/[/bold] (a converted directory);
    [bold]phi3v validate train.jsonl --max-length 4096 --num-crops 16 --tokenizer MODEL_DIR[/bold];
    [bold]phi3v validate out/ --format json --output report.json[/bold].
    """
    console = Console()
    if list_codes:
        console.print(_codes_table())
        return
    if not paths:
        raise typer.BadParameter("give at least one JSONL file or directory", param_hint="PATHS")
    for path in paths:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist", param_hint="PATHS")
    total_bytes = sum(f.stat().st_size for p in paths for f in _files(p))
    try:
        options = ValidateOptions(
            **settings_values(ValidateOptions, settings or {}),
            show_progress=total_bytes >= _PROGRESS_BYTES and sys.stderr.isatty(),
        )
    except FlagError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.flag) from exc
    try:
        report = validate_paths(paths, options)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="PATHS") from exc
    if output is not None:
        atomic_write_bytes(output, report.to_json())
    if output_format is OutputFormat.json and output is None:
        sys.stdout.buffer.write(report.to_json())
        sys.stdout.flush()
    elif output_format is OutputFormat.json:
        Console(stderr=True).print(_verdict(report, strict) + f" Report: {output}")
    else:
        print_report(report, console, examples, strict)
        if output is not None:
            console.print(f"Full report with every problem: {output}")
    if not report.passed(strict):
        raise typer.Exit(1)


def _files(path: Path) -> list[Path]:
    return sorted(path.glob("*.jsonl")) if path.is_dir() else [path]


def _verdict(report: ValidationReport, strict: bool) -> str:
    records = report.stats.records
    files = report.stats.files
    where = f"{records:,} records in {files} file{'s' if files != 1 else ''}"
    if not report.problems:
        return f"[bold green]OK[/]: {where}, no problems."
    counts = f"{report.errors:,} errors, {report.warnings:,} warnings"
    if report.passed(strict):
        return f"[bold green]OK[/] with warnings: {where}, {counts}."
    return f"[bold red]FAILED[/]: {where}, {counts}."


def print_report(report: ValidationReport, console: Console, examples: int, strict: bool) -> None:
    """The text summary: problems by code, first examples, stats, verdict."""
    if report.problems:
        counts = Table(title="Problems by code", title_justify="left")
        for column in ("code", "severity", "count", "what to do"):
            counts.add_column(column, justify="right" if column == "count" else "left")
        for code, count in report.counts_by_code().items():
            info = CODES[code]
            style = "red" if info.severity == "error" else "yellow"
            counts.add_row(code, f"[{style}]{info.severity}[/]", f"{count:,}", escape(info.hint))
        console.print(counts)
        if examples:
            for code, problems in iter_problem_examples(report, examples):
                console.print(f"[bold]{code}[/] (first {len(problems)}):")
                for p in problems:
                    parts = [p.location]
                    if p.record_id is not None:
                        parts.append(f"id={p.record_id}")
                    if p.field is not None:
                        parts.append(p.field)
                    console.print(
                        f"  {'  '.join(parts)}: {p.message}", markup=False, highlight=False
                    )
    console.print(_stats_table(report))
    console.print(_verdict(report, strict))


def _stats_table(report: ValidationReport) -> Table:
    stats = report.stats
    table = Table(title="Dataset", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("files", f"{stats.files}")
    table.add_row("records", f"{stats.records:,} ({stats.valid_records:,} schema-valid)")
    table.add_row("turns", f"{stats.turns:,}")
    table.add_row(
        "images", f"{stats.images:,} references, {stats.image_files_checked:,} files checked"
    )
    per_record = ", ".join(f"{n}: {c:,}" for n, c in sorted(stats.images_per_record.items()))
    table.add_row("images per record", per_record or "-")
    if stats.resolutions:
        top = ", ".join(f"{r} x{c:,}" for r, c in stats.resolutions.most_common(5))
        table.add_row("image sizes (top 5)", top)
    percentiles = stats.token_percentiles()
    if percentiles:
        how = "exact (tokenizer)" if stats.tokens_exact else "estimated, pass --tokenizer for exact"
        values = "  ".join(f"{k} {v:,}" for k, v in percentiles.items())
        table.add_row(f"tokens per sample\n({how}, num_crops={stats.num_crops})", values)
    return table


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
