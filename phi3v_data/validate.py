"""`phi3v validate`: prove a dataset is trainable before a GPU is spent on it.

Stages, all streaming (memory does not grow with the file):
  JSONL lines (`iter_jsonl`: UTF-8, JSON) -> compiled schema check (fastjsonschema; on
  failure `jsonschema` explains every error with its field) -> record rules (duplicate
  ids, image path rules, tags, turns, image count) -> image checks in a process pool,
  in batches, each distinct file once (`images.check_image`) -> token budget from the
  image sizes in the headers -> a `ValidationReport` with every problem and the stats.

Every problem has a code from `CODES`, with its severity and a hint. Errors make a
dataset fail; warnings are reported but fail only under `--strict`.

Common mistakes get one clear problem instead of a flood, found only on the slow path
(after a line or record has already failed): a whole file that is one JSON array
(`json_array`, one problem for the file) and records in another dataset's format such as
LLaVA or ShareGPT (`foreign_format`, one problem per record, naming the converter).
"""

from __future__ import annotations

import functools
import math
import os
import re
import shlex
from array import array
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from phi3v_data.images import DEFAULT_MAX_PIXELS, ImageCheck, check_image_batch
from phi3v_data.jsonl import DEFAULT_MAX_LINE_BYTES, is_temporary_name, iter_jsonl
from phi3v_data.paths import lexical_path_problem
from phi3v_data.prompt import record_chunks
from phi3v_data.records import IMAGE_LAYOUTS, Record, check_image_tags
from phi3v_data.schema import fast_validator, schema_errors
from phi3v_data.tokens import check_num_crops, num_image_tokens


class CodeInfo(NamedTuple):
    severity: str  # "error" | "warning"
    summary: str
    hint: str


