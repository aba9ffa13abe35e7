"""UCF-101 action videos -> `ucf101_<split>.jsonl`: k sampled frames + a class question.

Source: https://www.crcv.ucf.edu/data/UCF101.php (13,320 clips, 101 classes, XviD AVI,
mostly 320x240 at 25 fps). Two layouts, auto-detected or chosen with `--layout`:
- `original`: `UCF-101/<Class>/v_<Class>_gGG_cCC.avi` + `ucfTrainTestlist/` (classInd.txt,
  trainlist0k.txt, testlist0k.txt, CRLF). Split k (1-3) tests groups 7k-6..7k, trains on
  the rest (9,537 / 3,783 clips for split 1). `--val-fraction` moves the highest-numbered
  train groups to `val`, so a group (clips cut from one long video) never straddles splits.
- `subset`: `ROOT/{train,val,test}/<Class>/*.avi` (the reference recipe's 10-class
  subset: 300 / 30 / 75 clips).

Labels come from the class folder or the split list, never from the file name
(`HandstandPushups/` holds `v_HandStandPushups_*`). The defaults reproduce the reference
recipe: 8 frames at `floor(arange(0, n, n/8))`, JPEGs at
`images/<split>/<Class>/<stem>.<i>.jpg`, ids `<split>-<index:010d>`, and the English
prompt listing the sorted classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from converters.class_folder_flags import classes_flag
from converters.class_folders import select_classes
from converters.clips import (
    ClipSampler,
    FrameSettings,
    allow_truncated_flag,
    count_clip,
    decoder_flag,
    jpeg_quality_flag,
    max_frames_flag,
    max_side_flag,
    num_frames_flag,
    sampling_flag,
)
from converters.converter import (
    ConversionError,
    Converter,
    ItemResult,
    OutputContext,
    Plan,
    Skip,
    WorkItem,
)
from converters.registry import register_source
from converters.video import VideoError
from phi3v_data.flags import flag
from phi3v_data.paths import lexical_path_problem
from phi3v_data.records import Record, Turn

SOURCE = "ucf101"
SPLIT_LISTS = "ucfTrainTestlist"
VIDEO_FOLDER = "UCF-101"
SUBSET_SPLITS = ("train", "val", "test")
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg"})
PROMPT = "Classify the video into one of the following classes: {classes}."
_GROUP_RE = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


LAYOUTS = ("auto", "original", "subset")


@dataclass(frozen=True)
class UCF101Options:
    """Everything that changes the output (stored in the manifest, checked on resume).

    The fields are the flags of `phi3v convert ucf101`.
    """

    layout: str = flag(
        "auto",
        choices=LAYOUTS,
        help="Input layout; auto looks for train/val/test or ucfTrainTestlist/.",
    )
    split_lists: Path | None = flag(
        None,
        help="The ucfTrainTestlist/ folder, when it is not beside or inside SRC.",
        parse=Path.resolve,
    )
    split_id: int = flag(1, min=1, max=3, help="Official train/test split (original layout).")
    val_fraction: float = flag(
        0.0,
        min=0.0,
        max=0.95,
        help="Carve a val split out of train: this fraction of the train groups, taking "
        "the highest group numbers (e.g. 0.1 with split 1: g24-g25). 0: no val.",
    )
    classes: tuple[str, ...] = classes_flag()
    num_frames: int = num_frames_flag()
    sampling: str = sampling_flag()
    max_frames: int = max_frames_flag()
    decoder: str = decoder_flag()
    max_side: int | None = max_side_flag()
    jpeg_quality: int = jpeg_quality_flag()
    allow_truncated: bool = allow_truncated_flag()
    prompt: str | None = flag(
        None, help="The user question; default lists the sorted classes (reference)."
    )


@dataclass(frozen=True, slots=True)
class Clip:
    """A work item's payload: the video file, its label and the question to ask."""

    path: str
    label: str
    prompt: str


@dataclass(frozen=True, slots=True)
class _Listed:
    """A clip named in a split list (or found on disk), with where it was named."""

    label: str
    rel: str  # "<Class>/<file>" under the video folder (or split folder)
    where: str  # "file:line" or the folder, for error messages


