"""The converter framework: plan -> parallel shards -> JSONL per split -> manifest last.

A source converter (one module in `converters/sources/`) only says *what* to convert:
`plan(src)` lists work items per split in a deterministic order (cheap: file listing,
annotation parsing) and `process(item, output)` turns one item into records (writing its
images) or skips it with a reason (`converters.converter`). This module runs it, the
same way for every source, and `converters.output` keeps the output folder:

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
- `--overwrite` deletes only what a conversion writes (`converters.output`): the previous
  conversion's JSONL files, `images/`, `manifest.json`, the work folder and the
  validation record, whatever its source. Other files are left alone, and `*.jsonl`
  files or an `images/` folder that no conversion wrote stop the run (every reader takes
  all `*.jsonl` of the folder, and `images/` is the image root), deleting nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from converters.converter import (
    ConversionError,
    ConversionSummary,
    Converter,
    ItemResult,
    NothingConverted,
    OutputContext,
    Plan,
    Skip,
    SplitSummary,
    WorkItem,
)
from converters.output import (
    MANIFEST,
    SHARD_SIZE,
    WORK_DIR,
    discard,
    finished_summary,
    prepare_output,
    run_identity,
    shard_file,
)
from phi3v_data import __version__
from phi3v_data.flags import REQUIRED, flag
from phi3v_data.jsonl import atomic_write, atomic_write_bytes


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


class ProgressSink:
    """Receives progress events; the CLI renders them with rich, tests ignore them."""

    def start(self, total_items: int, done_items: int, unit: str) -> None:
        """Called once the plan is known."""

    def advance(self, items: int, counters: Counter[str]) -> None:
        """Called after each finished shard (or item, with one worker)."""


def _shards(items: list[WorkItem]) -> Iterator[tuple[int, list[WorkItem]]]:
    for start in range(0, len(items), SHARD_SIZE):
        yield start // SHARD_SIZE, items[start : start + SHARD_SIZE]


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
        finished = finished_summary(converter, src, out)
        if finished is not None:
            return finished
    plan = converter.plan(src)
    out_existed = out.exists()
    removed, kept = prepare_output(converter, src, plan, out, settings.overwrite)
    work = out / WORK_DIR

    pending: list[tuple[str, int, list[WorkItem]]] = []
    done_items = 0
    for split, items in plan.splits.items():
        for shard, shard_items in _shards(items):
            if shard_file(work, split, shard).exists():
                done_items += len(shard_items)
            else:
                pending.append((split, shard, shard_items))
    total_items = sum(len(items) for items in plan.splits.values())
    progress.start(total_items, done_items, converter.progress_unit)
    resumed = sum(1 for _ in _all_shards(plan)) - len(pending)

    def store(split: str, shard: int, result: dict[str, Any]) -> None:
        atomic_write_bytes(shard_file(work, split, shard), orjson.dumps(result))

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
                result = orjson.loads(shard_file(work, split, shard).read_bytes())
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
        discard(out, [split.file for split in splits.values()], keep_out_dir)
        raise NothingConverted(_nothing_message(out, summary), summary)
    manifest = {
        **run_identity(converter, src),
        "tool_version": __version__,
        "splits": {name: split.to_dict() for name, split in splits.items()},
        "counters": dict(sorted(counters.items())),
        "skips": [skip.to_dict() for skip in all_skips],
    }
    atomic_write_bytes(out / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    shutil.rmtree(work, ignore_errors=True)
    return summary


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