# Every problem `phi3v validate` can report. `phi3v validate --list-codes` prints this.
CODES: dict[str, CodeInfo] = {
    # Files and lines
    "file_unreadable": CodeInfo(
        "error", "a JSONL file cannot be opened or read", "Check the path and its permissions."
    ),
    "file_empty": CodeInfo(
        "warning", "a JSONL file has no records", "Remove the file or re-run the conversion."
    ),
    "blank_line": CodeInfo(
        "warning", "a blank line between records", "Remove blank lines (readers skip them)."
    ),
    "bad_utf8": CodeInfo(
        "error", "a line is not valid UTF-8", "Re-encode the file as UTF-8 (e.g. `iconv -t UTF-8`)."
    ),
    "bad_json": CodeInfo(
        "error",
        "a line is not one complete JSON value",
        "Write one JSON object per line; no pretty-printing, no trailing commas.",
    ),
    "line_too_long": CodeInfo(
        "error",
        "a line is over the line-size limit",
        "A record is a few kB: a line this large is a broken file (missing newlines?).",
    ),
    "json_array": CodeInfo(
        "error",
        "a file is one JSON array, not JSONL (one JSON object per line)",
        "Rewrite it one record per line: `jq -c '.[]' IN.json > OUT.jsonl`, or without jq"
        " `python -c \"import json,sys; sys.stdout.writelines(json.dumps(r) + '\\n' for r in"
        " json.load(open(sys.argv[1], encoding='utf-8-sig')))\" IN.json > OUT.jsonl`.",
    ),
    # Records
    "schema": CodeInfo(
        "error",
        "a record does not match schemas/conversation.schema.json",
        "Fix the field named; required: id, source, conversations[{images, user, assistant}];"
        " extra data goes in 'meta'.",
    ),
    "foreign_format": CodeInfo(
        "error",
        "a record is in another dataset format (LLaVA, ShareGPT / OpenAI messages)",
        "Convert the file with the converter the message names (`phi3v convert --help` lists"
        " them). Ours is one JSON object per line: id, source, conversations: [{images, user,"
        " assistant}], optional meta; see README.md, 'The record format'.",
    ),
    "duplicate_id": CodeInfo(
        "error",
        "an id is used by more than one record (across all files validated together)",
        "Give every record a unique id, e.g. '<split>-<index>'.",
    ),
    "too_many_images": CodeInfo(
        "error",
        "a record has more images than --max-images",
        "Sample fewer frames per clip, split the conversation, or raise --max-images.",
    ),
    "user_blank": CodeInfo(
        "error", "a user message is only whitespace", "Every turn needs a question or instruction."
    ),
    "assistant_empty": CodeInfo(
        "error",
        "an assistant answer is empty in training data",
        "Fill in the answer; for inference-only data pass --allow-empty-assistant"
        " (a converted split marked inference_only in manifest.json is allowed).",
    ),
    "tags_mismatch": CodeInfo(
        "error",
        "the <|image_k|> tags of a turn do not match its images",
        "Use no tags (images go first) or exactly one tag per image of the turn,"
        " numbered across the conversation: turn 1 <|image_1|>.., turn 2 continues.",
    ),
    "special_token_in_text": CodeInfo(
        "error",
        "a message contains a chat control token (<|end|>, <|user|>, <s>, ...)",
        "The tokenizer turns these into control tokens and breaks the prompt; remove"
        " or escape them in the text.",
    ),
    "foreign_image_tag": CodeInfo(
        "warning",
        "a message contains an <image>-style tag from another format",
        "Phi-3.5-vision uses <|image_k|>; remove the tag (images go first) or rename it.",
    ),
    # Image paths (text only, no disk access)
    "path_invalid": CodeInfo(
        "error", "an image path contains a NUL byte", "Write the path as plain relative text."
    ),
    "path_absolute": CodeInfo(
        "error",
        "an image path is absolute",
        "Write paths relative to the image root (OUT/images), e.g. 'clip/frame_0.jpg'.",
    ),
    "path_not_normalized": CodeInfo(
        "error",
        "an image path has '.', empty parts or backslashes",
        "Use normalised POSIX paths: 'a/b.jpg', not './a//b.jpg' or 'a\\b.jpg'.",
    ),
    "path_escapes_root": CodeInfo(
        "error",
        "an image path leads outside the image root ('..' or a symlink)",
        "Copy the image under the image root; data paths may never leave it.",
    ),
    # Image files
    "image_missing": CodeInfo(
        "error",
        "an image file does not exist",
        "Check --image-root (default: <jsonl dir>/images) or re-run the conversion.",
    ),
    "image_not_file": CodeInfo(
        "error", "an image path is a directory or special file", "Point the path at the image file."
    ),
    "image_empty": CodeInfo(
        "error",
        "an image file is 0 bytes",
        "Re-extract or re-download the image (interrupted copy?).",
    ),
    "image_not_image": CodeInfo(
        "error",
        "an image file's bytes are not a supported image",
        "Formats: JPEG, PNG, GIF, WEBP, BMP, TIFF. An HTML error page saved as .jpg? Re-download.",
    ),
    "image_format_mismatch": CodeInfo(
        "warning",
        "an image file's bytes do not match its extension",
        "It still decodes; rename it so tools that trust extensions do not trip.",
    ),
    "image_corrupt": CodeInfo(
        "error",
        "an image file does not decode (truncated or damaged)",
        "Re-extract the image; `--deep` decodes every image fully.",
    ),
    "image_too_large": CodeInfo(
        "error",
        "an image is over the pixel limit (decompression-bomb guard)",
        "Downscale it (the HD transform resizes to at most 16 crops of 336 px anyway).",
    ),
    # Token budget
    "token_budget": CodeInfo(
        "error",
        "a sample is longer than --max-length tokens (text + image tokens)",
        "Lower --num-crops, use fewer images/frames per sample, shorten the text,"
        " or raise --max-length.",
    ),
    # Converted directories
    "manifest_invalid": CodeInfo(
        "error",
        "manifest.json is not valid JSON or lacks 'splits'",
        "Re-run the conversion: the manifest is written last, when it finished.",
    ),
    "manifest_missing_file": CodeInfo(
        "error",
        "manifest.json lists a split file that does not exist",
        "Re-run the conversion, or restore the missing file.",
    ),
    "manifest_mismatch": CodeInfo(
        "warning",
        "a file's record count differs from manifest.json",
        "The file changed after conversion; re-run the conversion if that was not intended.",
    ),
}

_CHAT_TOKEN_RE = re.compile(r"<\|(?:user|assistant|system|end|endoftext|placeholder\d+)\|>|</?s>")
_FOREIGN_TAG_RE = re.compile(r"<image(?:_?\d+)?>", re.IGNORECASE)
# Estimated text tokens = bytes / this. Calibrated against the Phi-3.5-vision tokenizer:
# 4.5 bytes/token on English prose, 3.3-4.4 on short VQA questions, 3.1 on technical
# text; 3.6 errs towards counting too many tokens, the safe side of a budget.
ESTIMATE_BYTES_PER_TOKEN = 3.6
# A file that starts like a JSON array is parsed whole up to this size (to count its
# records and confirm the shape); a larger one is judged by its first two lines.
_ARRAY_PARSE_BYTES = 64 * 1024 * 1024
_BATCH_RECORDS = 1024  # records per image-check batch
_CHUNK_IMAGES = 256  # images per process-pool task
_CACHE_IMAGES = 100_000  # image results remembered, so shared images are checked once
_MAX_DISTINCT = 10_000  # bound on distinct keys in the resolution/source counters


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


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    severity: str  # "error" | "warning"
    file: str
    line: int | None
    record_id: str | None
    field: str | None
    message: str
    hint: str

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class InputFile(NamedTuple):
    path: Path
    image_root: Path
    inference_only: bool


