"""`phi3v report`: a self-contained HTML page showing what the model will see.

Data flow:
  inputs (`validate.discover_inputs`) -> `validate.validate_paths` (problems + stats, reused
  as they are) -> one streaming pass over the JSONL (`iter_jsonl`): a seeded reservoir
  sample per split, the records of the first problems, per-split/source counts and
  labels -> thumbnails of the chosen records' images only (paths resolved with the
  validator's path rules, broken files become placeholders) -> matplotlib plots -> one
  Jinja2 template with autoescaping -> `report.html` (written atomically).

Memory is bounded by the sample size, not the dataset: the validator streams, the
sampling pass keeps `samples` records per split, and only the chosen images are decoded.
The page is self-contained (thumbnails as JPEG data URIs within a byte budget) unless
`assets_dir` is given, and it loads nothing from the network; a Content-Security-Policy
allows only its own inline script, so even a templating slip could not run dataset text.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import secrets
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from phi3v_data import __version__, dataset_dir
from phi3v_data.jsonl import atomic_write_bytes, iter_jsonl
from phi3v_data.validate import (
    InputFile,
    Problem,
    ValidateOptions,
    ValidationReport,
    discover_inputs,
    iter_problem_examples,
    validate_paths,
)

THUMB_SIZE = 160  # px, longest side of a card thumbnail
FULL_SIZE = 1024  # px, longest side of the view opened by a click (self-contained page)
FULL_SIZE_ASSETS = 2048  # the same for --assets-dir, where size is not a concern
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 3000  # per message shown on a card
MAX_META_CHARS = 4000
MAX_TURNS_SHOWN = 12
MAX_LABELS_PER_SOURCE = 1000  # distinct labels counted per source; the rest go to "other"
LABELS_PLOTTED = 25
# `meta` keys that hold a record's class, in order of preference.
LABEL_KEYS = ("label", "class", "class_name", "category")
_SHORT_ANSWER = 32  # characters: longer answers are free text, not a class
# Sources whose single-turn answer is the class when `meta` has no label (see `record_label`).
CLASSIFICATION_SOURCES = frozenset({"ucf101", "hateful-memes", "hateful_memes", "nlvr2"})
# Problems of a line that holds no record: listed, but there is no card to show.
_LINE_CODES = frozenset({"blank_line", "bad_utf8", "bad_json", "line_too_long"})
# Room kept for the page's text and plots when deciding which images fit the budget.
_PAGE_RESERVE_BYTES = 512 * 1024


class UnknownSplitError(ValueError):
    """`--split` names a split that no input file belongs to."""


@dataclass(frozen=True)
class ReportOptions:
    """Everything `build_report` does; built once from the CLI flags."""

    samples: int = 48  # records sampled per split
    seed: int = 0
    splits: tuple[str, ...] = ()  # only these splits (all when empty)
    num_crops: int = 4
    max_length: int | None = None
    tokenizer: Path | None = None
    image_root: Path | None = None
    workers: int | None = None
    assets_dir: Path | None = None  # thumbnails as files here instead of data URIs
    max_bytes: int = DEFAULT_MAX_BYTES  # budget of the self-contained page
    bad_records: int = 6  # extra cards: the first records with problems
    examples_per_code: int = 10
    command: str = ""  # the command line shown in the header
    show_progress: bool = False

    def __post_init__(self) -> None:
        self.validate_options()  # the validator's own checks (num_crops, tokenizer, ...)
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        if self.max_bytes < 1024 * 1024:
            raise ValueError(f"max_bytes must be at least 1 MiB, got {self.max_bytes}")

    def validate_options(self, allow_empty_assistant: bool = False) -> ValidateOptions:
        return ValidateOptions(
            image_root=self.image_root,
            num_crops=self.num_crops,
            max_length=self.max_length,
            tokenizer=self.tokenizer,
            workers=self.workers,
            show_progress=self.show_progress,
            allow_empty_assistant=allow_empty_assistant,
        )


@dataclass(frozen=True)
class ReportSummary:
    """What `build_report` wrote, for the CLI's closing lines."""

    path: Path
    bytes: int
    cards: int
    records: int
    errors: int
    warnings: int
    left_out: tuple[str, ...]


