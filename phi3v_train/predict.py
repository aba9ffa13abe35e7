"""`phi3v predict`: answers for one prompt with images, or for every record of a JSONL file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from phi3v_data.records import Record, Turn
from phi3v_train.data import Sample, load_samples


def prompt_sample(prompt: str, images: Sequence[Path]) -> Sample:
    """A one-turn sample from a prompt and image files anywhere on disk.

    The images' common folder becomes the image root, so the record keeps the usual
    relative paths (and the usual path checks).
    """
    resolved = [Path(os.path.realpath(image)) for image in images]
    for image in resolved:
        if not image.is_file():
            raise FileNotFoundError(f"--image {image}: no such file")
    root = Path(os.path.commonpath([str(p.parent) for p in resolved])) if resolved else Path.cwd()
    rels = tuple(p.relative_to(root).as_posix() for p in resolved)
    record = Record("prompt", "prompt", (Turn(prompt, "", rels),))
    return Sample(record, root, "--prompt")


def file_samples(path: Path, image_root: Path | None = None) -> list[Sample]:
    """Every record of a JSONL file (the last turn's answer, if any, is ignored)."""
    return load_samples([path], image_root)