@dataclass
class DatasetStats:
    """Counts over the whole input; bounded in memory (4 bytes per record for token lengths)."""

    files: int = 0
    records: int = 0  # lines holding a JSON value
    valid_records: int = 0  # records that match the schema
    turns: int = 0
    images: int = 0  # image references
    image_files_checked: int = 0
    images_per_record: Counter[int] = field(default_factory=Counter)
    resolutions: Counter[str] = field(default_factory=Counter)  # "WxH" of checked files
    image_formats: Counter[str] = field(default_factory=Counter)
    records_per_file: dict[str, int] = field(default_factory=dict)
    records_per_source: Counter[str] = field(default_factory=Counter)
    token_lengths: array = field(default_factory=lambda: array("I"))
    tokens_exact: bool = False  # True: counted with the real tokenizer
    num_crops: int = 4

    def token_percentiles(self) -> dict[str, int]:
        """p50/p90/p95/p99/max of the per-record sequence lengths ({} if none)."""
        if not self.token_lengths:
            return {}
        import numpy as np

        lengths = np.frombuffer(self.token_lengths, dtype=np.uint32)
        result = {
            f"p{q}": int(np.percentile(lengths, q, method="higher")) for q in (50, 90, 95, 99)
        }
        result["max"] = int(lengths.max())
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "valid_records": self.valid_records,
            "turns": self.turns,
            "images": self.images,
            "image_files_checked": self.image_files_checked,
            "images_per_record": {str(k): v for k, v in sorted(self.images_per_record.items())},
            "resolutions": dict(self.resolutions.most_common(50)),
            "image_formats": dict(self.image_formats),
            "records_per_file": self.records_per_file,
            "records_per_source": dict(self.records_per_source.most_common(100)),
            "tokens": {
                "exact": self.tokens_exact,
                "num_crops": self.num_crops,
                "samples": len(self.token_lengths),
                **self.token_percentiles(),
            },
        }


@dataclass
class ValidationReport:
    inputs: list[InputFile]
    options: ValidateOptions
    problems: list[Problem]
    stats: DatasetStats

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return self.errors == 0

    def passed(self, strict: bool = False) -> bool:
        return not self.problems if strict else self.ok

    def counts_by_code(self) -> dict[str, int]:
        """Problem counts, most frequent first."""
        return dict(Counter(p.code for p in self.problems).most_common())

    def to_dict(self) -> dict[str, Any]:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()}
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "inputs": [
                {
                    "file": str(i.path),
                    "image_root": str(i.image_root),
                    "inference_only": i.inference_only,
                }
                for i in self.inputs
            ],
            "options": options,
            "counts_by_code": self.counts_by_code(),
            "stats": self.stats.to_dict(),
            "problems": [asdict(p) for p in self.problems],
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"


def discover_inputs(paths: Sequence[str | Path], image_root: Path | None = None) -> list[InputFile]:
    """The JSONL files to validate, each with its image root and inference-only flag.

    A file stands for itself (images under `<its dir>/images`); a directory (a converted
    dataset) for all its `*.jsonl`, images under `<dir>/images`, with the manifest's
    `inference_only` splits allowed empty answers. Raises FileNotFoundError for a path
    that does not exist and ValueError for a directory without JSONL files.
    """
    return _discover(paths, image_root)[0]


def _discover(
    paths: Sequence[str | Path], image_root: Path | None
) -> tuple[list[InputFile], list[Problem], dict[str, int]]:
    """Inputs, manifest problems, and each file's record count according to its manifest."""
    inputs: list[InputFile] = []
    problems: list[Problem] = []
    expected_counts: dict[str, int] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if not path.is_dir():
            inputs.append(InputFile(path, image_root or path.parent / "images", False))
            continue
        files = sorted(p for p in path.glob("*.jsonl") if not is_temporary_name(p.name))
        inference_only: dict[str, bool] = {}
        manifest = path / "manifest.json"
        if manifest.exists():
            splits = _read_manifest(manifest, problems)
            for split in splits:
                name = split["file"]
                inference_only[name] = bool(split.get("inference_only", False))
                if isinstance(split.get("records"), int):
                    expected_counts[str(path / name)] = split["records"]
                if not (path / name).exists():
                    problems.append(
                        _make_problem(
                            "manifest_missing_file",
                            str(manifest),
                            None,
                            None,
                            f"splits.{split['name']}.file",
                            f"manifest lists {name!r}, which is not in {path}",
                        )
                    )
        if not files and not problems:
            raise ValueError(f"{path} has no *.jsonl files to validate")
        root = image_root or path / "images"
        inputs.extend(InputFile(f, root, inference_only.get(f.name, False)) for f in files)
    return inputs, problems, expected_counts


