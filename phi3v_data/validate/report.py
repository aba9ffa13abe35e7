"""What a validation found: `Problem`s, `DatasetStats` and the `ValidationReport`."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from phi3v_data.validate.codes import CODES
from phi3v_data.validate.options import ValidateOptions

MAX_DISTINCT = 10_000  # bound on distinct keys in the resolution/source counters


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


def make_problem(
    code: str,
    file: str,
    line: int | None,
    record_id: str | None,
    field_path: str | None,
    message: str,
) -> Problem:
    info = CODES[code]
    return Problem(code, info.severity, file, line, record_id, field_path, message, info.hint)


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
