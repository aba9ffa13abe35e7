"""`phi3v export`: merge a LoRA adapter into its base, or re-save a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

_HELP = """Write a standalone checkpoint in the official Phi-3.5-vision layout.

  phi3v export -m RUN --merge-lora -o merged/    (LoRA or QLoRA adapter -> full model)
  phi3v export -m RUN --dtype bf16 -o small/     (full checkpoint, re-saved in bf16)"""


def export(
    model: Annotated[
        Path,
        typer.Option(
            "--model", "-m", help="Run folder, checkpoint or adapter.", exists=True, file_okay=False
        ),
    ],
    out: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write the checkpoint.")],
    merge_lora: Annotated[
        bool, typer.Option(help="Merge a LoRA/QLoRA adapter into its base weights.")
    ] = False,
    base_model: Annotated[
        Path | None,
        typer.Option(help="Base checkpoint of the adapter (default: from adapter_config.json)."),
    ] = None,
    dtype: Annotated[str, typer.Option(help="fp32 | bf16 | fp16 for the saved weights.")] = "fp32",
) -> None:
    from phi3v_train.evaluate import ModelLoadError
    from phi3v_train.export import ExportError, export_checkpoint

    console = Console(stderr=True)
    if dtype not in ("fp32", "bf16", "fp16"):
        raise typer.BadParameter("choose fp32, bf16 or fp16", param_hint="--dtype")
    try:
        written = export_checkpoint(
            model, out, merge_lora=merge_lora, base_model=base_model, dtype_name=dtype
        )
    except (ExportError, ModelLoadError) as exc:
        console.print(f"[red]phi3v export:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    console.print(f"[green]exported[/] {written}")


def register(app: typer.Typer) -> None:
    app.command("export", help=_HELP)(export)
