"""What a source implements: a `Converter` that plans work items and processes one.

The values it passes to the framework (`WorkItem`, `ItemResult`, `Skip`, `Plan`), where it
writes images (`OutputContext`), what a run reports (`ConversionSummary`) and the errors
that stop a conversion. The framework (`converters.framework`) runs it;
`converters.output` owns the output folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from phi3v_data.jsonl import atomic_write_bytes
from phi3v_data.paths import lexical_path_problem
from phi3v_data.records import Record

IMAGES_DIR = "images"


class ConversionError(Exception):
    """A problem with the input or the output folder that stops the conversion.

    The message says what is wrong, where, and what to do; nothing is half-written.
    """


class NothingConverted(ConversionError):
    """Every input was skipped: no JSONL file or manifest was written.

    `summary` holds the splits (all with 0 records) and every skip with its reason.
    """

    def __init__(self, message: str, summary: ConversionSummary) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One unit of work (a clip, a question, a row): `index` is its position in the split."""

    split: str
    index: int
    key: str
    payload: Any = None


@dataclass(frozen=True, slots=True)
class Skip:
    """An input that produced no record, with a stable `reason` code and a message."""

    split: str
    item: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class ItemResult:
    """What `process` made of one item. `counters` feed the progress bar and manifest."""

    records: list[Record] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Plan:
    """Ordered work per split, plus inputs already known to be unusable."""

    splits: dict[str, list[WorkItem]]
    skips: list[Skip] = field(default_factory=list)
    inference_only: frozenset[str] = frozenset()


class OutputContext:
    """Where `process` writes images: paths are relative to `OUT/images`."""

    def __init__(self, out_dir: Path) -> None:
        self.images_dir = out_dir / IMAGES_DIR

    def image_path(self, rel: str) -> Path:
        problem = lexical_path_problem(rel)
        if problem is not None:
            raise ValueError(f"converter produced a bad image path: {problem.message}")
        return self.images_dir / rel

    def write_image(self, rel: str, data: bytes) -> str:
        """Write `data` atomically at `images/<rel>` (overwriting) and return `rel`."""
        atomic_write_bytes(self.image_path(rel), data, fsync=False)
        return rel

    def link_or_copy(self, source: Path, rel: str, link: bool) -> str:
        """Hard-link (when asked and possible) or copy `source` to `images/<rel>`, atomically."""
        target = self.image_path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name: two workers may import the same image at once (a page
        # shared by several items); each renames its own complete file into place.
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.link.tmp")
        try:
            if link:
                try:
                    os.link(source, tmp)
                except OSError:
                    shutil.copyfile(source, tmp)
            else:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return rel


class Converter(ABC):
    """A source: subclasses set `name` and `progress_unit`, and implement two methods."""

    name: ClassVar[str]
    progress_unit: ClassVar[str] = "items"
    # An optional counter from `ItemResult.counters` shown as a rate (e.g. "frames").
    rate_counter: ClassVar[str | None] = None

    def __init__(self, options: Any) -> None:
        self.options = options

    @abstractmethod
    def plan(self, src: Path) -> Plan:
        """List the work in a deterministic order; raise `ConversionError` on bad input."""

    @abstractmethod
    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        """Convert one item. Must not raise for bad data: return a skip instead."""

    def output_file(self, split: str) -> str:
        return f"{self.name}_{split}.jsonl"

    def options_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self.options))


@dataclass(slots=True)
class SplitSummary:
    file: str
    records: int
    sha256: str
    inference_only: bool
    skipped: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class ConversionSummary:
    out_dir: Path
    splits: dict[str, SplitSummary]
    skips: list[Skip]
    counters: dict[str, int]
    resumed_shards: int = 0
    already_complete: bool = False
    # What --overwrite deleted (names relative to out_dir) and the other files it left alone.
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(split.records for split in self.splits.values())


def jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, frozenset | set):
        return sorted(jsonable(item) for item in value)
    return value
