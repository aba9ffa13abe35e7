"""What `build_report` is asked to do (`ReportOptions`), what it did (`ReportSummary`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3v_data.validate import ValidateOptions

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


class UnknownSplitError(ValueError):
    """`--split` names a split that no input file belongs to."""


@dataclass(frozen=True)
class ReportOptions:
    """Everything `build_report` does; built once from the CLI flags."""

    samples: int = 48  # records sampled per split
    seed: int = 0
    splits: tuple[str, ...] = ()  # only these splits (all when empty)
    num_crops: int = 4
    max_length: int | None = None
    tokenizer: Path | None = None
    image_root: Path | None = None
    workers: int | None = None
    assets_dir: Path | None = None  # thumbnails as files here instead of data URIs
    max_bytes: int = DEFAULT_MAX_BYTES  # budget of the self-contained page
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