class UCF101Converter(Converter):
    name = SOURCE
    progress_unit = "clips"
    rate_counter = "frames"

    def __init__(self, options: UCF101Options) -> None:
        super().__init__(options)
        self._sampler = ClipSampler(FrameSettings.of(options))

    def plan(self, src: Path) -> Plan:
        options = self.options
        layout = detect_layout(src, options)
        if layout == "subset":
            if options.val_fraction:
                raise ConversionError(
                    f"{src} is in the subset layout, which has its own val/ folder: "
                    "drop --val-fraction"
                )
            video_root = src
            listed, labels = _list_subset(src, options.classes)
        else:
            lists = _split_lists_folder(src, options)
            video_root = src / VIDEO_FOLDER if (src / VIDEO_FOLDER).is_dir() else src
            listed, labels = _list_original(lists, options)
        prompt = options.prompt or PROMPT.format(classes=", ".join(labels))
        splits: dict[str, list[WorkItem]] = {}
        skips: list[Skip] = []
        for split, entries in listed.items():
            items: list[WorkItem] = []
            base = video_root / split if layout == "subset" else video_root
            for entry in sorted(entries, key=lambda e: (e.label, e.rel)):
                path = base / entry.rel
                if not path.is_file():
                    skips.append(
                        Skip(split, entry.rel, "missing_file", f"listed in {entry.where}: {path}")
                    )
                    continue
                clip = Clip(path=str(path), label=entry.label, prompt=prompt)
                items.append(WorkItem(split, len(items), entry.rel, clip))
            splits[split] = items
        return Plan(splits=splits, skips=skips)

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        clip: Clip = item.payload
        result = ItemResult()
        try:
            frames, meta = self._sampler.sample(
                Path(clip.path), {"label": clip.label, "clip": item.key}
            )
        except VideoError as exc:
            result.skips.append(Skip(item.split, item.key, exc.reason, exc.detail))
            return result
        stem = Path(clip.path).stem
        images = self._sampler.write_frames(output, frames, f"{item.split}/{clip.label}/{stem}")
        record = Record(
            id=f"{item.split}-{item.index:010d}",
            source=SOURCE,
            conversations=(Turn(user=clip.prompt, assistant=clip.label, images=tuple(images)),),
            meta=meta,
        )
        result.records.append(record)
        count_clip(result, meta, len(images))
        return result


def detect_layout(src: Path, options: UCF101Options) -> str:
    """`original` or `subset`: the one asked for, or the one `src` looks like."""
    if options.layout != "auto":
        return options.layout
    if any((src / split).is_dir() for split in SUBSET_SPLITS):
        return "subset"
    if options.split_lists or (src / SPLIT_LISTS).is_dir() or (src.parent / SPLIT_LISTS).is_dir():
        return "original"
    raise ConversionError(
        f"cannot tell the layout of {src}: expected either the original release "
        f"({VIDEO_FOLDER}/<Class>/*.avi with {SPLIT_LISTS}/ beside it) or the subset layout "
        "(train/ val/ test/ folders of <Class>/*.avi). Point at the right folder, or pass "
        "--layout and --split-lists."
    )


