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
  folder is removed. A run whose every input was skipped writes nothing and raises
  `NothingConverted`.
- A rerun of a finished conversion (same source, input and options) whose JSONL files
  still have the manifest's sha256 does nothing (`ConversionSummary.already_complete`);
  a changed or missing JSONL file stops it with a `ConversionError`.
- `--overwrite` deletes only what a conversion writes (see `_inventory`): the previous
  conversion's JSONL files, `images/`, `manifest.json`, the work folder and the
  validation record, whatever its source. Other files are left alone, and `*.jsonl`
  files or an `images/` folder that no conversion wrote stop the run (every reader takes
  all `*.jsonl` of the folder, and `images/` is the image root), deleting nothing.
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
from phi3v_data.flags import REQUIRED, flag
from phi3v_data.jsonl import atomic_write, atomic_write_bytes, is_temporary_name
from phi3v_data.paths import lexical_path_problem
from phi3v_data.records import Record

SHARD_SIZE = 16
WORK_DIR = ".phi3v-work"
MANIFEST = "manifest.json"
IMAGES_DIR = "images"
# The verdict of the convert-time `phi3v validate`, tied to the manifest's checksums, so a
# rerun of a finished, validated conversion need not check every image again.
VALIDATION_RECORD = ".phi3v-validated.json"


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
        return _jsonable(dataclasses.asdict(self.options))


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Options shared by every source (output folder, parallelism, restart, validation).

    Their flags are those of every `phi3v convert <source>` command; `--workers` left out
    means all cores (`default_workers()`).
    """

    out_dir: Path = flag(
        REQUIRED,
        "--out-dir",
        "-o",
        help="Output folder: <source>_<split>.jsonl files, images/ and manifest.json.",
        show_default=False,
    )
    workers: int = flag(
        1,
        "--workers",
        "-j",
        min=1,
        help="Worker processes (default: all cores). The output is identical for any value.",
        show_default=False,
    )
    overwrite: bool = flag(
        False,
        "--overwrite",
        help="Replace the conversion in --out-dir (finished or interrupted, of any source): "
        "first delete what a conversion wrote there (manifest.json, the *.jsonl files it "
        "made, images/, its work folder) and nothing else: other files are left alone, and "
        "*.jsonl files or an images/ folder that no conversion wrote stop the run, deleting "
        "nothing (move them away or choose another --out-dir). Without --overwrite, rerunning "
        "the same command resumes an interrupted run, and does nothing when the finished "
        "output is unchanged (JSONL sha256 as in manifest.json; validated again only if its "
        "last validation failed or never ran).",
    )
    validate: bool = flag(
        True,
        "--validate/--no-validate",
        help="Run `phi3v validate` on the output at the end (exit 1 on errors; warnings are "
        "shown, as `phi3v validate` shows them).",
    )


def default_workers() -> int:
    """All the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _own_manifest(out: Path) -> dict[str, Any] | None:
    """`OUT/manifest.json` when a conversion wrote it; None when there is none.

    Raises `ConversionError` for a manifest.json that is not one of ours: it is never
    deleted or replaced.
    """
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        problem = f"cannot read it: {exc}"
    else:
        splits = data.get("splits") if isinstance(data, dict) else None
        if (
            isinstance(data, dict)
            and isinstance(data.get("source"), str)
            and isinstance(splits, dict)
            and all(
                isinstance(s, dict)
                and isinstance(s.get("file"), str)
                and isinstance(s.get("sha256"), str)
                and "/" not in s["file"]
                for s in splits.values()
            )
        ):
            return data
        problem = "it lacks the source and per-split files and checksums `phi3v convert` writes"
    raise ConversionError(
        f"{path} is not a manifest written by `phi3v convert` ({problem}); it is left alone. "
        "Move it away or choose another --out-dir."
    )


