"""The converter framework: plan -> parallel shards -> JSONL per split -> manifest last.

A source converter (one module in `converters/sources/`) only says *what* to convert:
`plan(src)` lists work items per split in a deterministic order (cheap: file listing,
annotation parsing) and `process(item, output)` turns one item into records (writing its
images) or skips it with a reason. This module does the rest, the same way for every
source:

- Items are grouped into shards of `SHARD_SIZE`. A finished shard's records and skips are
  stored atomically under `OUT/.phi3v-work/`; a rerun after Ctrl-C or kill -9 skips the
  finished shards and redoes only the rest (whose images are rewritten atomically, so a
  half-written image never survives under its final name).
- Shards run in worker processes; results are joined in plan order, so the output is
  byte-identical for any number of workers and after any interruption.
- When every shard is done: `OUT/<source>_<split>.jsonl` per split, then
  `OUT/manifest.json` last (its presence means the conversion finished), then the work
  folder is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson

from phi3v_data import __version__
from phi3v_data.jsonl import atomic_write, atomic_write_bytes, is_temporary_name
from phi3v_data.paths import lexical_path_problem
from phi3v_data.records import Record

SHARD_SIZE = 16
WORK_DIR = ".phi3v-work"
MANIFEST = "manifest.json"
IMAGES_DIR = "images"


class ConversionError(Exception):
    """A problem with the input or the output folder that stops the conversion.

    The message says what is wrong, where, and what to do; nothing is half-written.
    """


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
        return _jsonable(dataclasses.asdict(self.options))


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Options shared by every source (output folder, parallelism, restart, validation)."""

    out_dir: Path
    workers: int = 1
    overwrite: bool = False
    validate: bool = True


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

    @property
    def records(self) -> int:
        return sum(split.records for split in self.splits.values())


