"""`phi3v init-model`: write a randomly initialised checkpoint in the official layout."""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from phi3v_data.tokens import NUM_CROPS_HELP, check_num_crops


class ModelSize(str, enum.Enum):
    tiny = "tiny"
    phi35_vision = "phi-3.5-vision"


class WeightDtype(str, enum.Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


def init_model(
    out: Annotated[
        Path,
        typer.Argument(
            help="Directory to write (config.json, safetensors, tokenizer and processor files).",
            show_default=False,
        ),
    ],
    size: Annotated[
        ModelSize,
        typer.Option(
            help="tiny: ~0.2 M parameters, CPU tests and `make demo` in seconds."
            " phi-3.5-vision: the real 4.15 B architecture with random weights (8.3 GB in"
            " bfloat16), for GPU throughput and memory benchmarks.",
        ),
    ] = ModelSize.tiny,
    dtype: Annotated[
        WeightDtype | None,
        typer.Option(
            help="Dtype of the saved weights. Default: float32 for tiny, bfloat16 (as released) for phi-3.5-vision."
        ),
    ] = None,
    num_crops: Annotated[int, typer.Option(help=NUM_CROPS_HELP)] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing checkpoint in OUT.")
    ] = False,
) -> None:
    """Write a randomly initialised Phi-3.5-vision checkpoint directory in the official layout.

    The directory loads like a downloaded microsoft/Phi-3.5-vision-instruct (no remote code):
    use it for tests, `make demo` and benchmarks. Its tokenizer is a small offline one with
    the real special tokens and chat template; config.json, tokenizer_config.json,
    special_tokens_map.json, preprocessor_config.json and processor_config.json are written
    in the released files' style, `auto_map` included.
    """
    from phi3v_train.init_model import init_model_dir

    try:
        check_num_crops(num_crops)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--num-crops") from error
    if (out / "config.json").exists() and not force:
        raise typer.BadParameter(
            f"{out} already holds a checkpoint; pass --force to overwrite it", param_hint="OUT"
        )
    weights_dtype = dtype.value if dtype else ("float32" if size is ModelSize.tiny else "bfloat16")
    console = Console(stderr=True)
    started = time.perf_counter()
    with console.status(f"building the {size.value} model"):
        init_model_dir(out, size.value, seed=seed, dtype=weights_dtype, num_crops=num_crops)
    table = Table(title=f"phi3v init-model: {out}", title_justify="left")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for file in sorted(out.iterdir()):
        if file.is_file():
            table.add_row(file.name, f"{file.stat().st_size:,}")
    console.print(table)
    console.print(
        f"{size.value} model, {weights_dtype} weights, num_crops {num_crops},"
        f" written in {time.perf_counter() - started:.1f} s"
    )


def register(app: typer.Typer) -> None:
    app.command("init-model")(init_model)
