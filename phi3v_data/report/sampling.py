"""One streaming pass over the JSONL: a seeded sample per split, the records of the first
problems, and the counts the plots need (records per split and source, labels).

Memory is bounded by the sample size and the label count, not by the dataset.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from phi3v_data.jsonl import iter_jsonl
from phi3v_data.report.inputs import SplitFile
from phi3v_data.report.labels import record_label
from phi3v_data.validate import ValidationReport

MAX_LABELS_PER_SOURCE = 1000  # distinct labels counted per source; the rest go to "other"
# Problems of a line that holds no record: listed, but there is no card to show.
LINE_CODES = frozenset({"blank_line", "bad_utf8", "bad_json", "line_too_long"})


@dataclass
class SampledRecord:
    split: str
    file: str
    line: int
    value: Any  # the parsed line (a record, or whatever the line held)


@dataclass
class DatasetPass:
    """What one pass over the JSONL keeps: bounded by the sample size and label count."""

    samples: dict[str, list[SampledRecord]] = field(default_factory=dict)
    problem_records: list[SampledRecord] = field(default_factory=list)
    records_per_split_source: Counter[tuple[str, str]] = field(default_factory=Counter)
    # source -> label -> split -> count
    labels: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    bytes_on_disk: int = 0


def scan_dataset(
    files: Sequence[SplitFile], samples: int, seed: int, wanted: set[tuple[str, int]]
) -> DatasetPass:
    """One streaming pass: a reservoir sample per split plus the `wanted` (file, line)s.

    Each split has its own generator seeded with (seed, split), so a split's sample does
    not change when other splits are added or left out. Algorithm R: the first `samples`
    records fill the reservoir, record n (0-based) then replaces a random slot with
    probability samples / (n + 1).
    """
    result = DatasetPass()
    generators: dict[str, random.Random] = {}
    seen: Counter[str] = Counter()
    for item in files:
        split, name = item.split, item.name
        reservoir = result.samples.setdefault(split, [])
        rng = generators.setdefault(split, random.Random(f"{seed}:{split}"))
        try:
            result.bytes_on_disk += item.input.path.stat().st_size
            for line in iter_jsonl(item.input.path):
                if line.blank or line.error is not None:
                    continue  # the validator reports these lines
                value = line.value
                if (name, line.lineno) in wanted:
                    result.problem_records.append(SampledRecord(split, name, line.lineno, value))
                _count(result, split, value)
                n = seen[split]
                seen[split] += 1
                if n < samples:
                    reservoir.append(SampledRecord(split, name, line.lineno, value))
                else:
                    slot = rng.randrange(n + 1)
                    if slot < samples:
                        reservoir[slot] = SampledRecord(split, name, line.lineno, value)
        except OSError:
            continue  # the validator reports file_unreadable
    for reservoir in result.samples.values():
        reservoir.sort(key=lambda r: (r.file, r.line))
    return result


def _count(result: DatasetPass, split: str, value: Any) -> None:
    source = value.get("source") if isinstance(value, dict) else None
    source = source if isinstance(source, str) else "(no source)"
    result.records_per_split_source[(split, source)] += 1
    if not isinstance(value, dict):
        return
    label = record_label(value)
    if label is None:
        return
    per_source = result.labels.setdefault(source, {})
    if label not in per_source and len(per_source) >= MAX_LABELS_PER_SOURCE:
        label = "(other)"
    per_source.setdefault(label, Counter())[split] += 1


def problem_record_lines(report: ValidationReport, limit: int) -> list[tuple[str, int]]:
    """(file, line) of up to `limit` records with problems: one per code first, then more."""
    chosen: list[tuple[str, int]] = []
    codes_done: set[str] = set()
    for pass_ in (0, 1):
        for problem in report.problems:
            if len(chosen) >= limit:
                return chosen
            if problem.line is None or problem.code in LINE_CODES:
                continue  # no record to show
            key = (problem.file, problem.line)
            if key in chosen or (pass_ == 0 and problem.code in codes_done):
                continue
            codes_done.add(problem.code)
            chosen.append(key)
    return chosen
