"""Record cards: what the page shows of each sampled or flagged record.

A card holds text only (escaped by the template); its images get their thumbnails later,
from `phi3v_data.report.thumbnails`. Any parsed line makes a card: a record that breaks
the schema is shown as far as it goes.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from phi3v_data.report.inputs import SplitFile
from phi3v_data.report.labels import record_label
from phi3v_data.report.sampling import DatasetPass, SampledRecord
from phi3v_data.validate import Problem, ValidationReport

MAX_TEXT_CHARS = 3000  # per message shown on a card
MAX_META_CHARS = 4000
MAX_TURNS_SHOWN = 12
# `meta` keys that name the two images of a record as a pair seen side by side: its two
# images are captioned "left" and "right".
PAIR_KEYS = ("left_image", "right_image")


@dataclass
class ImageView:
    rel: str
    caption: str
    key: tuple[str, str]  # (real image root, rel): one decode per distinct image
    thumb: str | None = None  # URL: data URI or relative path
    full: str | None = None
    size: str = ""  # "WxH" of the original
    problem: str | None = None  # why there is no picture


@dataclass
class TurnView:
    user: str
    assistant: str
    images: list[ImageView]
    clip: bool = False  # the images are frames of one clip: one contact-sheet row


@dataclass
class Card:
    anchor: str
    split: str
    file: str
    line: int
    record_id: str
    source: str
    label: str | None
    turns: list[TurnView]
    hidden_turns: int
    meta: str | None
    problems: list[Problem]
    bad: bool  # chosen because it has problems (not by the sampler)
    raw: str | None = None  # the line's JSON when it is not a record at all


def _text(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if len(text) > limit:
        return f"{text[:limit]}… ({len(text) - limit:,} more characters)"
    return text


def _path_text(rel: Any) -> str:
    """An image path as shown: control characters (a NUL, say) written as escapes."""
    if not isinstance(rel, str):
        return _text(rel, 200)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in rel):
        return rel.encode("unicode_escape").decode("ascii")
    return rel


def _frame_captions(meta: Any, count: int) -> list[str] | None:
    """'frame 12 · 0.48 s' per image when `meta` describes sampled video frames."""
    if not isinstance(meta, dict):
        return None
    indices = meta.get("frame_indices")
    if not isinstance(indices, list) or len(indices) != count:
        return None
    times = meta.get("timestamps")
    if not isinstance(times, list) or len(times) != count:
        times = [None] * count
    captions = []
    for index, time in zip(indices, times, strict=True):
        caption = f"frame {index}"
        if isinstance(time, (int, float)) and not isinstance(time, bool):
            caption += f" · {time:.2f} s"
        captions.append(caption)
    return captions


def _image_captions(meta: Any, frames: list[str] | None, count: int) -> list[str]:
    """One caption per image of the record: its frame, its side of a pair, or its number."""
    if frames:
        return frames
    if count == 2 and isinstance(meta, dict) and all(key in meta for key in PAIR_KEYS):
        return ["left", "right"]
    return [f"image {n + 1}" for n in range(count)]


def make_card(
    anchor: str,
    record: SampledRecord,
    real_root: str,
    problems: list[Problem],
    bad: bool,
) -> Card:
    """A card from any parsed line; a record that breaks the schema is shown as far as it goes."""
    value = record.value
    if not isinstance(value, dict):
        return Card(
            anchor,
            record.split,
            record.file,
            record.line,
            "",
            "",
            None,
            [],
            0,
            None,
            problems,
            bad,
            raw=_text(value, MAX_META_CHARS),
        )
    raw_turns = value.get("conversations")
    raw_turns = raw_turns if isinstance(raw_turns, list) else []
    all_images = [
        rel
        for turn in raw_turns
        if isinstance(turn, dict) and isinstance(turn.get("images"), list)
        for rel in turn["images"]
    ]
    meta = value.get("meta")
    frames = _frame_captions(meta, len(all_images))
    captions = iter(_image_captions(meta, frames, len(all_images)))
    turns: list[TurnView] = []
    for turn in raw_turns[:MAX_TURNS_SHOWN]:
        turn = turn if isinstance(turn, dict) else {}
        rels = turn.get("images") if isinstance(turn.get("images"), list) else []
        images = [
            ImageView(
                _path_text(rel), next(captions), (real_root, rel if isinstance(rel, str) else "")
            )
            for rel in rels
        ]
        turns.append(
            TurnView(
                _text(turn.get("user", "")),
                _text(turn.get("assistant", "")),
                images,
                clip=bool(frames) and len(images) > 1,
            )
        )
    meta_text = None
    if meta is not None:
        meta_text = _text(orjson.dumps(meta, option=orjson.OPT_INDENT_2).decode(), MAX_META_CHARS)
    return Card(
        anchor=anchor,
        split=record.split,
        file=record.file,
        line=record.line,
        record_id=_text(value.get("id", ""), 200),
        source=_text(value.get("source", ""), 200),
        label=record_label(value),
        turns=turns,
        hidden_turns=max(0, len(raw_turns) - MAX_TURNS_SHOWN),
        meta=meta_text,
        problems=problems,
        bad=bad,
    )


def make_cards(
    files: Sequence[SplitFile],
    report: ValidationReport,
    scan: DatasetPass,
    bad_lines: Sequence[tuple[str, int]],
) -> tuple[list[Card], dict[tuple[str, int], str]]:
    """The sampled records' cards, split by split, then those of the `bad_lines` not sampled.

    Returns the cards and each card's anchor by (file, line), for the problem tables' links.
    """
    # Each card lists its record's problems; index only the cards' lines (the validator
    # may hold a problem for every record of a large dataset).
    shown = {(r.file, r.line) for records in scan.samples.values() for r in records}
    shown.update((r.file, r.line) for r in scan.problem_records)
    by_line: dict[tuple[str, int], list[Problem]] = defaultdict(list)
    for problem in report.problems:
        if (problem.file, problem.line) in shown:
            by_line[(problem.file, problem.line)].append(problem)
    roots = {f.name: os.path.realpath(f.input.image_root) for f in files}
    cards: list[Card] = []
    anchors: dict[tuple[str, int], str] = {}

    def add_card(record: SampledRecord, bad: bool) -> None:
        key = (record.file, record.line)
        anchor = f"card-{len(cards) + 1}"
        anchors[key] = anchor
        cards.append(make_card(anchor, record, roots[record.file], by_line.get(key, []), bad))

    for split in sorted(scan.samples):
        for record in scan.samples[split]:
            add_card(record, bad=False)
    order = {key: n for n, key in enumerate(bad_lines)}
    for record in sorted(scan.problem_records, key=lambda r: order[(r.file, r.line)]):
        if (record.file, record.line) not in anchors:
            add_card(record, bad=True)
    return cards, anchors