def _run_file(out: Path) -> dict[str, Any]:
    """The identity stored by an unfinished run ({} when unreadable or absent)."""
    try:
        data = orjson.loads((out / WORK_DIR / "run.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(slots=True)
class _Inventory:
    """The entries of an output folder, sorted by who owns them."""

    ours: list[Path]  # written by a conversion: --overwrite deletes these
    foreign: list[str]  # not ours, but readers would take them as part of the output
    other: list[str]  # not ours, harmless: always left alone


def _inventory(
    out: Path, writes: set[str], manifest: dict[str, Any] | None, run: dict[str, Any]
) -> _Inventory:
    """What in `out` a conversion wrote, and what it did not.

    Ours: the manifest, the work folder, the validation record, the JSONL files the
    manifest lists, `<source>_*.jsonl` of the source named by the manifest or the work
    folder, the files this run writes (`writes`), and -- when a manifest or work folder
    proves that a conversion used the folder -- `images/` and leftover temporary files.
    """
    inventory = _Inventory([], [], [])
    if not out.is_dir():
        return inventory
    marked = manifest is not None or (out / WORK_DIR).is_dir()
    listed = set(writes)
    prefixes: set[str] = set()
    if manifest is not None:
        listed.update(split["file"] for split in manifest["splits"].values())
        prefixes.add(f"{manifest['source']}_")
    if isinstance(run.get("source"), str):
        prefixes.add(f"{run['source']}_")
    for entry in sorted(out.iterdir(), key=lambda path: path.name):
        name = entry.name
        if name in (MANIFEST, WORK_DIR, VALIDATION_RECORD):
            inventory.ours.append(entry)
        elif name == IMAGES_DIR and entry.is_dir() and not entry.is_symlink():
            if marked or not any(entry.iterdir()):
                inventory.ours.append(entry)
            else:
                inventory.foreign.append(f"{name}/")
        elif name.endswith(".jsonl") and not is_temporary_name(name):
            owned = name in listed or any(name.startswith(prefix) for prefix in prefixes)
            if owned and entry.is_file():
                inventory.ours.append(entry)
            else:
                inventory.foreign.append(name)
        elif marked and is_temporary_name(name) and entry.is_file():
            inventory.ours.append(entry)
        else:
            inventory.other.append(name + ("/" if entry.is_dir() else ""))
    return inventory


def _foreign_error(out: Path, foreign: list[str]) -> ConversionError:
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    return ConversionError(
        f"{out} holds files that `phi3v convert` did not write: {shown}. Every reader of a "
        "converted folder takes all its *.jsonl files and images/ as the image root, so they "
        "would mix with the conversion; they are never deleted (not even by --overwrite). "
        "Move them away or choose another --out-dir."
    )


def _finished_summary(converter: Converter, src: Path, out: Path) -> ConversionSummary | None:
    """The summary of a finished conversion of this very command, or None when there is none.

    Raises `ConversionError` when `out` holds a finished conversion with other inputs or
    options, or one whose JSONL files no longer match the manifest's checksums.
    """
    manifest = _own_manifest(out)
    if manifest is None:
        return None
    identity = _run_identity(converter, src)
    if {key: manifest.get(key) for key in identity} != identity:
        raise ConversionError(
            f"{out} already holds a finished conversion made with other inputs or options "
            f"({out / MANIFEST}). Use --overwrite to replace it, or choose another --out-dir."
        )
    changed: list[str] = []
    for split in manifest["splits"].values():
        path = out / split["file"]
        if not path.is_file():
            changed.append(f"{split['file']} is missing")
        elif _sha256_file(path) != split["sha256"]:
            changed.append(f"{split['file']} differs")
    if (
        any(split.get("records") for split in manifest["splits"].values())
        and not (out / IMAGES_DIR).is_dir()
    ):
        changed.append(f"{IMAGES_DIR}/ is missing")
    if changed:
        raise ConversionError(
            f"{out} holds this conversion, but it changed since it finished: "
            f"{'; '.join(changed)} (checked against the sha256 in {out / MANIFEST}). Use "
            "--overwrite to convert again (this replaces any edits), or restore the files."
        )
    inventory = _inventory(out, set(), manifest, {})
    if inventory.foreign:
        raise _foreign_error(out, inventory.foreign)
    # A work folder left by a kill between writing the manifest and removing it.
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return _summary_from_manifest(out, manifest)


def _prepare_output(
    converter: Converter, src: Path, plan: Plan, settings: RunSettings
) -> tuple[list[str], list[str]]:
    """Check (and with --overwrite, clear) the output folder before converting into it.

    Returns what --overwrite removed and the other entries it left alone.
    """
    out = settings.out_dir
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out} is a file: --out-dir must be a folder (new or existing)")
    identity = _run_identity(converter, src)
    manifest, work = _own_manifest(out), out / WORK_DIR
    run = _run_file(out)
    removed: list[str] = []
    kept: list[str] = []
    writes = {converter.output_file(split) for split in plan.splits}
    if not settings.overwrite:
        if manifest is not None:  # `_finished_summary` let it through: it cannot be ours
            raise ConversionError(
                f"{out} already holds a finished conversion ({out / MANIFEST}). Use "
                "--overwrite to replace it, or choose another --out-dir."
            )
        if (work / "run.json").exists() and run != identity:
            raise ConversionError(
                f"{out} holds an unfinished conversion made with other inputs or options "
                f"({work / 'run.json'}). Rerun with the same arguments to resume it, or use "
                "--overwrite to start over."
            )
    inventory = _inventory(out, writes, manifest, run)
    if inventory.foreign:
        raise _foreign_error(out, inventory.foreign)
    if settings.overwrite and inventory.ours:
        removed = _remove_previous_output(inventory.ours)
        kept = inventory.other
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / VALIDATION_RECORD).unlink()  # a verdict about files this run replaces
    atomic_write_bytes(work / "run.json", orjson.dumps(identity, option=orjson.OPT_INDENT_2))
    _remove_temporary_files(out / IMAGES_DIR)
    _remove_temporary_files(work)
    return removed, kept


