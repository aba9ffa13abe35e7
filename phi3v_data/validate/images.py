"""Image checks and the token budget of schema-valid records, in batches.

Records wait in a batch of `_BATCH_RECORDS`; the batch's distinct images not seen before go
to `phi3v_data.images.check_image_batch` (the one image policy) in chunks, in a process
pool once the input is larger than one batch; each image file is checked once while it is
remembered. When a batch's checks are back, its image problems are reported and each
record's token length (text + image tokens from the image headers) is counted.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from phi3v_data.images import ImageCheck, check_image_batch
from phi3v_data.records import Record
from phi3v_data.validate.options import ValidateOptions
from phi3v_data.validate.report import MAX_DISTINCT, DatasetStats
from phi3v_data.validate.rules import Finding
from phi3v_data.validate.shape import RecordShape, to_record
from phi3v_data.validate.tokens import TokenCounter, image_tokens

_BATCH_RECORDS = 1024  # records per image-check batch
_CHUNK_IMAGES = 256  # images per process-pool task
_CACHE_IMAGES = 100_000  # image results remembered, so shared images are checked once

ImageKey = tuple[str, str]  # (real image root, relative path)
# add(code, file, line, record id, field, message): report a problem.
AddProblem = Callable[[str, str, int | None, str | None, str | None, str], None]


class _PendingRecord(NamedTuple):
    file: str
    line: int
    record_id: str
    record: Record
    refs: list[tuple[str, ImageKey]]  # (field, image)
    complete: bool  # False when an image path already failed the path rules


@dataclass
class _Batch:
    records: list[_PendingRecord] = field(default_factory=list)
    known: dict[ImageKey, ImageCheck] = field(default_factory=dict)
    chunks: list[tuple[list[ImageKey], Future | list[ImageCheck]]] = field(default_factory=list)


class ImageChecks:
    """The image checks of one validation: batches in flight, the pool, the image cache."""

    def __init__(self, options: ValidateOptions, stats: DatasetStats, add: AddProblem):
        self.options = options
        self.stats = stats
        self.add = add
        self.counter = TokenCounter(options.tokenizer, options.image_layout)
        self.image_cache: dict[ImageKey, ImageCheck] = {}
        self.batch = _Batch()
        self.in_flight: deque[_Batch] = deque()
        self.pool: ProcessPoolExecutor | None = None
        self.workers = options.workers or len(os.sched_getaffinity(0))

    def add_record(
        self,
        file: str,
        line: int,
        record: RecordShape,
        real_root: str,
        findings: list[Finding] | None,
    ) -> None:
        """Queue a schema-valid record; an image whose path broke a path rule is skipped."""
        failed = {f.field for f in findings if f.code.startswith("path_")} if findings else ()
        refs = []
        for t, turn in enumerate(record.conversations):
            for i, rel in enumerate(turn.images):
                field_path = f"conversations[{t}].images[{i}]"
                if field_path not in failed:
                    refs.append((field_path, (real_root, rel)))
        pending = _PendingRecord(file, line, record.id, to_record(record), refs, not failed)
        self.batch.records.append(pending)
        if len(self.batch.records) >= _BATCH_RECORDS:
            self._flush_batch(final=False)

    def finish(self) -> None:
        """Check what is queued and wait for every batch."""
        self._flush_batch(final=True)
        while self.in_flight:
            self._finish_batch(self.in_flight.popleft())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def _flush_batch(self, final: bool) -> None:
        batch, self.batch = self.batch, _Batch()
        if not batch.records:
            return
        todo: dict[ImageKey, None] = {}
        for pending in batch.records:
            for _, key in pending.refs:
                if key in batch.known or key in todo:
                    continue
                cached = self.image_cache.get(key)
                if cached is not None:
                    batch.known[key] = cached
                else:
                    todo[key] = None
        keys = list(todo)
        # A single batch (a small input) is checked here: starting processes costs more.
        if self.pool is None and self.workers > 1 and not final:
            self.pool = _new_pool(self.workers)
        deep, max_pixels = self.options.deep, self.options.max_pixels
        for start in range(0, len(keys), _CHUNK_IMAGES):
            chunk = keys[start : start + _CHUNK_IMAGES]
            if self.pool is None:
                result: Future | list[ImageCheck] = check_image_batch(chunk, deep, max_pixels)
            else:
                result = self.pool.submit(check_image_batch, chunk, deep, max_pixels)
            batch.chunks.append((chunk, result))
        self.in_flight.append(batch)
        while len(self.in_flight) > (2 * self.workers if self.pool else 0):
            self._finish_batch(self.in_flight.popleft())

    def _finish_batch(self, batch: _Batch) -> None:
        for chunk, result in batch.chunks:
            checks = result if isinstance(result, list) else self._chunk_result(chunk, result)
            for key, check in zip(chunk, checks, strict=True):
                batch.known[key] = check
                self._remember_image(key, check)
        text_tokens = self.counter.text_tokens([p.record for p in batch.records])
        for pending, text in zip(batch.records, text_tokens, strict=True):
            self._finish_record(pending, batch.known, text)

    def _finish_record(
        self, pending: _PendingRecord, known: dict[ImageKey, ImageCheck], text: int
    ) -> None:
        num_crops = self.options.num_crops
        max_length = self.options.max_length
        where = (pending.file, pending.line, pending.record_id)
        image_total = 0
        complete = pending.complete
        for field_path, key in pending.refs:
            check = known[key]
            if check.code is not None:
                complete = False
                self.add(check.code, *where, field_path, check.message)
                continue
            if check.warning is not None:
                self.add(check.warning, *where, field_path, check.message)
            image_total += image_tokens(check.width, check.height, num_crops)
        if not complete:
            return  # the length is unknown while an image is unusable
        length = text + image_total
        self.stats.token_lengths.append(length)
        if max_length is not None and length > max_length:
            estimated = "" if self.stats.tokens_exact else "about "
            self.add(
                "token_budget",
                *where,
                None,
                f"sample is {estimated}{length} tokens ({text} text + {image_total} image"
                f" tokens from {len(pending.refs)} images at num_crops={num_crops}),"
                f" over --max-length {max_length}",
            )

    def _chunk_result(self, chunk: list[ImageKey], future: Future) -> list[ImageCheck]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return future.result()
        except BrokenProcessPool:
            # A decoder crashed its process: find the culprit one image at a time.
            self.pool = _new_pool(self.workers)
            return [_check_isolated(key, self.options) for key in chunk]

    def _remember_image(self, key: ImageKey, check: ImageCheck) -> None:
        if key in self.image_cache:
            return
        stats = self.stats
        stats.image_files_checked += 1
        if check.code is None:
            resolution = f"{check.width}x{check.height}"
            if resolution in stats.resolutions or len(stats.resolutions) < MAX_DISTINCT:
                stats.resolutions[resolution] += 1
            stats.image_formats[check.format] += 1
        if len(self.image_cache) >= _CACHE_IMAGES:
            # Forget the older half; a later reference re-checks its image, never wrongly.
            for old in list(self.image_cache)[: _CACHE_IMAGES // 2]:
                del self.image_cache[old]
        self.image_cache[key] = check


def _new_pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing

    # forkserver: forking a process that runs a progress-bar thread can deadlock.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def _check_isolated(key: ImageKey, options: ValidateOptions) -> ImageCheck:
    from concurrent.futures.process import BrokenProcessPool

    with _new_pool(1) as pool:
        try:
            return pool.submit(check_image_batch, [key], options.deep, options.max_pixels).result()[
                0
            ]
        except BrokenProcessPool:
            return ImageCheck("image_corrupt", f"image {key[1]!r} crashed the image decoder")
