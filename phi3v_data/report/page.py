"""The page: its template's context, rendered by Jinja2 with autoescaping.

The template (`templates/report.html.j2`) loads nothing from the network; a
Content-Security-Policy allows only its own inline script (a fresh nonce per page), so
even a templating slip could not run dataset text.
"""

from __future__ import annotations

import os
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from phi3v_data import __version__
from phi3v_data.report.cards import Card
from phi3v_data.report.inputs import SplitFile
from phi3v_data.report.options import ReportOptions
from phi3v_data.report.plots import Plot
from phi3v_data.report.sampling import DatasetPass
from phi3v_data.validate import Problem, ValidationReport, iter_problem_examples


@dataclass
class ProblemGroup:
    code: str
    severity: str
    count: int
    hint: str
    examples: list[tuple[Problem, str | None]]  # (problem, anchor of its card)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _tree_bytes(root: Path) -> int:
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def problem_groups(
    report: ValidationReport, anchors: dict[tuple[str, int], str], per_code: int
) -> list[ProblemGroup]:
    """The validator's problems by code, errors first, then the most frequent; each example
    links to its record's card when the page has one."""
    counts = report.counts_by_code()
    groups = [
        ProblemGroup(
            code,
            examples[0].severity,
            counts[code],
            examples[0].hint,
            [(p, anchors.get((p.file, p.line)) if p.line else None) for p in examples],
        )
        for code, examples in iter_problem_examples(report, per_code)
    ]
    groups.sort(key=lambda g: (g.severity != "error", -g.count))
    return groups


def page_context(
    paths: Sequence[str | Path],
    options: ReportOptions,
    files: Sequence[SplitFile],
    report: ValidationReport,
    scan: DatasetPass,
    cards: list[Card],
    plots: list[Plot],
    groups: list[ProblemGroup],
    left_out: list[str],
) -> dict[str, Any]:
    """Everything `templates/report.html.j2` shows."""
    image_roots = sorted({f.input.image_root for f in files})
    stats = report.stats
    sample_cards: dict[str, list[Card]] = defaultdict(list)
    for card in cards:
        if not card.bad:
            sample_cards[card.split].append(card)
    return {
        "title": ", ".join(str(p) for p in paths),
        "nonce": secrets.token_urlsafe(16),
        "version": __version__,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": options.command,
        "options": options,
        "files": [
            (f.name, f.split, stats.records_per_file.get(f.name), f.input.inference_only)
            for f in files
        ],
        "sources": sorted(stats.records_per_source.items(), key=lambda kv: -kv[1]),
        "splits": sorted({f.split for f in files}),
        "stats": stats,
        "percentiles": stats.token_percentiles(),
        "disk_bytes": scan.bytes_on_disk + sum(_tree_bytes(r) for r in image_roots),
        "errors": report.errors,
        "warnings": report.warnings,
        "plots": plots,
        "groups": groups,
        "sample_cards": dict(sorted(sample_cards.items())),
        "bad_cards": [c for c in cards if c.bad],
        "left_out": left_out,
        "assets": options.assets_dir is not None,
    }


def render_page(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    environment = Environment(
        loader=PackageLoader("phi3v_data.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["bytes"] = human_bytes
    return environment.get_template("report.html.j2").render(**context)