def _remove_previous_output(ours: list[Path]) -> list[str]:
    """Delete a previous conversion's entries, the manifest last.

    Interrupted at any point, the manifest or the work folder is still there, so a rerun
    of --overwrite still recognises what is left as a conversion's and finishes the job.
    """
    order = {WORK_DIR: 2, VALIDATION_RECORD: 1, IMAGES_DIR: 1, MANIFEST: 3}
    removed: list[str] = []
    for path in sorted(ours, key=lambda path: (order.get(path.name, 0), path.name)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(f"{path.name}/")
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if not is_temporary_name(path.name):
                removed.append(path.name)
    return removed


def _summary_from_manifest(out: Path, manifest: dict[str, Any]) -> ConversionSummary:
    return ConversionSummary(
        out_dir=out,
        splits={
            name: SplitSummary(
                file=split["file"],
                records=int(split.get("records", 0)),
                sha256=split["sha256"],
                inference_only=bool(split.get("inference_only", False)),
                skipped=dict(split.get("skipped", {})),
            )
            for name, split in manifest["splits"].items()
        },
        skips=[Skip(**skip) for skip in manifest.get("skips", [])],
        counters=manifest.get("counters", {}),
        already_complete=True,
    )


def record_validation(out: Path, passed: bool, errors: int, warnings: int) -> None:
    """Remember the convert-time validation verdict for this output's JSONL checksums."""
    manifest = _own_manifest(out)
    if manifest is None:
        return
    record = {
        "tool_version": __version__,
        "sha256": {name: split["sha256"] for name, split in manifest["splits"].items()},
        "passed": passed,
        "errors": errors,
        "warnings": warnings,
    }
    atomic_write_bytes(out / VALIDATION_RECORD, orjson.dumps(record, option=orjson.OPT_INDENT_2))


def recorded_validation(out: Path) -> dict[str, Any] | None:
    """The convert-time validation verdict, when it was made on exactly these JSONL files.

    Only meaningful after `run_conversion` returned `already_complete` (which checked the
    JSONL files against the manifest); None when there is no current record.
    """
    try:
        record = orjson.loads((out / VALIDATION_RECORD).read_bytes())
        manifest = orjson.loads((out / MANIFEST).read_bytes())
        current = {name: split["sha256"] for name, split in manifest["splits"].items()}
    except (OSError, orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None
    if not isinstance(record, dict) or record.get("tool_version") != __version__:
        return None
    if record.get("sha256") != current or not isinstance(record.get("passed"), bool):
        return None
    return record


def run_conversion(
    converter: Converter,
    src: Path,
    settings: RunSettings,
    progress: ProgressSink | None = None,
) -> ConversionSummary:
    """Convert `src` into `settings.out_dir`, resuming any unfinished run of the same command.

    A finished conversion of the same command with unchanged JSONL files is returned as is
    (`already_complete`, nothing planned or read but the manifest and the JSONL checksums).
    Raises `ConversionError` for bad input or a conflicting output folder, and
    `NothingConverted` when every input was skipped.
    """
    progress = progress or ProgressSink()
    if not src.exists():
        raise ConversionError(f"input {src} does not exist: give the folder the dataset is in")
    out = settings.out_dir
    if not settings.overwrite:
        finished = _finished_summary(converter, src, out)
        if finished is not None:
            return finished
    plan = converter.plan(src)
    out_existed = out.exists()
    removed, kept = _prepare_output(converter, src, plan, settings)
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

    summary = _finish(converter, plan, src, out, resumed, keep_out_dir=out_existed)
    summary.removed, summary.kept = removed, kept
    return summary


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
    converter: Converter, plan: Plan, src: Path, out: Path, resumed: int, keep_out_dir: bool
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
    summary = ConversionSummary(
        out_dir=out,
        splits=splits,
        skips=all_skips,
        counters=dict(counters),
        resumed_shards=resumed,
    )
    if summary.records == 0:
        _discard(out, [split.file for split in splits.values()], keep_out_dir)
        raise NothingConverted(_nothing_message(out, summary), summary)
    manifest = {
        **_run_identity(converter, src),
        "tool_version": __version__,
        "splits": {name: split.to_dict() for name, split in splits.items()},
        "counters": dict(sorted(counters.items())),
        "skips": [skip.to_dict() for skip in all_skips],
    }
    atomic_write_bytes(out / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    shutil.rmtree(work, ignore_errors=True)
    return summary


def _discard(out: Path, files: list[str], keep_out_dir: bool) -> None:
    """Undo a run that made no record: its empty JSONL files, work folder, empty folders.

    The work folder goes too, so that a rerun after fixing the input converts it afresh
    instead of resuming from shards that hold only skips.
    """
    for name in files:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):  # only when empty
        (out / IMAGES_DIR).rmdir()
    if not keep_out_dir:
        with contextlib.suppress(OSError):
            out.rmdir()


def _nothing_message(out: Path, summary: ConversionSummary) -> str:
    reasons = Counter(skip.reason for skip in summary.skips)
    if not reasons:
        return (
            f"no records: the input lists nothing to convert (splits: "
            f"{', '.join(summary.splits) or 'none'}); nothing was written to {out}"
        )
    counts = ", ".join(f"{reason}: {count:,}" for reason, count in reasons.most_common())
    total = sum(reasons.values())
    return (
        f"no records: all {total:,} inputs were skipped ({counts}); nothing was written to "
        f"{out}. Fix the input (see the reasons and examples) and rerun."
    )
