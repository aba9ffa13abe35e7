"""Synthetic still images and Hugging Face copies for the image-source fixtures."""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any


def image_bytes(width: int, height: int, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A small deterministic picture (a gradient whose colours depend on `seed`)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    base = zlib.crc32(str(seed).encode())
    pixels = np.stack(
        [
            (x * 255 // max(1, width)) ^ (base & 0xFF),
            (y * 255 // max(1, height)),
            (x + y + base) % 256,
        ],
        axis=-1,
    ).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def document_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A page-like PNG: white with dark text-like bars and scanner noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    page = np.full((height, width), 255, dtype="uint8")
    for top in range(height // 20, height - height // 20, max(2, height // 60)):
        left = int(rng.integers(width // 20, width // 8))
        right = int(rng.integers(width // 2, width - width // 20))
        page[top : top + max(1, height // 150), left:right] = rng.integers(0, 80)
    # Scanner noise: real pages are a few hundred kB of PNG, not a few kB.
    page = page - rng.integers(0, 12, size=page.shape, dtype="uint8") // 4 * (page > 128)
    buffer = io.BytesIO()
    Image.fromarray(page).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def save_hf_copy(
    root: Path, splits: dict[str, list[dict[str, Any]]], features: Any, kind: str
) -> Path:
    """Write `splits` as a Hugging Face copy: `parquet` files or a `save_to_disk` folder."""
    from datasets import Dataset, DatasetDict

    datasets = {name: Dataset.from_list(rows, features=features) for name, rows in splits.items()}
    if kind == "parquet":
        for name, dataset in datasets.items():
            target = root / "data" / f"{name}-00000-of-00001.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(str(target))
    else:
        DatasetDict(datasets).save_to_disk(str(root))
    return root
