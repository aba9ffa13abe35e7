"""`ValidateOptions`: what `validate_paths` checks and how, checked once when built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3v_data.images import DEFAULT_MAX_PIXELS
from phi3v_data.jsonl import DEFAULT_MAX_LINE_BYTES
from phi3v_data.records import IMAGE_LAYOUTS
from phi3v_data.tokens import check_num_crops


@dataclass(frozen=True)
class ValidateOptions:
    """Everything `validate_paths` checks and how; built once from the CLI flags."""

    image_root: Path | None = None  # None: <jsonl dir>/images
    check_images: bool = True
    deep: bool = False
    allow_empty_assistant: bool = False
    max_images_per_record: int = 64
    max_length: int | None = None
    num_crops: int = 4
    tokenizer: Path | None = None  # a directory with tokenizer.json: exact text tokens
    image_layout: str = "seed"  # where untagged turns get their tags (records.IMAGE_LAYOUTS)
    workers: int | None = None  # image-check processes; None: all cores
    show_progress: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def __post_init__(self) -> None:
        check_num_crops(self.num_crops)
        if self.image_layout not in IMAGE_LAYOUTS:
            raise ValueError(
                f"image_layout must be one of {IMAGE_LAYOUTS}, got {self.image_layout!r}"
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be positive, got {self.max_length}")
        if self.max_length is not None and not self.check_images:
            raise ValueError("the token budget needs image sizes: do not turn image checks off")
        if self.max_images_per_record < 0:
            raise ValueError("max_images_per_record must be >= 0")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.tokenizer is not None and not (Path(self.tokenizer) / "tokenizer.json").is_file():
            raise ValueError(f"{self.tokenizer} has no tokenizer.json")