# ---------------------------------------------------------------------------------------
# Inputs and splits


@dataclass(frozen=True)
class SplitFile:
    """One JSONL input with the split it belongs to."""

    input: InputFile
    split: str

    @property
    def name(self) -> str:
        return str(self.input.path)


def split_files(inputs: Iterable[InputFile]) -> list[SplitFile]:
    """Name each input's split (`phi3v_data.dataset_dir`: its folder's manifest, else its
    file name, e.g. `hateful_memes_dev_seen.jsonl` -> `dev_seen`)."""
    return [SplitFile(item, dataset_dir.split_of_file(item.path)) for item in inputs]


def run_validation(
    paths: Sequence[str | Path], options: ReportOptions
) -> tuple[list[SplitFile], ValidationReport]:
    """The validator's findings for the inputs (only the chosen splits' files, if any)."""
    files = split_files(discover_inputs(paths, options.image_root))
    if not options.splits:
        return files, validate_paths(paths, options.validate_options())
    chosen = [f for f in files if f.split in options.splits]
    if not chosen:
        known = ", ".join(sorted({f.split for f in files})) or "none"
        raise UnknownSplitError(
            f"no input file belongs to split(s) {', '.join(options.splits)}; splits: {known}"
        )
    # Files passed one by one lose their manifest's inference-only flag: allow empty
    # answers when every chosen file is inference-only, and otherwise drop the findings
    # the validator would not have made for the inference-only files among them.
    inference_only = {f.name for f in chosen if f.input.inference_only}
    allow_empty = len(inference_only) == len(chosen)
    report = validate_paths([f.input.path for f in chosen], options.validate_options(allow_empty))
    if inference_only and not allow_empty:
        report.problems[:] = [
            p
            for p in report.problems
            if not (p.code == "assistant_empty" and p.file in inference_only)
        ]
    return chosen, report


# ---------------------------------------------------------------------------------------
# The streaming pass: samples, problem records, counts, labels


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


def record_label(value: dict[str, Any]) -> str | None:
    """The class of a classification record, or None.

    `meta.label` (or `class`, `class_name`, `category`): UCF-101's class, NLVR2's
    True/False, the memes' 0/1. When the record has a single short answer that says it
    differently ("No." for label 0), the label shows both, "0 · No", so the plot also
    reveals answers that disagree with their labels. Without a `meta` label, a single-turn
    record of a known classification source (ucf101, hateful-memes, nlvr2) is labelled by
    its answer without the final period. Other records (DocVQA's free answers) have none.
    """
    turns = value.get("conversations")
    answer = None
    if isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], dict):
        text = turns[0].get("assistant")
        if isinstance(text, str) and 0 < len(text.strip()) <= _SHORT_ANSWER and "\n" not in text:
            answer = text.strip().rstrip(".")
    meta = value.get("meta")
    label = None
    if isinstance(meta, dict):
        for key in LABEL_KEYS:
            found = meta.get(key)
            if isinstance(found, bool):
                label = str(found).lower()
            elif isinstance(found, (str, int)) and str(found):
                label = str(found)
            if label is not None:
                break
    if label is None:
        return answer if value.get("source") in CLASSIFICATION_SOURCES else None
    if answer and answer.lower() != label.lower():
        return f"{label} · {answer}"
    return label


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
            if problem.line is None or problem.code in _LINE_CODES:
                continue  # no record to show
            key = (problem.file, problem.line)
            if key in chosen or (pass_ == 0 and problem.code in codes_done):
                continue
            codes_done.add(problem.code)
            chosen.append(key)
    return chosen