def _read_manifest(manifest: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    """The manifest's splits as dicts with 'name' and 'file'; problems for a broken one."""
    try:
        data = orjson.loads(manifest.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        problems.append(
            _make_problem(
                "manifest_invalid", str(manifest), None, None, None, f"cannot read: {exc}"
            )
        )
        return []
    splits = data.get("splits") if isinstance(data, dict) else None
    good = isinstance(splits, dict) and all(
        isinstance(s, dict) and isinstance(s.get("file"), str) and "/" not in s["file"]
        for s in splits.values()
    )
    if not good:
        problems.append(
            _make_problem(
                "manifest_invalid",
                str(manifest),
                None,
                None,
                "splits",
                "'splits' must map each split name to an object with a 'file' name",
            )
        )
        return []
    return [{**split, "name": name} for name, split in splits.items()]


def _make_problem(
    code: str,
    file: str,
    line: int | None,
    record_id: str | None,
    field_path: str | None,
    message: str,
) -> Problem:
    info = CODES[code]
    return Problem(code, info.severity, file, line, record_id, field_path, message, info.hint)


def validate_paths(paths: Sequence[str | Path], options: ValidateOptions) -> ValidationReport:
    """Validate JSONL files and converted directories together; never raises on bad data.

    Raises FileNotFoundError / ValueError only for usage errors (a missing path, a
    directory without JSONL files).
    """
    inputs, problems, expected_counts = _discover(paths, options.image_root)
    run = _Run(inputs, options, problems)
    run.validate()
    for file, expected in expected_counts.items():
        found = run.stats.records_per_file.get(file)
        if found is not None and found != expected:
            run.add(
                "manifest_mismatch",
                file,
                None,
                None,
                None,
                f"manifest says {expected} records, the file has {found}",
            )
    return run.report()


class _PendingRecord(NamedTuple):
    file: str
    line: int
    record_id: str
    record: Record
    refs: list[tuple[str, tuple[str, str]]]  # (field, (real image root, rel path))
    complete: bool  # False when an image path already failed the text rules


@dataclass
class _Batch:
    records: list[_PendingRecord] = field(default_factory=list)
    known: dict[tuple[str, str], ImageCheck] = field(default_factory=dict)
    chunks: list[tuple[list[tuple[str, str]], Future | list[ImageCheck]]] = field(
        default_factory=list
    )


class _Run:
    """The state of one validation: problems, stats, duplicate-id index, image batches."""

    def __init__(self, inputs: list[InputFile], options: ValidateOptions, problems: list[Problem]):
        self.inputs = inputs
        self.options = options
        self.problems = problems
        self.stats = DatasetStats(files=len(inputs), num_crops=options.num_crops)
        # Duplicate ids: 16 bytes per record (hash of the id + file/line), not the ids.
        self.id_hashes = array("q")
        self.id_places = array("q")
        self.image_cache: dict[tuple[str, str], ImageCheck] = {}
        self.batch = _Batch()
        self.in_flight: deque[_Batch] = deque()
        self.pool: ProcessPoolExecutor | None = None
        self.workers = options.workers or len(os.sched_getaffinity(0))
        self.counter = (
            _TokenCounter(options.tokenizer, options.image_layout) if options.check_images else None
        )
        self.stats.tokens_exact = options.tokenizer is not None

    def add(
        self,
        code: str,
        file: str,
        line: int | None,
        record_id: str | None,
        field_path: str | None,
        message: str,
    ) -> None:
        self.problems.append(_make_problem(code, file, line, record_id, field_path, message))

    def report(self) -> ValidationReport:
        order = {str(i.path): n for n, i in enumerate(self.inputs)}
        self.problems.sort(key=lambda p: (order.get(p.file, -1), p.line or 0))
        return ValidationReport(self.inputs, self.options, self.problems, self.stats)

    def validate(self) -> None:
        progress = _progress() if self.options.show_progress else None
        try:
            for index, item in enumerate(self.inputs):
                self._validate_file(index, item, progress)
            self._flush_batch(final=True)
            while self.in_flight:
                self._finish_batch(self.in_flight.popleft())
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
            if progress is not None:
                progress.stop()
        self._report_duplicate_ids()

    def _validate_file(self, file_index: int, item: InputFile, progress: Any) -> None:
        file = str(item.path)
        options = self.options
        allow_empty = options.allow_empty_assistant or item.inference_only
        real_root = os.path.realpath(item.image_root)
        validate_schema = fast_validator()
        import fastjsonschema

        schema_exception = fastjsonschema.JsonSchemaException
        stats = self.stats
        add = self.add
        records = 0
        lines_with_content = 0
        done_bytes = 0
        first_problem = len(self.problems)
        task = progress.add_task(item.path.name, total=_size(item.path)) if progress else None
        try:
            for line in iter_jsonl(item.path, options.max_line_bytes):
                if progress is not None:
                    done_bytes += line.size
                    if line.lineno % 4096 == 0:
                        progress.update(task, completed=done_bytes)
                if line.blank:
                    add("blank_line", file, line.lineno, None, None, "blank line")
                    continue
                lines_with_content += 1
                if line.error is not None:
                    if lines_with_content == 1 and self._json_array(item, first_problem):
                        break
                    add(line.error[0], file, line.lineno, None, None, line.error[1])
                    continue
                records += 1
                value = line.value
                try:
                    validate_schema(value)
                except schema_exception:
                    if (
                        lines_with_content == 1
                        and isinstance(value, list)
                        and self._json_array(item, first_problem)
                    ):
                        break
                    self._schema_problems(file_index, file, line.lineno, value)
                    continue
                self._check_record(file_index, file, line.lineno, value, allow_empty, real_root)
        except OSError as exc:
            add(
                "file_unreadable",
                file,
                None,
                None,
                None,
                f"cannot read the file: {exc.strerror or exc}",
            )
            lines_with_content = -1
        if progress is not None:
            progress.update(task, completed=done_bytes)
        stats.records += records
        stats.records_per_file[file] = records
        if lines_with_content == 0:
            add("file_empty", file, None, None, None, "the file holds no records")

    def _json_array(self, item: InputFile, first_problem: int) -> bool:
        """Report a file that is one JSON array as one problem; False if it is not one.

        Called only when the first line with content failed (not JSON on its own, too
        long, or an array), so valid files never pay for it. Problems already reported for
        the file (blank lines before the '[') are dropped: the file is not JSONL at all.
        """
        message = json_array_message(item.path, self.options.max_line_bytes)
        if message is None:
            return False
        del self.problems[first_problem:]
        self.add("json_array", str(item.path), None, None, None, message)
        return True

    def _schema_problems(self, file_index: int, file: str, lineno: int, value: Any) -> None:
        record_id = value.get("id") if isinstance(value, dict) else None
        if not isinstance(record_id, str) or not record_id:
            record_id = None
        else:
            self._remember_id(file_index, lineno, record_id)
        foreign = foreign_format(value)
        if foreign is not None:
            # One clear problem instead of a schema error for every key of every turn.
            converter, looks_like = foreign
            self.add(
                "foreign_format",
                file,
                lineno,
                record_id,
                None,
                f"record looks like {looks_like}, not a phi3v record; convert the file:"
                f" phi3v convert {converter} {shlex.quote(file)} -o OUT",
            )
            return
        for field_path, message in schema_errors(value):
            self.add("schema", file, lineno, record_id, field_path, message)

    def _remember_id(self, file_index: int, lineno: int, record_id: str) -> None:
        self.id_hashes.append(hash(record_id))
        self.id_places.append(file_index << 32 | lineno)

    def _check_record(
        self,
        file_index: int,
        file: str,
        lineno: int,
        value: dict[str, Any],
        allow_empty: bool,
        real_root: str,
    ) -> None:
        """The rules the schema cannot express, on a schema-valid record."""
        stats = self.stats
        record_id = value["id"]
        self.id_hashes.append(hash(record_id))
        self.id_places.append(file_index << 32 | lineno)
        stats.valid_records += 1
        source = value["source"]
        if source in stats.records_per_source or len(stats.records_per_source) < _MAX_DISTINCT:
            stats.records_per_source[source] += 1
        turns = value["conversations"]
        stats.turns += len(turns)
        count = 0
        tagged = False
        refs: list[tuple[str, tuple[str, str]]] = []
        complete = True
        for t, turn in enumerate(turns):
            user = turn["user"]
            assistant = turn["assistant"]
            if user.isspace():
                self.add(
                    "user_blank",
                    file,
                    lineno,
                    record_id,
                    f"conversations[{t}].user",
                    "user message is only whitespace",
                )
            if not allow_empty and (not assistant or assistant.isspace()):
                self.add(
                    "assistant_empty",
                    file,
                    lineno,
                    record_id,
                    f"conversations[{t}].assistant",
                    "assistant answer is empty in training data",
                )
            if "<" in user:
                tagged = tagged or "<|image_" in user
                self._text_tags(file, lineno, record_id, f"conversations[{t}].user", user)
            if "<" in assistant:
                self._text_tags(file, lineno, record_id, f"conversations[{t}].assistant", assistant)
            for i, rel in enumerate(turn["images"]):
                problem = lexical_path_problem(rel)
                if problem is not None:
                    complete = False
                    self.add(
                        problem.code,
                        file,
                        lineno,
                        record_id,
                        f"conversations[{t}].images[{i}]",
                        problem.message,
                    )
                elif self.counter is not None:
                    refs.append((f"conversations[{t}].images[{i}]", (real_root, rel)))
            count += len(turn["images"])
        if tagged:
            for t, message in check_image_tags(turns):
                self.add(
                    "tags_mismatch", file, lineno, record_id, f"conversations[{t}].user", message
                )
        if count > self.options.max_images_per_record:
            self.add(
                "too_many_images",
                file,
                lineno,
                record_id,
                "conversations",
                f"record has {count} images, over the limit of {self.options.max_images_per_record}",
            )
        stats.images += count
        stats.images_per_record[count] += 1
        if self.counter is not None:
            record = Record.from_dict(value)
            self.batch.records.append(
                _PendingRecord(file, lineno, record_id, record, refs, complete)
            )
            if len(self.batch.records) >= _BATCH_RECORDS:
                self._flush_batch(final=False)

    def _text_tags(
        self, file: str, lineno: int, record_id: str, field_path: str, text: str
    ) -> None:
        chat = _CHAT_TOKEN_RE.search(text)
        if chat:
            self.add(
                "special_token_in_text",
                file,
                lineno,
                record_id,
                field_path,
                f"text contains the control token {chat.group()!r}",
            )
        foreign = _FOREIGN_TAG_RE.search(text)
        if foreign:
            self.add(
                "foreign_image_tag",
                file,
                lineno,
                record_id,
                field_path,
                f"text contains {foreign.group()!r}, which Phi-3.5-vision reads as plain text",
            )

    # Image checks: batches of records go to the pool as chunks of distinct images.

    def _flush_batch(self, final: bool) -> None:
        batch, self.batch = self.batch, _Batch()
        if not batch.records:
            return
        todo: dict[tuple[str, str], None] = {}
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
        for start in range(0, len(keys), _CHUNK_IMAGES):
            chunk = keys[start : start + _CHUNK_IMAGES]
            if self.pool is None:
                result: Future | list[ImageCheck] = check_image_batch(
                    chunk, self.options.deep, self.options.max_pixels
                )
            else:
                result = self.pool.submit(
                    check_image_batch, chunk, self.options.deep, self.options.max_pixels
                )
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
        assert self.counter is not None
        text_tokens = self.counter.text_tokens([p.record for p in batch.records])
        num_crops = self.options.num_crops
        max_length = self.options.max_length
        for pending, text in zip(batch.records, text_tokens, strict=True):
            image_tokens = 0
            complete = pending.complete
            for field_path, key in pending.refs:
                check = batch.known[key]
                if check.code is not None:
                    complete = False
                    self.add(
                        check.code,
                        pending.file,
                        pending.line,
                        pending.record_id,
                        field_path,
                        check.message,
                    )
                    continue
                if check.warning is not None:
                    self.add(
                        check.warning,
                        pending.file,
                        pending.line,
                        pending.record_id,
                        field_path,
                        check.message,
                    )
                image_tokens += _image_tokens(check.width, check.height, num_crops)
            if not complete:
                continue  # the length is unknown while an image is unusable
            length = text + image_tokens
            self.stats.token_lengths.append(length)
            if max_length is not None and length > max_length:
                estimated = "" if self.stats.tokens_exact else "about "
                self.add(
                    "token_budget",
                    pending.file,
                    pending.line,
                    pending.record_id,
                    None,
                    f"sample is {estimated}{length} tokens ({text} text + {image_tokens} image"
                    f" tokens from {len(pending.refs)} images at num_crops={num_crops}),"
                    f" over --max-length {max_length}",
                )

    def _chunk_result(self, chunk: list[tuple[str, str]], future: Future) -> list[ImageCheck]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return future.result()
        except BrokenProcessPool:
            # A decoder crashed its process: find the culprit one image at a time.
            self.pool = _new_pool(self.workers)
            return [_check_isolated(key, self.options) for key in chunk]

    def _remember_image(self, key: tuple[str, str], check: ImageCheck) -> None:
        if key in self.image_cache:
            return
        stats = self.stats
        stats.image_files_checked += 1
        if check.code is None:
            resolution = f"{check.width}x{check.height}"
            if resolution in stats.resolutions or len(stats.resolutions) < _MAX_DISTINCT:
                stats.resolutions[resolution] += 1
            stats.image_formats[check.format] += 1
        if len(self.image_cache) >= _CACHE_IMAGES:
            # Forget the older half; a later reference re-checks its image, never wrongly.
            for old in list(self.image_cache)[: _CACHE_IMAGES // 2]:
                del self.image_cache[old]
        self.image_cache[key] = check

    def _report_duplicate_ids(self) -> None:
        """Find equal id hashes, then re-read just those lines to name the duplicates."""
        if len(self.id_hashes) < 2:
            return
        import numpy as np

        hashes = np.frombuffer(self.id_hashes, dtype=np.int64)
        order = np.argsort(hashes, kind="stable")
        sorted_hashes = hashes[order]
        equal = np.nonzero(sorted_hashes[1:] == sorted_hashes[:-1])[0]
        if not len(equal):
            return
        places = np.frombuffer(self.id_places, dtype=np.int64)
        suspects = np.unique(np.concatenate([places[order[equal]], places[order[equal + 1]]]))
        lines_by_file: dict[int, set[int]] = {}
        for place in suspects.tolist():
            lines_by_file.setdefault(place >> 32, set()).add(place & 0xFFFFFFFF)
        first_seen: dict[str, str] = {}
        for file_index in sorted(lines_by_file):
            wanted = lines_by_file[file_index]
            path = self.inputs[file_index].path
            for line in iter_jsonl(path, self.options.max_line_bytes):
                value = line.value
                if line.lineno not in wanted or not isinstance(value, dict):
                    continue
                record_id = value.get("id")
                if not isinstance(record_id, str):
                    continue
                where = f"{path}:{line.lineno}"
                if record_id in first_seen:
                    self.add(
                        "duplicate_id",
                        str(path),
                        line.lineno,
                        record_id,
                        "id",
                        f"id {record_id!r} is already used at {first_seen[record_id]}",
                    )
                else:
                    first_seen[record_id] = where


class _TokenCounter:
    """Text tokens of records: exact with a tokenizer.json, otherwise estimated from bytes.

    Counts the text chunks of `phi3v_data.prompt.record_chunks`, the layout the processor
    encodes: each tokenized on its own, plus one `<s>` where the chunk has it (image
    placeholder positions are added separately).
    """

    def __init__(self, tokenizer_dir: Path | None, image_layout: str = "seed"):
        self.tokenizer = None
        self.image_layout = image_layout
        if tokenizer_dir is not None:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))

    def text_tokens(self, records: list[Record]) -> list[int]:
        texts_per_record, bos_per_record = [], []
        for record in records:
            chunks = [c for c in record_chunks(record, False, self.image_layout) if c.image is None]
            texts_per_record.append([c.text for c in chunks if c.text])
            bos_per_record.append(sum(c.bos for c in chunks))
        if self.tokenizer is None:
            lengths = (sum(_estimate_tokens(t) for t in texts) for texts in texts_per_record)
            return [bos + n for bos, n in zip(bos_per_record, lengths, strict=True)]
        flat = [text for texts in texts_per_record for text in texts]
        encoded = iter(
            len(encoding.ids)
            for encoding in self.tokenizer.encode_batch(flat, add_special_tokens=False)
        )
        return [
            bos + sum(next(encoded) for _ in texts)
            for bos, texts in zip(bos_per_record, texts_per_record, strict=True)
        ]


def _estimate_tokens(text: str) -> int:
    """Control tokens count 1; a newline 2 (the tokenizer writes it as a byte token, after a
    control token also a separate space); the rest by bytes."""
    specials = len(_CHAT_TOKEN_RE.findall(text))
    rest = _CHAT_TOKEN_RE.sub("", text) if specials else text
    newlines = rest.count("\n")
    size = len(rest) if rest.isascii() else len(rest.encode("utf-8"))
    return specials + 2 * newlines + math.ceil((size - newlines) / ESTIMATE_BYTES_PER_TOKEN)


@functools.lru_cache(maxsize=4096)
def _image_tokens(width: int, height: int, num_crops: int) -> int:
    return num_image_tokens(width, height, num_crops)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing

    # forkserver: forking a process that runs a progress-bar thread can deadlock.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def _check_isolated(key: tuple[str, str], options: ValidateOptions) -> ImageCheck:
    from concurrent.futures.process import BrokenProcessPool

    with _new_pool(1) as pool:
        try:
            return pool.submit(check_image_batch, [key], options.deep, options.max_pixels).result()[
                0
            ]
        except BrokenProcessPool:
            return ImageCheck("image_corrupt", f"image {key[1]!r} crashed the image decoder")


def foreign_format(value: Any) -> tuple[str, str] | None:
    """(converter name, description) when `value` is a record of another known format.

    LLaVA: `conversations` of `{"from", "value"}` turns (with `image`/`images` or none).
    ShareGPT / OpenAI messages: `messages` (or `conversations`) of `{"role", "content"}`
    turns, optional `images`. Meant for records that already failed the schema.
    """
    if not isinstance(value, dict):
        return None
    for key in ("conversations", "messages"):
        turns = value.get(key)
        if not isinstance(turns, list) or not turns:
            continue
        if not all(isinstance(turn, dict) for turn in turns):
            continue
        if key == "conversations" and all("from" in t and "value" in t for t in turns):
            images = [k for k in ("image", "images") if k in value]
            with_images = f" and {images[0]!r}" if images else ""
            return "llava", f"LLaVA ('conversations' of from/value turns{with_images})"
        if all("role" in t and "content" in t for t in turns):
            return "sharegpt", f"ShareGPT / OpenAI messages ({key!r} of role/content turns)"
    return None


def json_array_message(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str | None:
    """What to tell about `path` if it holds one JSON array instead of JSONL, else None.

    An array file: its first line with content starts with '[' and either is a whole
    array with nothing after it (a one-line array), or is not JSON on its own and the
    whole file parses as an array (files up to `_ARRAY_PARSE_BYTES`; larger ones are not
    loaded), or it opens a pretty-printed array of objects: '[' or '[{' on the first line
    and '{' (or ',') starting the second. A JSONL file whose lines are arrays is not one.
    """
    try:
        with path.open("rb") as stream:
            lines = _content_lines(stream, max_line_bytes)
            first, first_complete = next(lines, (b"", True))
            if not first.startswith(b"["):
                return None
            second = next(lines, (None, True))[0]
    except OSError:
        return None
    value: Any = _NOT_JSON
    if first_complete:
        value = _loads(first)
    if value is not _NOT_JSON:  # a whole JSON value on the first line
        if not isinstance(value, list) or second is not None:
            return None
        return _array_message(path, value, None)
    error = None
    size = _size(path)
    if size is not None and size <= _ARRAY_PARSE_BYTES:
        try:
            data = path.read_bytes()
            whole = orjson.loads(data[3:] if data.startswith(b"\xef\xbb\xbf") else data)
        except orjson.JSONDecodeError as exc:
            error = exc
        except OSError:
            return None
        else:
            return _array_message(path, whole, None) if isinstance(whole, list) else None
    opens_objects = first[1:].lstrip()[:1] in (b"", b"{")
    if opens_objects and second is not None and second[:1] in (b"{", b","):
        return _array_message(path, None, error)
    return None


_NOT_JSON = object()


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _content_lines(stream: Any, max_line_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """(stripped bytes, complete) of each non-blank line; an overlong line is cut short."""
    first = True
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        if first and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        first = False
        complete = len(line) <= max_line_bytes or line.endswith(b"\n")
        if not complete:
            while True:  # skip the rest of the overlong line
                rest = stream.readline(1024 * 1024)
                if not rest or rest.endswith(b"\n"):
                    break
        stripped = line.strip()
        if stripped:
            yield stripped, complete


def _array_message(path: Path, value: list[Any] | None, error: Exception | None) -> str:
    if value is not None:
        noun = "record" if len(value) == 1 else "records"
        what = f"the file is one JSON array of {len(value):,} {noun}"
    elif isinstance(error, orjson.JSONDecodeError):
        what = (
            "the file starts like a JSON array (and is not valid JSON either: "
            f"{error.msg} at line {error.lineno}, column {error.colno})"
        )
    else:
        what = "the file starts like a JSON array"
    out = path.with_name(path.stem + ("-lines.jsonl" if path.suffix == ".jsonl" else ".jsonl"))
    message = (
        f"{what}, not JSONL: JSONL needs one JSON object per line. Rewrite it:"
        f" jq -c '.[]' {shlex.quote(str(path))} > {shlex.quote(str(out))}"
    )
    foreign = foreign_format(value[0]) if value else None
    if foreign is not None:
        converter, looks_like = foreign
        message += (
            f". Its records look like {looks_like}: then convert the result with"
            f" phi3v convert {converter} {shlex.quote(str(out))} -o OUT"
        )
    return message


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("validating {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    progress.start()
    return progress


def iter_problem_examples(
    report: ValidationReport, per_code: int
) -> Iterator[tuple[str, list[Problem]]]:
    """(code, first `per_code` problems) for each code, most frequent first."""
    examples: dict[str, list[Problem]] = {}
    for problem in report.problems:
        bucket = examples.setdefault(problem.code, [])
        if len(bucket) < per_code:
            bucket.append(problem)
    for code in report.counts_by_code():
        yield code, examples[code]
