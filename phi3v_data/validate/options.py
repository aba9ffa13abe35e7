"""`ValidateOptions`: what `validate_paths` checks and how, checked once when built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3v_data.flags import FlagError, flag
from phi3v_data.images import DEFAULT_MAX_PIXELS
from phi3v_data.jsonl import DEFAULT_MAX_LINE_BYTES
from phi3v_data.records import IMAGE_LAYOUT_HELP, IMAGE_LAYOUTS
from phi3v_data.tokens import NUM_CROPS_HELP, check_num_crops


@dataclass(frozen=True)
class ValidateOptions:
    """Everything `validate_paths` checks and how; built once from the CLI flags."""

    # The fields that are flags of `phi3v validate` declare them here (phi3v_data.flags).
    image_root: Path | None = flag(  # None: <jsonl dir>/images
        None,
        help="Root of the image paths. Default: the images/ folder beside each JSONL file.",
    )
    check_images: bool = flag(
        True,
        "--images/--no-images",
        help="Check image files (exists, regular file, decodes, size). --no-images checks"
        " only JSON, schema, records and path rules: fast, touches no image.",
    )
    deep: bool = flag(
        False,
        "--deep",
        help="Decode every image fully (slow). Default: PNG verify() and a 1/8-size"
        " JPEG decode, which catch truncated and damaged files.",
    )
    allow_empty_assistant: bool = flag(
        False,
        "--allow-empty-assistant",
        help="Allow empty answers (inference-only data). Splits marked inference_only in a"
        " converted directory's manifest.json are allowed anyway.",
    )
    max_images_per_record: int = flag(
        64, "--max-images", min=0, help="Most images one record may have."
    )
    max_length: int | None = flag(
        None,
        min=1,
        help="Token budget: report samples longer than this (text + image tokens, image"
        " tokens from each image's size at --num-crops). E.g. the training --max-length.",
    )
    num_crops: int = flag(4, help=NUM_CROPS_HELP)
    tokenizer: Path | None = flag(  # a directory with tokenizer.json: exact text tokens
        None,
        help="Directory with tokenizer.json (e.g. the model directory) for exact text"
        " token counts. Without it text tokens are estimated from bytes.",
    )
    # Where untagged turns get their tags (records.IMAGE_LAYOUTS).
    image_layout: str = flag("seed", help=IMAGE_LAYOUT_HELP)
    workers: int | None = flag(  # image-check processes; None: all cores
        None, min=1, help="Processes for image checks. Default: all cores."
    )
    show_progress: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def __post_init__(self) -> None:
        """Raises `FlagError` (a ValueError) naming the flag of a value that cannot work."""
        try:
            check_num_crops(self.num_crops)
        except ValueError as exc:
            raise FlagError("--num-crops", str(exc)) from None
        if self.image_layout not in IMAGE_LAYOUTS:
            raise FlagError("--image-layout", f"choose one of {', '.join(IMAGE_LAYOUTS)}")
        if self.max_length is not None and self.max_length < 1:
            raise FlagError("--max-length", f"must be positive, got {self.max_length}")
        if self.max_length is not None and not self.check_images:
            raise FlagError("--max-length", "the token budget needs image sizes: drop --no-images")
        if self.max_images_per_record < 0:
            raise FlagError("--max-images", "must be >= 0")
        if self.workers is not None and self.workers < 1:
            raise FlagError("--workers", f"must be >= 1, got {self.workers}")
        if self.tokenizer is not None and not (Path(self.tokenizer) / "tokenizer.json").is_file():
            raise FlagError("--tokenizer", f"{self.tokenizer} has no tokenizer.json")