def _split_lists_folder(src: Path, options: UCF101Options) -> Path:
    candidates = (
        [options.split_lists]
        if options.split_lists
        else [src / SPLIT_LISTS, src.parent / SPLIT_LISTS]
    )
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise ConversionError(
        f"no split lists found (looked for {', '.join(str(c) for c in candidates)}): unpack "
        "UCF101TrainTestSplits-RecognitionTask.zip next to UCF-101/ or pass --split-lists DIR"
    )


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; CRLF and LF both work."""
    if not path.is_file():
        raise ConversionError(f"{path}: split list not found (the release has it; restore it)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{path}: not UTF-8 text ({exc})") from exc
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _class_index(path: Path) -> dict[str, int]:
    numbers: dict[str, int] = {}
    seen: dict[int, int] = {}
    for lineno, line in _read_lines(path):
        match = re.fullmatch(r"(\d+)\s+(\S+)", line)
        if not match:
            raise ConversionError(f"{path}:{lineno}: expected '<number> <ClassName>', got {line!r}")
        number, name = int(match[1]), match[2]
        if name in numbers or number in seen:
            raise ConversionError(
                f"{path}:{lineno}: class {name!r} or number {number} is listed twice"
            )
        numbers[name], seen[number] = number, lineno
    if not numbers:
        raise ConversionError(f"{path}: no classes listed")
    return numbers


def _parse_split_list(path: Path, numbers: dict[str, int], needs_label: bool) -> list[_Listed]:
    entries: list[_Listed] = []
    first_seen: dict[str, int] = {}
    for lineno, line in _read_lines(path):
        where = f"{path}:{lineno}"
        fields = line.split()
        if len(fields) > 2 or (needs_label and len(fields) != 2):
            expected = "<Class>/<file>.avi <label>" if needs_label else "<Class>/<file>.avi"
            raise ConversionError(f"{where}: expected '{expected}', got {line!r}")
        rel = fields[0]
        problem = lexical_path_problem(rel)
        parts = rel.split("/")
        if problem is not None or len(parts) != 2:
            raise ConversionError(f"{where}: {rel!r} is not a '<Class>/<file>' path")
        label = parts[0]
        if label not in numbers:
            raise ConversionError(
                f"{where}: class {label!r} is not in classInd.txt (fix the line or the class list)"
            )
        if len(fields) == 2:
            if not fields[1].isdigit():
                raise ConversionError(f"{where}: label {fields[1]!r} is not a number")
            if int(fields[1]) != numbers[label]:
                raise ConversionError(
                    f"{where}: label {fields[1]} does not match {label!r}, which is "
                    f"{numbers[label]} in classInd.txt"
                )
        if rel in first_seen:
            raise ConversionError(f"{where}: {rel} is already listed on line {first_seen[rel]}")
        first_seen[rel] = lineno
        entries.append(_Listed(label=label, rel=rel, where=where))
    return entries


def _list_original(
    lists: Path, options: UCF101Options
) -> tuple[dict[str, list[_Listed]], list[str]]:
    if options.split_id not in (1, 2, 3):
        raise ConversionError(f"--split-id must be 1, 2 or 3, got {options.split_id}")
    numbers = _class_index(lists / "classInd.txt")
    selected = select_classes(sorted(numbers), options.classes, f"{lists / 'classInd.txt'}")
    k = options.split_id
    train = _parse_split_list(lists / f"trainlist{k:02d}.txt", numbers, needs_label=True)
    test = _parse_split_list(lists / f"testlist{k:02d}.txt", numbers, needs_label=False)
    train = [e for e in train if e.label in selected]
    test = [e for e in test if e.label in selected]
    splits: dict[str, list[_Listed]] = {"train": train}
    if options.val_fraction:
        splits["train"], splits["val"] = _carve_val(train, options.val_fraction)
    splits["test"] = test
    return splits, sorted(selected)


def _carve_val(train: list[_Listed], fraction: float) -> tuple[list[_Listed], list[_Listed]]:
    """Move the highest-numbered train groups (all classes) to val: no group straddles."""
    if not 0 < fraction < 1:
        raise ConversionError(f"--val-fraction must be between 0 and 1, got {fraction}")
    groups: dict[str, int] = {}
    for entry in train:
        match = _GROUP_RE.search(Path(entry.rel).stem)
        if match is None:
            raise ConversionError(
                f"{entry.where}: {entry.rel} has no _gGG_cCC group in its name, so "
                "--val-fraction cannot keep its group together; drop --val-fraction"
            )
        groups[entry.rel] = int(match[1])
    numbers = sorted(set(groups.values()))
    count = max(1, round(fraction * len(numbers)))
    if count >= len(numbers):
        raise ConversionError(
            f"--val-fraction {fraction} would leave no train groups ({len(numbers)} in train)"
        )
    val_groups = set(numbers[-count:])
    kept = [e for e in train if groups[e.rel] not in val_groups]
    val = [e for e in train if groups[e.rel] in val_groups]
    return kept, val


def _list_subset(src: Path, classes: tuple[str, ...]) -> tuple[dict[str, list[_Listed]], list[str]]:
    found: dict[str, list[_Listed]] = {}
    all_classes: set[str] = set()
    for split in SUBSET_SPLITS:
        folder = src / split
        if not folder.is_dir():
            continue
        entries = []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if class_dir.name.startswith("."):
                continue
            all_classes.add(class_dir.name)
            for video in sorted(class_dir.iterdir()):
                if video.suffix.lower() in VIDEO_SUFFIXES and not video.name.startswith("."):
                    rel = f"{class_dir.name}/{video.name}"
                    entries.append(_Listed(label=class_dir.name, rel=rel, where=str(class_dir)))
        found[split] = entries
    if not all_classes:
        raise ConversionError(
            f"{src}: no class folders in {', '.join(SUBSET_SPLITS)} (expected "
            "<split>/<Class>/*.avi)"
        )
    selected = select_classes(sorted(all_classes), classes, str(src))
    return {s: [e for e in entries if e.label in selected] for s, entries in found.items()}, sorted(
        selected
    )


register_source(
    SOURCE,
    help=(
        "UCF-101 videos -> k sampled JPEG frames per clip + 'which class?' question.\n\n"
        "SRC is the original release (UCF-101/<Class>/*.avi with ucfTrainTestlist/ beside or "
        "inside it) or the subset layout (SRC/{train,val,test}/<Class>/*.avi). Unreadable, "
        "corrupt, truncated or empty clips are skipped and listed in manifest.json.\n\n"
        "Example: phi3v convert ucf101 ~/data/UCF101 -o ~/data/ucf101-phi3v --split-id 1 "
        "--val-fraction 0.1"
    ),
    options=UCF101Options,
    converter=UCF101Converter,
)
