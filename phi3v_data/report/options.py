"""What `build_report` is asked to do (`ReportOptions`), what it did (`ReportSummary`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3v_data.flags import flag
from phi3v_data.tokens import NUM_CROPS_HELP
from phi3v_data.validate import ValidateOptions

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


class UnknownSplitError(ValueError):
    """`--split` names a split that no input file belongs to."""


@dataclass(frozen=True)
class ReportOptions:
    """Everything `build_report` does; built once from the CLI flags."""

    # The fields that are flags of `phi3v report` declare them here (phi3v_data.flags).
    samples: int = flag(  # records sampled per split
        48, "--samples", min=0, help="Records shown per split (a seeded random sample)."
    )
    seed: int = flag(0, "--seed", help="Sampling seed: the same seed and data give the same cards.")
    splits: tuple[str, ...] = flag(  # only these splits (all when empty)
        (),
        "--split",
        help="Only this split (repeat for several), e.g. --split val.",
        repeat=True,
        show_default=False,
    )
    num_crops: int = flag(4, "--num-crops", min=1, max=16, help=NUM_CROPS_HELP)
    max_length: int | None = flag(
        None,
        "--max-length",
        min=1,
        help="Training sequence length (e.g. 4096): drawn on the token histogram; longer"
        " samples are reported as token_budget errors.",
        show_default=False,
    )
    tokenizer: Path | None = flag(
        None,
        "--tokenizer",
        exists=True,
        file_okay=False,
        help="A model folder with tokenizer.json: exact text-token counts (default: estimated).",
        show_default=False,
    )
    image_root: Path | None = flag(
        None,
        "--image-root",
        help="Folder image paths are relative to (default: <jsonl dir>/images).",
        show_default=False,
    )
    assets_dir: Path | None = flag(  # thumbnails as files here instead of data URIs
        None,
        "--assets-dir",
        help="Write thumbnails and full-size views as files here (linked relatively) instead"
        " of embedding them: for large samples or to keep the page small.",
        show_default=False,
    )
    max_bytes: int = flag(  # budget of the self-contained page
        DEFAULT_MAX_BYTES,
        "--max-size-mb",
        min=1,
        scale=1024 * 1024,
        help="Size budget of the self-contained page; images that do not fit are left out and"
        " listed.",
    )
    workers: int | None = flag(
        None,
        "--workers",
        "-j",
        min=1,
        help="Image-check processes (default: all cores).",
        show_default=False,
    )
    bad_records: int = 6  # extra cards: the first records with problems
    examples_per_code: int = 10
    command: str = ""  # the command line shown in the header
    show_progress: bool = False

    def __post_init__(self) -> None:
        self.validate_options()  # the validator's own checks (num_crops, tokenizer, ...)
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        if self.max_bytes < 1024 * 1024:
            raise ValueError(f"max_bytes must be at least 1 MiB, got {self.max_bytes}")

    def validate_options(self, allow_empty_assistant: bool = False) -> ValidateOptions:
        return ValidateOptions(
            image_root=self.image_root,
            num_crops=self.num_crops,
            max_length=self.max_length,
            tokenizer=self.tokenizer,
            workers=self.workers,
            show_progress=self.show_progress,
            allow_empty_assistant=allow_empty_assistant,
        )


@dataclass(frozen=True)
class ReportSummary:
    """What `build_report` wrote, for the CLI's closing lines."""

    path: Path
    bytes: int
    cards: int
    records: int
    errors: int
    warnings: int
    left_out: tuple[str, ...]