# ---------------------------------------------------------------------------------------
# Cards


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
    frames = _frame_captions(value.get("meta"), len(all_images))
    pair = value.get("source") == "nlvr2" and len(all_images) == 2
    turns: list[TurnView] = []
    number = 0
    for turn in raw_turns[:MAX_TURNS_SHOWN]:
        turn = turn if isinstance(turn, dict) else {}
        images = []
        rels = turn.get("images") if isinstance(turn.get("images"), list) else []
        for rel in rels:
            if frames:
                caption = frames[number]
            elif pair:
                caption = ("left", "right")[number]
            else:
                caption = f"image {number + 1}"
            number += 1
            rel_text = _path_text(rel)
            key = (real_root, rel if isinstance(rel, str) else "")
            images.append(ImageView(rel_text, caption, key))
        turns.append(
            TurnView(
                _text(turn.get("user", "")),
                _text(turn.get("assistant", "")),
                images,
                clip=bool(frames) and len(images) > 1,
            )
        )
    meta = value.get("meta")
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


# ---------------------------------------------------------------------------------------
# Images


@dataclass
class _Decoded:
    thumb: bytes | None = None
    size: str = ""
    problem: str | None = None


def _open_rgb(real_root: str, rel: str, longest: int, checked: bool = False) -> tuple[Any, str]:
    """(RGB image no larger than needed for `longest` px, original "WxH").

    Uses the validator's image check first (`checked`: it passed before), so a path
    outside the image root is never opened and a damaged or over-large file is refused
    with the validator's message. Raises `ValueError` with that message.
    """
    from PIL import Image

    from phi3v_data.images import ACCEPTED_FORMATS, check_image
    from phi3v_data.paths import PathProblem, resolve_image_path

    if not checked:
        check = check_image(real_root, rel)
        if check.code is not None:
            raise ValueError(check.message)
    path = resolve_image_path(Path(real_root), rel, real_root=real_root)
    if isinstance(path, PathProblem):
        raise ValueError(path.message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path, formats=ACCEPTED_FORMATS) as image:
            size = f"{image.width}x{image.height}"
            image.draft("RGB", (longest, longest))  # JPEG: decode at a reduced scale
            rgb = image.convert("RGB")
    rgb.thumbnail((longest, longest), reducing_gap=2.0)
    return rgb, size


