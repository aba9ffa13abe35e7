"""`phi3v report`: look at a dataset before a GPU is spent on it (see `phi3v_data.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phi3v_cli.flags import command_line
from phi3v_data.tokens import NUM_CROPS_HELP

# Left out of the command shown in the page's header: how the page is made and what
# happens after, not what it shows (a size budget that leaves images out says so itself).
_NOT_SHOWN = frozenset({"max_size_mb", "workers", "open_page"})


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
    samples: Annotated[
        int,
        typer.Option("--samples", min=0, help="Records shown per split (a seeded random sample)."),
    ] = 48,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Sampling seed: the same seed and data give the same cards."),
    ] = 0,
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split",
            help="Only this split (repeat for several), e.g. --split val.",
            show_default=False,
        ),
    ] = None,
    num_crops: Annotated[int, typer.Option("--num-crops", min=1, max=16, help=NUM_CROPS_HELP)] = 4,
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            min=1,
            help="Training sequence length (e.g. 4096): drawn on the token histogram; longer"
            " samples are reported as token_budget errors.",
            show_default=False,
        ),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            "--tokenizer",
            exists=True,
            file_okay=False,
            help="A model folder with tokenizer.json: exact text-token counts (default: estimated).",
            show_default=False,
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root",
            help="Folder image paths are relative to (default: <jsonl dir>/images).",
            show_default=False,
        ),
    ] = None,
    assets_dir: Annotated[
        Path | None,
        typer.Option(
            "--assets-dir",
            help="Write thumbnails and full-size views as files here (linked relatively) instead"
            " of embedding them: for large samples or to keep the page small.",
            show_default=False,
        ),
    ] = None,
    max_size_mb: Annotated[
        int,
        typer.Option(
            "--max-size-mb",
            min=1,
            help="Size budget of the self-contained page; images that do not fit are left out and listed.",
        ),
    ] = 20,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-j",
            min=1,
            help="Image-check processes (default: all cores).",
            show_default=False,
        ),
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
) -> None:
    """Write a visual, self-contained HTML report of a dataset: plots, sampled records, problems.

    Shows what the model will see: each sampled record's images (a clip's frames as one row with frame index and timestamp, NLVR2's left and right images), its questions and answers, the label balance, image sizes, token lengths, and every problem `phi3v validate` finds, next to its record. The page needs no network and no server: open it from disk.

    Example: phi3v report demo_out/ucf101 --max-length 8192 --open
    """
    from rich.console import Console

    from phi3v_data.report import ReportOptions, UnknownSplitError, build_report

    console = Console(stderr=True)
    try:
        options = ReportOptions(
            samples=samples,
            seed=seed,
            splits=tuple(split or ()),
            num_crops=num_crops,
            max_length=max_length,
            tokenizer=tokenizer,
            image_root=image_root,
            workers=workers,
            assets_dir=assets_dir,
            max_bytes=max_size_mb * 1024 * 1024,
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
