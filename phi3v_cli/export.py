"""`phi3v export`: merge a LoRA adapter into its base, or re-save a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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
    dtype: Annotated[
        Literal["fp32", "bf16", "fp16"] | None,
        typer.Option(
            help="dtype of the saved weights. Default: the base checkpoint's (bf16 for the"
            " release; fp32 doubles the size).",
            show_default=False,
        ),
    ] = None,
) -> None:
    from phi3v_train.evaluate import ModelLoadError
    from phi3v_train.export import ExportError, export_checkpoint

    console = Console(stderr=True)
    try:
        written = export_checkpoint(
            model, out, merge_lora=merge_lora, base_model=base_model, dtype_name=dtype
        )
    except (ExportError, ModelLoadError) as exc:
        console.print(f"[red]phi3v export:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    from phi3v_train.export import checkpoint_dtype

    size = sum(f.stat().st_size for f in written.glob("*.safetensors")) / 1e9
    served = (
        ": loads with the official code (trust_remote_code) and vLLM"
        if any(written.glob("*.py"))
        else " (the base had no remote-code *.py files to carry over)"
    )
    console.print(
        f"[green]done[/]: {escape(str(written))} ({checkpoint_dtype(written)} weights, "
        f"{size:.2f} GB){served}"
    )


def register(app: typer.Typer) -> None:
    app.command("export", help=_HELP)(export)
