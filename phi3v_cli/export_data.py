"""`phi3v export-data`: a converted folder -> a LLaVA or ShareGPT file (`phi3v_data.export_data`)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from phi3v_data.records import IMAGE_LAYOUT_HELP

_HELP = (
    "Write one split of a converted folder as a LLaVA or ShareGPT file, for other trainers."
    "\n\n"
    'llava: a JSON array of {"id", "image", "conversations": [{"from": "human"|"gpt", '
    '"value"}]} (LLaVA\'s own format). sharegpt: {"id", "messages": [{"role", "content"}], '
    '"images"} with <image> placeholders (LLaMA-Factory, ms-swift). The -o extension picks '
    "the container: .json (the usual one for both) writes one JSON array, .jsonl one row per "
    "line.\n\n"
    "<|image_k|> tags become <image>; a turn without tags gets its <image> tokens where the "
    "default layout puts them (first, then a newline); meta.system becomes a system message. "
    "Image paths are written relative to --image-root (default: the folder's images/): give "
    "that folder to the other tool (LLaVA --image_folder, LLaMA-Factory media_dir), or to "
    "phi3v convert llava|sharegpt FILE -o OUT --image-folder DIR, which gives back the same "
    "records.\n\n"
    "Example: phi3v export-data data/docvqa --split train --format llava -o docvqa_llava.json"
    "\n"
)


def export_data_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="A converted folder (OUT of phi3v convert) or one JSONL file.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        Literal["llava", "sharegpt"],
        typer.Option("--format", "-f", help="The format to write.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The file to write: .json (one JSON array) or .jsonl (one row per line).",
            show_default=False,
        ),
    ],
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="The split to export (default: the folder's only split).",
            show_default=False,
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root",
            help="Write image paths relative to this folder (default: the folder's images/, "
            "paths as they are in the records).",
            show_default=False,
        ),
    ] = None,
    image_layout: Annotated[
        Literal["seed", "per-line"], typer.Option(help=IMAGE_LAYOUT_HELP)
    ] = "seed",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
) -> None:
    from phi3v_data.export_data import ExportError, NothingExported, export_data

    console = Console(stderr=True)
    try:
        summary = export_data(path, fmt, output, split, image_root, image_layout, overwrite)
    except ExportError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1 if isinstance(exc, NothingExported) else 2) from exc
    shape = "one JSON array" if summary.container == "json" else "JSONL"
    console.print(
        escape(
            f"wrote {summary.records:,} records ({summary.turns:,} turns, {summary.images:,} "
            f"images) to {output} as {fmt} ({shape})"
        ),
        highlight=False,
    )
    if summary.skipped:
        console.print(f"[yellow]skipped {len(summary.skipped):,} records:[/yellow]")
        for where, why in summary.skipped[:5]:
            console.print(escape(f"  {where}: {why}"), highlight=False)
        if len(summary.skipped) > 5:
            console.print(f"  ... {len(summary.skipped) - 5:,} more", highlight=False)
    if summary.empty_answers:
        console.print(
            escape(f"warning: {summary.empty_answers:,} answers are empty (inference-only data)"),
            style="yellow",
        )
    if summary.meta_left_out:
        console.print(
            escape(
                f"note: only meta.system is written (as the system message); "
                f"{summary.meta_left_out:,} of the records have more meta, left out"
            ),
            highlight=False,
        )
    root = shlex.quote(str(summary.image_root))
    console.print(
        escape(
            f"image folder: {summary.image_root}. Back: phi3v convert {fmt} "
            f"{shlex.quote(str(output))} -o OUT --image-folder {root}"
        ),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("export-data", help=_HELP)(export_data_command)