class ProgressSink:
    """Receives progress events; the CLI renders them with rich, tests ignore them."""

    def start(self, total_items: int, done_items: int, unit: str) -> None:
        """Called once the plan is known."""

    def advance(self, items: int, counters: Counter[str]) -> None:
        """Called after each finished shard (or item, with one worker)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, frozenset | set):
        return sorted(_jsonable(item) for item in value)
    return value


def _run_identity(converter: Converter, src: Path) -> dict[str, Any]:
    return {
        "source": converter.name,
        "input": str(src.resolve()),
        "options": converter.options_dict(),
        "shard_size": SHARD_SIZE,
    }


def _shards(items: list[WorkItem]) -> Iterator[tuple[int, list[WorkItem]]]:
    for start in range(0, len(items), SHARD_SIZE):
        yield start // SHARD_SIZE, items[start : start + SHARD_SIZE]


def _shard_file(work: Path, split: str, shard: int) -> Path:
    return work / split / f"{shard:06d}.json"


# Set in each worker process by `_init_worker`, so the converter is pickled once per worker.
_WORKER_CONVERTER: Converter | None = None
_WORKER_OUTPUT: OutputContext | None = None


def _init_worker(converter: Converter, out_dir: Path) -> None:
    global _WORKER_CONVERTER, _WORKER_OUTPUT
    _WORKER_CONVERTER = converter
    _WORKER_OUTPUT = OutputContext(out_dir)


def _process_items(
    converter: Converter,
    output: OutputContext,
    items: list[WorkItem],
    on_item: Callable[[Counter[str]], None] | None = None,
) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    skips: list[dict[str, str]] = []
    counters: Counter[str] = Counter()
    for item in items:
        try:
            result = converter.process(item, output)
        except Exception as exc:  # a converter bug must not lose the rest of the run
            result = ItemResult(
                skips=[
                    Skip(item.split, item.key, "converter_error", f"{type(exc).__name__}: {exc}")
                ]
            )
        records.extend(record.to_dict() for record in result.records)
        skips.extend(skip.to_dict() for skip in result.skips)
        counters.update(result.counters)
        if on_item is not None:
            on_item(result.counters)
    return {"records": records, "skips": skips, "counters": dict(counters)}


def _process_in_worker(items: list[WorkItem]) -> dict[str, Any]:
    assert _WORKER_CONVERTER is not None and _WORKER_OUTPUT is not None
    return _process_items(_WORKER_CONVERTER, _WORKER_OUTPUT, items)


def _remove_temporary_files(root: Path) -> int:
    removed = 0
    if not root.exists():
        return removed
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if is_temporary_name(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def _prepare_output(converter: Converter, src: Path, settings: RunSettings) -> bool:
    """Check the output folder against this run; return True when it is already complete."""
    out = settings.out_dir
    identity = _run_identity(converter, src)
    manifest_path, work = out / MANIFEST, out / WORK_DIR
    if settings.overwrite:
        _remove_previous_output(converter, out)
    elif manifest_path.exists():
        previous = orjson.loads(manifest_path.read_bytes())
        if {key: previous.get(key) for key in identity} != identity:
            raise ConversionError(
                f"{out} already holds a finished conversion made with other inputs or options "
                f"({manifest_path}). Use --overwrite to replace it, or choose another --out-dir."
            )
        shutil.rmtree(work, ignore_errors=True)
        return True
    elif (work / "run.json").exists():
        previous = orjson.loads((work / "run.json").read_bytes())
        if previous != identity:
            raise ConversionError(
                f"{out} holds an unfinished conversion made with other inputs or options "
                f"({work / 'run.json'}). Rerun with the same arguments to resume it, or use "
                "--overwrite to start over."
            )
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(work / "run.json", orjson.dumps(identity, option=orjson.OPT_INDENT_2))
    _remove_temporary_files(out / IMAGES_DIR)
    _remove_temporary_files(work)
    return False


def _remove_previous_output(converter: Converter, out: Path) -> None:
    """Delete only what a conversion writes: images/, <source>_*.jsonl, manifest, work dir."""
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    shutil.rmtree(out / IMAGES_DIR, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST).unlink()
    if out.exists():
        for path in out.glob(f"{converter.name}_*.jsonl"):
            path.unlink()


def _summary_from_manifest(out: Path) -> ConversionSummary:
    manifest = orjson.loads((out / MANIFEST).read_bytes())
    return ConversionSummary(
        out_dir=out,
        splits={name: SplitSummary(**split) for name, split in manifest["splits"].items()},
        skips=[Skip(**skip) for skip in manifest["skips"]],
        counters=manifest.get("counters", {}),
        already_complete=True,
    )


def run_conversion(
    converter: Converter,
    src: Path,
    settings: RunSettings,
    progress: ProgressSink | None = None,
) -> ConversionSummary:
    """Convert `src` into `settings.out_dir`, resuming any unfinished run of the same command."""
    progress = progress or ProgressSink()
    if not src.exists():
        raise ConversionError(f"input {src} does not exist: give the folder the dataset is in")
    plan = converter.plan(src)
    out = settings.out_dir
    if _prepare_output(converter, src, settings):
        return _summary_from_manifest(out)
    work = out / WORK_DIR

    pending: list[tuple[str, int, list[WorkItem]]] = []
    done_items = 0
    for split, items in plan.splits.items():
        for shard, shard_items in _shards(items):
            if _shard_file(work, split, shard).exists():
                done_items += len(shard_items)
            else:
                pending.append((split, shard, shard_items))
    total_items = sum(len(items) for items in plan.splits.values())
    progress.start(total_items, done_items, converter.progress_unit)
    resumed = sum(1 for _ in _all_shards(plan)) - len(pending)

    def store(split: str, shard: int, result: dict[str, Any]) -> None:
        atomic_write_bytes(_shard_file(work, split, shard), orjson.dumps(result))

    output = OutputContext(out)
    if settings.workers <= 1 or len(pending) <= 1:
        for split, shard, items in pending:
            result = _process_items(
                converter, output, items, on_item=lambda counters: progress.advance(1, counters)
            )
            store(split, shard, result)
    else:
        _run_parallel(converter, out, settings.workers, pending, store, progress)

    return _finish(converter, plan, src, out, resumed)


def _all_shards(plan: Plan) -> Iterator[tuple[str, int]]:
    for split, items in plan.splits.items():
        for shard, _ in _shards(items):
            yield split, shard


def _run_parallel(
    converter: Converter,
    out: Path,
    workers: int,
    pending: list[tuple[str, int, list[WorkItem]]],
    store: Callable[[str, int, dict[str, Any]], None],
    progress: ProgressSink,
) -> None:
    # Keep a bounded number of shards in flight so memory stays flat on huge datasets.
    queue = iter(pending)
    in_flight: dict[Future[dict[str, Any]], tuple[str, int, int]] = {}
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_init_worker, initargs=(converter, out)
    ) as pool:
        try:

            def submit_next() -> None:
                job = next(queue, None)
                if job is not None:
                    split, shard, items = job
                    future = pool.submit(_process_in_worker, items)
                    in_flight[future] = (split, shard, len(items))

            for _ in range(workers * 2):
                submit_next()
            while in_flight:
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    split, shard, count = in_flight.pop(future)
                    result = future.result()
                    store(split, shard, result)
                    progress.advance(count, Counter(result["counters"]))
                    submit_next()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _finish(
    converter: Converter, plan: Plan, src: Path, out: Path, resumed: int
) -> ConversionSummary:
    work = out / WORK_DIR
    splits: dict[str, SplitSummary] = {}
    all_skips: list[Skip] = list(plan.skips)
    counters: Counter[str] = Counter()
    for split, items in plan.splits.items():
        planned_skips = [skip for skip in plan.skips if skip.split == split]
        split_skips: list[Skip] = []
        file_name = converter.output_file(split)
        digest = hashlib.sha256()
        count = 0
        with atomic_write(out / file_name, "wb") as stream:
            for shard, _ in _shards(items):
                result = orjson.loads(_shard_file(work, split, shard).read_bytes())
                for record in result["records"]:
                    line = orjson.dumps(record) + b"\n"
                    stream.write(line)
                    digest.update(line)
                    count += 1
                split_skips.extend(Skip(**skip) for skip in result["skips"])
                counters.update(result["counters"])
        all_skips.extend(split_skips)
        reasons = Counter(skip.reason for skip in planned_skips + split_skips)
        splits[split] = SplitSummary(
            file=file_name,
            records=count,
            sha256=digest.hexdigest(),
            inference_only=split in plan.inference_only,
            skipped=dict(sorted(reasons.items())),
        )
    manifest = {
        **_run_identity(converter, src),
        "tool_version": __version__,
        "splits": {name: summary.to_dict() for name, summary in splits.items()},
        "counters": dict(sorted(counters.items())),
        "skips": [skip.to_dict() for skip in all_skips],
    }
    atomic_write_bytes(out / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    shutil.rmtree(work, ignore_errors=True)
    return ConversionSummary(
        out_dir=out,
        splits=splits,
        skips=all_skips,
        counters=dict(counters),
        resumed_shards=resumed,
    )
