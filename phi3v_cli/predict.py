"""`phi3v predict`: one prompt (with images) or every record of a JSONL file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

_HELP = """Answer a prompt about images with a trained model (or a LoRA adapter).

  phi3v predict -m RUN --image a.jpg --prompt "What is shown?"
  phi3v predict -m RUN --input records.jsonl --output answers.jsonl

Tags: without <|image_k|> tags the images go first, one per line (the training layout)."""


def predict(
    model: Annotated[
        Path,
        typer.Option(
            "--model", "-m", help="Run folder, checkpoint or adapter.", exists=True, file_okay=False
        ),
    ],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="The question.")] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", "-i", help="An image file (repeatable, in order)."),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input", help="JSONL records: answers their last turn.", exists=True, dir_okay=False
        ),
    ] = None,
    image_root: Annotated[
        Path | None, typer.Option(help="Image root for --input (default: images/ beside it).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write JSONL answers here (default: stdout)."),
    ] = None,
    base_model: Annotated[Path | None, typer.Option(help="Base checkpoint of an adapter.")] = None,
    max_new_tokens: Annotated[int, typer.Option()] = 128,
    batch_size: Annotated[int, typer.Option()] = 4,
    num_crops: Annotated[int | None, typer.Option(help="Default: the model's.")] = None,
    precision: Annotated[
        Literal["auto", "bf16", "fp16", "fp32"],
        typer.Option(help="auto: bf16 if the GPU has it, else fp16; fp32 on CPU."),
    ] = "auto",
) -> None:
    import torch

    from phi3v_data.jsonl import atomic_write_bytes
    from phi3v_train.evaluate import (
        ModelLoadError,
        generate_answers,
        load_for_inference,
        restore_order,
    )
    from phi3v_train.modes import resolve_precision
    from phi3v_train.predict import file_samples, prompt_sample

    console = Console(stderr=True)
    if (prompt is None) == (input_file is None):
        raise typer.BadParameter("pass either --prompt (with --image ...) or --input FILE")
    try:
        samples = (
            [prompt_sample(prompt, image or [])]
            if prompt is not None
            else file_samples(input_file, image_root)
        )
        loaded, processor = load_for_inference(
            model,
            base_model=base_model,
            dtype_name=resolve_precision(precision),
            device="cuda" if torch.cuda.is_available() else "cpu",
            num_crops=num_crops,
        )
    except (FileNotFoundError, ModelLoadError, ValueError) as exc:
        console.print(f"[red]phi3v predict:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    answers = generate_answers(
        loaded, processor, samples, batch_size=batch_size, max_new_tokens=max_new_tokens
    )
    answers = restore_order(answers, samples)  # failed samples come back first
    if prompt is not None:
        answer = answers[0]
        if answer.prediction is None:
            console.print(f"[red]phi3v predict:[/] {escape(str(answer.error))}")
            raise typer.Exit(code=1)
        if not answer.prediction:
            console.print("[yellow](the model's answer is empty: it ended at once)[/]")
        typer.echo(answer.prediction)
        return
    lines = "".join(
        json.dumps(
            {"id": a.id, "prediction": a.prediction, **({"error": a.error} if a.error else {})},
            ensure_ascii=False,
        )
        + "\n"
        for a in answers
    )
    failed = [a for a in answers if a.prediction is None]
    if output is None:
        sys.stdout.write(lines)
    else:
        atomic_write_bytes(output, lines.encode())
        answered = len(answers) - len(failed)
        console.print(f"{answered} of {len(answers)} answers written to {output}")
    if failed:
        first = failed[0]
        console.print(
            f"[red]phi3v predict:[/] {len(failed)} of {len(answers)} sample(s) failed (their "
            f"lines carry an 'error'); the first, {escape(first.id)}: {escape(str(first.error))}"
        )
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("predict", help=_HELP)(predict)
