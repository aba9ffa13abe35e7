"""Training data: records from a converted folder (or JSONL files), images loaded lazily.

Records are small and held in memory (text only); images are opened when a sample is
fetched, so a data set of any size starts instantly. A video sample's frames are plain
images. A sample that cannot be used at training time (an unreadable image, a text that
does not fit `--max-length`) is reported with its record id, counted, and replaced by
the next usable sample, so a bad file never crashes a run hours in and batches keep
their size.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phi3v_data import dataset_dir
from phi3v_data.images import ACCEPTED_FORMATS, DEFAULT_MAX_PIXELS
from phi3v_data.paths import PathProblem, resolve_image_path
from phi3v_data.records import Record
from phi3v_train.collator import fit_to_max_length

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

SKIPPED_LOG_NAME = "skipped_samples.jsonl"
# Give up after this many unusable samples in a row: the data, not one file, is broken.
MAX_CONSECUTIVE_SKIPS = 64


class DataError(ValueError):
    """Training data that cannot be used at all (missing split, empty files)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """A record and where it came from (for messages) and where its images live."""

    record: Record
    image_root: Path
    location: str


class UnreadableImage(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def split_files(data_dir: Path, split: str) -> list[Path]:
    """The JSONL file(s) of `split` in a converted folder (see `phi3v_data.dataset_dir`)."""
    try:
        return dataset_dir.split_files(data_dir, split)
    except dataset_dir.DatasetDirError as exc:
        raise DataError(str(exc)) from None


def has_split(data_dir: Path, split: str) -> bool:
    try:
        split_files(data_dir, split)
    except DataError:
        return False
    return True


def load_samples(files: Sequence[Path], image_root: Path | None = None) -> list[Sample]:
    """All records of `files`; images resolve under `image_root` or `<file dir>/images`.

    Records are read as `phi3v validate` reads them (`phi3v_data.validate.shape`): one
    path, no second schema check. Lines that are not valid records (possible with
    `--skip-validation`) are skipped with a warning naming `file:line`.
    """
    from phi3v_data.validate.shape import read_records

    samples: list[Sample] = []
    for path in files:
        root = image_root if image_root is not None else path.parent / "images"
        for lineno, record in read_records(path):
            if record is None:
                logger.warning(
                    "%s:%d: not a valid record, skipped (see `phi3v validate`)", path, lineno
                )
                continue
            samples.append(Sample(record, root, f"{path}:{lineno}"))
    if not samples:
        names = ", ".join(str(path) for path in files)
        raise DataError(f"no records in {names}")
    return samples


def load_images(sample: Sample) -> list[Image.Image]:
    """Open and decode every image of `sample` (RGB).

    Raises:
        UnreadableImage: a path that breaks the path rules, a missing or undecodable file.
    """
    from PIL import Image, UnidentifiedImageError

    real_root = os.path.realpath(sample.image_root)
    images = []
    for rel in sample.record.images:
        resolved = resolve_image_path(sample.image_root, rel, real_root)
        if isinstance(resolved, PathProblem):
            raise UnreadableImage(rel, resolved.message)
        try:
            # The validator's policy (phi3v_data.images): its formats and its pixel guard.
            with Image.open(resolved, formats=ACCEPTED_FORMATS) as opened:
                if opened.width * opened.height > DEFAULT_MAX_PIXELS:
                    raise UnreadableImage(
                        rel,
                        f"{opened.width}x{opened.height} is over the {DEFAULT_MAX_PIXELS:,}-pixel"
                        " limit (image_too_large)",
                    )
                images.append(opened.convert("RGB"))
        except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice the limit
            raise UnreadableImage(rel, f"{exc} (image_too_large)") from exc
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise UnreadableImage(rel, f"{type(exc).__name__}: {exc}") from exc
    return images


class SkipLog:
    """Counts unusable samples by reason and appends each to a JSONL file (if given)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, sample: Sample, reason: str, detail: str) -> None:
        with self._lock:
            self.counts[reason] += 1
        logger.warning(
            "skipped record %s (%s): %s: %s", sample.record.id, sample.location, reason, detail
        )
        if self.path is not None:
            line = {
                "id": sample.record.id,
                "location": sample.location,
                "reason": reason,
                "detail": detail,
            }
            # One short append per line: atomic on POSIX, safe across loader workers.
            with self.path.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(line) + "\n")


class TrainDataset:
    """Map-style dataset of encoded samples: `input_ids`, `labels`, `pixel_values`, `image_sizes`.

    A sample is encoded by the processor when fetched; an unusable one is logged in
    `skips` and the next index is used instead (wrapping around).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        processor: Any,
        max_length: int | None = None,
        truncation: str = "truncate",
        skips: SkipLog | None = None,
    ) -> None:
        self.samples = list(samples)
        self.processor = processor
        self.max_length = max_length
        self.truncation = truncation
        self.skips = skips if skips is not None else SkipLog()

    def __len__(self) -> int:
        return len(self.samples)

    def encode(self, sample: Sample) -> dict[str, Any] | None:
        """The encoded sample, or None (logged) when it cannot be trained on."""
        try:
            images = load_images(sample)
        except UnreadableImage as exc:
            self.skips.add(sample, "unreadable_image", str(exc))
            return None
        encoded = self.processor.encode(sample.record, images)
        if self.max_length is None:
            return encoded
        fitted, outcome = fit_to_max_length(
            encoded, self.max_length, self.processor.image_token_id, self.truncation
        )
        if outcome != "fits":
            length = len(encoded["input_ids"])
            self.skips.add(sample, outcome, f"{length} tokens > --max-length {self.max_length}")
        return fitted

    def __getitem__(self, index: int) -> dict[str, Any]:
        for offset in range(min(MAX_CONSECUTIVE_SKIPS, len(self.samples))):
            encoded = self.encode(self.samples[(index + offset) % len(self.samples)])
            if encoded is not None:
                return encoded
        raise DataError(
            f"{MAX_CONSECUTIVE_SKIPS} unusable samples in a row from index {index} "
            f"(counts: {dict(self.skips.counts)}); run `phi3v validate` on the data"
        )


def gold_answers(record: Record) -> list[str]:
    """Gold answers of a record's last turn: `meta.answers` when present, else the answer."""
    answers = (record.meta or {}).get("answers")
    if isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers):
        return answers
    return [record.conversations[-1].assistant]
