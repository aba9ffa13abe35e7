"""`phi3v report`: look at a dataset before a GPU is spent on it (see `phi3v_data.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phi3v_cli.flags import command_line, settings_values, with_settings
from phi3v_data.report.options import ReportOptions

# Left out of the command shown in the page's header: how the page is made and what
# happens after, not what it shows (a size budget that leaves images out says so itself).
_NOT_SHOWN = frozenset({"max_bytes", "workers", "open_page"})


@with_settings(ReportOptions)
def report(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Converted dataset folders (OUT with manifest.json, *.jsonl and images/) or JSONL files.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    settings: dict | None = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
) -> None:
    """Write a visual, self-contained HTML report of a dataset: plots, sampled records, problems.

    Shows what the model will see: each sampled record's images (a clip's frames as one row with frame index and timestamp, NLVR2's left and right images), its questions and answers, the label balance, image sizes, token lengths, and every problem `phi3v validate` finds, next to its record. The page needs no network and no server: open it from disk.

    Example: phi3v report demo_out/ucf101 --max-length 8192 --open
    """
    from rich.console import Console

    from phi3v_data.report import UnknownSplitError, build_report

    console = Console(stderr=True)
    try:
        options = ReportOptions(
            **settings_values(ReportOptions, settings or {}),
            command=command_line(ctx, leave_out=_NOT_SHOWN),
            show_progress=console.is_terminal,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        summary = build_report(paths, out, options)
    except UnknownSplitError as exc:
        raise typer.BadParameter(str(exc), param_hint="--split") from exc
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="PATHS") from exc
    size = summary.bytes / 2**20
    console.print(
        f"{summary.records:,} records, {summary.cards} cards, {summary.errors:,} errors,"
        f" {summary.warnings:,} warnings; page {size:.1f} MiB",
        highlight=False,
    )
    for line in summary.left_out:
        console.print(f"[yellow]left out:[/yellow] {line}", highlight=False)
    if summary.errors:
        console.print("The dataset has errors: see the page's Problems section.", highlight=False)
    typer.echo(str(summary.path.resolve()))
    if open_page:
        import webbrowser

        webbrowser.open(summary.path.resolve().as_uri())


def register(app: typer.Typer) -> None:
    app.command("report")(report)