def _jpeg(image: Any, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def _decode_thumb(real_root: str, rel: str) -> _Decoded:
    if not isinstance(rel, str) or not rel:
        return _Decoded(problem="image path is not a non-empty string")
    try:
        rgb, size = _open_rgb(real_root, rel, THUMB_SIZE)
        return _Decoded(_jpeg(rgb, 75), size)
    except ValueError as exc:
        return _Decoded(problem=str(exc))
    except Exception as exc:  # a damaged file can make a decoder raise anything
        return _Decoded(problem=f"image {rel!r} does not decode: {type(exc).__name__}: {exc}")


def _data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


class _AssetWriter:
    """Writes images beside the page and returns their relative, URL-quoted links."""

    def __init__(self, assets_dir: Path, page: Path):
        self.dir = assets_dir
        self.page_dir = page.parent

    def write(self, kind: str, key: tuple[str, str], data: bytes) -> str:
        digest = hashlib.sha256(f"{key[0]}\0{key[1]}".encode()).hexdigest()[:20]
        path = self.dir / kind / f"{digest}.jpg"
        atomic_write_bytes(path, data, fsync=False)
        rel = os.path.relpath(path, self.page_dir)
        return quote(Path(rel).as_posix())


def attach_images(cards: list[Card], budget: int, assets: _AssetWriter | None) -> list[str]:
    """Fill in each image's thumbnail and full view; return what was left out and why.

    Thumbnails go first, in card order, then full views while the budget lasts (the
    budget counts the data URIs' bytes; with `assets` nothing is embedded).
    """
    decoded: dict[tuple[str, str], _Decoded] = {}
    views = [view for card in cards for turn in card.turns for view in turn.images]
    used = 0
    thumbs_left_out = 0
    for view in views:
        result = decoded.get(view.key)
        if result is None:
            result = decoded[view.key] = _decode_thumb(*view.key)
        view.size, view.problem = result.size, result.problem
        if result.thumb is None:
            continue
        if assets is not None:
            view.thumb = assets.write("thumbs", view.key, result.thumb)
            continue
        uri = _data_uri(result.thumb)
        if used + len(uri) > budget:
            thumbs_left_out += 1
            view.problem = "left out to keep the page within its size budget"
            continue
        used += len(uri)
        view.thumb = uri
    full_left_out = 0
    full_cache: dict[tuple[str, str], str | None] = {}
    for view in views:
        if view.thumb is None:
            continue
        if view.key not in full_cache:
            full_cache[view.key] = _full_view(view.key, assets, budget - used)
        uri = full_cache[view.key]
        if uri is None or (assets is None and used + len(uri) > budget):
            full_left_out += 1
            view.full = view.thumb
            continue
        if assets is None:
            used += len(uri)
        view.full = uri
    left_out = []
    mib = budget / 2**20
    if thumbs_left_out:
        left_out.append(
            f"{thumbs_left_out} thumbnails left out to stay within {mib:.0f} MiB of images"
            " (use --assets-dir, fewer --samples or a larger --max-size-mb)"
        )
    if full_left_out:
        left_out.append(
            f"{full_left_out} full-size views left out (the thumbnail opens instead) to stay"
            f" within {mib:.0f} MiB of images; --assets-dir writes them all beside the page"
        )
    return left_out


def _full_view(key: tuple[str, str], assets: _AssetWriter | None, room: int) -> str | None:
    if assets is None and room <= 0:
        return None
    try:
        rgb, _ = _open_rgb(*key, FULL_SIZE_ASSETS if assets else FULL_SIZE, checked=True)
    except Exception:  # the thumbnail decoded; a second failure just keeps the thumbnail
        return None
    data = _jpeg(rgb, 85)
    return assets.write("full", key, data) if assets else _data_uri(data)


# ---------------------------------------------------------------------------------------
# Plots


@dataclass
class Plot:
    anchor: str
    title: str
    note: str
    uri: str


def _png_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plain(text: str, limit: int = 40) -> str:
    """Dataset text as a matplotlib label: shortened, and `$` not read as mathtext."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def make_plots(report: ValidationReport, scan: DatasetPass, max_length: int | None) -> list[Plot]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plots: list[Plot] = []
    with plt.rc_context({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False}):
        for build in (_plot_splits, _plot_labels, _plot_images_per_record, _plot_resolutions):
            plot = build(plt, report, scan)
            if plot is not None:
                plots.append(plot)
        tokens = _plot_tokens(plt, report, max_length)
        if tokens is not None:
            plots.append(tokens)
    return plots


def _finish(plt: Any, figure: Any, anchor: str, title: str, note: str = "") -> Plot:
    uri = _png_uri(figure)
    plt.close(figure)
    return Plot(anchor, title, note, uri)


def _plot_splits(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    counts = scan.records_per_split_source
    if not counts:
        return None
    splits = sorted({split for split, _ in counts})
    sources = sorted({source for _, source in counts})
    figure, axes = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(splits)))
    left = [0] * len(splits)
    for source in sources:
        values = [counts.get((split, source), 0) for split in splits]
        bars = axes.barh([_plain(s) for s in splits], values, left=left, label=_plain(source))
        axes.bar_label(
            bars, labels=[f"{v:,}" if v else "" for v in values], label_type="center", fontsize=8
        )
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.invert_yaxis()
    axes.set_xlabel("records")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(
        title="source", fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    return _finish(plt, figure, "plot-splits", "Records per split and source")


def _plot_labels(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    sources = [s for s in sorted(scan.labels) if scan.labels[s]]
    if not sources:
        return None
    shown = {
        s: sorted(scan.labels[s].items(), key=lambda kv: -sum(kv[1].values()))[:LABELS_PLOTTED]
        for s in sources
    }
    all_splits = sorted(
        {split for s in sources for _, per_split in shown[s] for split in per_split}
    )
    colours = {split: f"C{i % 10}" for i, split in enumerate(all_splits)}  # one colour per split
    heights = [1.0 + 0.25 * len(shown[s]) for s in sources]
    figure, axes_list = plt.subplots(
        len(sources),
        1,
        figsize=(6.4, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    notes = []
    for source, (axes,) in zip(sources, axes_list, strict=True):
        labels = shown[source]
        splits = sorted({split for _, per_split in labels for split in per_split})
        names = [_plain(label) for label, _ in labels]
        left = [0] * len(labels)
        for split in splits:
            values = [per_split.get(split, 0) for _, per_split in labels]
            axes.barh(names, values, left=left, label=_plain(split), color=colours[split])
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.invert_yaxis()
        axes.set_title(_plain(source), loc="left", fontsize=9)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(
            title="split", fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1)
        )
        hidden = len(scan.labels[source]) - len(labels)
        if hidden > 0:
            notes.append(f"{source}: {hidden} less frequent labels not shown")
    axes_list[-1][0].set_xlabel("records")
    figure.tight_layout()
    note = (
        "Label: meta.label (or class), with the answer when it says it differently"
        ' ("0 · No"); without one, the single answer of a classification source. '
    )
    return _finish(plt, figure, "plot-labels", "Label distribution", note + "; ".join(notes))


def _plot_images_per_record(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    counts = report.stats.images_per_record
    if not counts:
        return None
    figure, axes = plt.subplots(figsize=(6.4, 2.6))
    keys = sorted(counts)
    bars = axes.bar([str(k) for k in keys], [counts[k] for k in keys], color="#4c72b0")
    axes.bar_label(bars, labels=[f"{counts[k]:,}" for k in keys], fontsize=8)
    axes.set_xlabel("images in the record")
    axes.set_ylabel("records")
    return _finish(plt, figure, "plot-images", "Images per record", "Schema-valid records.")


def _plot_resolutions(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    resolutions = report.stats.resolutions
    if not resolutions:
        return None
    points = []
    for text, count in resolutions.items():
        width, _, height = text.partition("x")
        if width.isdigit() and height.isdigit():
            points.append((int(width), int(height), count))
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(5.2, 4.2))
    largest = max(c for _, _, c in points)
    axes.scatter(
        [p[0] for p in points],
        [p[1] for p in points],
        s=[12 + 200 * (c / largest) ** 0.5 for _, _, c in points],
        alpha=0.55,
        color="#dd8452",
        edgecolors="#8c4a1c",
    )
    axes.set_xlabel("width (px)")
    axes.set_ylabel("height (px)")
    for width, height, count in sorted(points, key=lambda p: -p[2])[:5]:
        axes.annotate(
            f"{width}x{height} ×{count:,}",
            (width, height),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=7,
            color="#57606a",
        )
    axes.set_xlim(0, max(p[0] for p in points) * 1.25)
    axes.set_ylim(0, max(p[1] for p in points) * 1.15)
    note = f"{sum(c for *_, c in points):,} distinct image files; point area grows with the count."
    return _finish(plt, figure, "plot-resolutions", "Image resolutions", note)


def _plot_tokens(plt: Any, report: ValidationReport, max_length: int | None) -> Plot | None:
    stats = report.stats
    if not stats.token_lengths:
        return None
    import numpy as np

    lengths = np.frombuffer(stats.token_lengths, dtype=np.uint32)
    figure, axes = plt.subplots(figsize=(6.4, 2.8))
    axes.hist(lengths, bins=min(60, max(5, len(np.unique(lengths)))), color="#55a868")
    axes.set_xlabel(f"tokens per sample (text + image tokens at num_crops={stats.num_crops})")
    axes.set_ylabel("records")
    kind = "exact (tokenizer)" if stats.tokens_exact else "estimated from text bytes"
    percentiles = stats.token_percentiles()
    note = f"Text tokens {kind}. " + ", ".join(f"{k} {v:,}" for k, v in percentiles.items())
    if max_length is not None:
        over = int((lengths > max_length).sum())
        axes.axvline(max_length, color="#c44e52", linestyle="--", linewidth=1.5)
        axes.annotate(
            f"--max-length {max_length}",
            (max_length, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            color="#c44e52",
            fontsize=8,
        )
        note += f"; {over:,} of {len(lengths):,} samples over --max-length {max_length}."
    return _finish(plt, figure, "plot-tokens", "Token lengths", note)


# ---------------------------------------------------------------------------------------
# The page


@dataclass
class ProblemGroup:
    code: str
    severity: str
    count: int
    hint: str
    examples: list[tuple[Problem, str | None]]  # (problem, anchor of its card)


def _human_bytes(size: int) -> str:
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


def render_page(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    environment = Environment(
        loader=PackageLoader("phi3v_data", "report_templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["bytes"] = _human_bytes
    return environment.get_template("report.html.j2").render(**context)


def build_report(paths: Sequence[str | Path], out: Path, options: ReportOptions) -> ReportSummary:
    """Validate, sample, draw and write the report page to `out`.

    Raises FileNotFoundError / ValueError for usage errors (a missing path, a directory
    without JSONL files, an unknown split); bad data never raises.
    """
    out = Path(out)
    files, report = run_validation(paths, options)
    bad_lines = problem_record_lines(report, options.bad_records)
    scan = scan_dataset(files, options.samples, options.seed, set(bad_lines))

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

    plots = make_plots(report, scan, options.max_length)
    assets = _AssetWriter(options.assets_dir, out) if options.assets_dir else None
    plot_bytes = sum(len(p.uri) for p in plots)
    budget = max(0, options.max_bytes - plot_bytes - _PAGE_RESERVE_BYTES)
    left_out = attach_images(cards, budget, assets)
    hidden_problems = sum(
        max(0, count - options.examples_per_code) for count in report.counts_by_code().values()
    )
    if hidden_problems:
        left_out.append(
            f"{hidden_problems:,} problems beyond the first {options.examples_per_code} of each"
            " code are counted but not listed (`phi3v validate --format json --output FILE` lists them all)"
        )

    groups = [
        ProblemGroup(
            code,
            examples[0].severity,
            report.counts_by_code()[code],
            examples[0].hint,
            [(p, anchors.get((p.file, p.line)) if p.line else None) for p in examples],
        )
        for code, examples in iter_problem_examples(report, options.examples_per_code)
    ]
    groups.sort(key=lambda g: (g.severity != "error", -g.count))
    image_roots = sorted({f.input.image_root for f in files})
    stats = report.stats
    sample_cards: dict[str, list[Card]] = defaultdict(list)
    for card in cards:
        if not card.bad:
            sample_cards[card.split].append(card)
    context = {
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
        "assets": assets is not None,
    }
    html = render_page(context).encode("utf-8")
    atomic_write_bytes(out, html)
    out.chmod(0o644)  # a page to share, not a secret (the temporary file was 0600)
    if assets is None and len(html) > options.max_bytes:
        left_out.append(f"the page is {_human_bytes(len(html))}, over the budget (long texts)")
    return ReportSummary(
        path=out,
        bytes=len(html),
        cards=len(cards),
        records=stats.records,
        errors=report.errors,
        warnings=report.warnings,
        left_out=tuple(left_out),
    )
