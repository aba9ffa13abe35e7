"""Datasets stored one folder per class: `SRC/<class>/<file>` or `SRC/<split>/<class>/<file>`.

Shared by `phi3v convert video-folder` and `image-folder` (and ucf101's `--classes`).
Planning only lists folders; no file is opened:

- Layout (`--layout auto|classes|splits`): `auto` reads SRC's visible folders as splits
  when every one is named like a split (train, training, val, valid, validation, dev,
  test, testing; any case) and as classes when none is; a mix is an error naming both.
  Split folders are written under their usual name (training -> train, valid and
  validation -> val, testing -> test); other names (`--layout splits`) are kept.
- A class's files sit directly in its folder and are recognised by extension. Hidden
  entries (dotfiles, `__MACOSX`, `Thumbs.db`, `desktop.ini`) are ignored; anything else
  that is not used is a named skip: a file with another extension (`not_a_video`,
  `not_an_image`), a folder inside a class folder (`nested_folder`), a media file
  outside any class folder (`not_in_class_folder`).
- Without split folders everything is train, unless `--val-fraction`/`--test-fraction`
  move whole groups of files (`assign_splits`). A group is what `--group-regex` finds in
  a file name (its first capture group, else the whole match; digits compared as
  numbers), by default UCF-101's `_g(\\d+)_` when any name has it; a file whose name does
  not match is a group of its own. Groups are ordered by sha256(seed, group) and the
  first round(F x groups) go to val, the next to test: deterministic, and the same for
  any worker count. When no group spans two classes (always true when files are their
  own groups) this is done per class, so every class gets its share and keeps at least
  one train group; otherwise across all classes (UCF-101's groups are numbered across
  classes, as its official splits treat them).
- Output names: each file gets a stem unique within its class folder (its stem, or its
  whole name when two stems collide, e.g. `a.mp4` and `a.mkv`).

The flags of the class-folder sources and their checks: `converters/class_folder_flags.py`;
cutting files into val/test by group: `converters/class_folder_splits.py`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from converters.class_folder_splits import assign_splits
from converters.converter import ConversionError, Skip

HIDDEN_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "dev",
    "test": "test",
    "testing": "test",
}
_SPLIT_RANK = {"train": 0, "val": 1, "dev": 2, "test": 3}
# A name that can name an output file (a source, a split folder).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class FolderSpec:
    """What to list: the media kind and extensions, and the user's layout/split options."""

    kind: str  # "video" or "image": used in messages and the not-a-<kind> skip reason
    extensions: frozenset[str]
    layout: str = "auto"
    classes: tuple[str, ...] = ()
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    group_regex: str | None = None
    split_seed: int = 0

    @classmethod
    def of(cls, options: Any, kind: str, extensions: frozenset[str]) -> FolderSpec:
        """The spec from a source's options (fields of the same names)."""
        return cls(
            kind=kind,
            extensions=extensions,
            layout=options.layout,
            classes=options.classes,
            val_fraction=options.val_fraction,
            test_fraction=options.test_fraction,
            group_regex=options.group_regex,
            split_seed=options.split_seed,
        )

    @property
    def not_media(self) -> str:
        return "not_an_image" if self.kind == "image" else f"not_a_{self.kind}"


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One file to convert. `key` (its path under SRC) names it in skips and meta."""

    path: str
    key: str
    label: str
    stem: str  # output name stem, unique within the class folder
    group: str | None = None


@dataclass(slots=True)
class Listing:
    """The files per split in plan order, the classes, and the skips found while listing."""

    layout: str
    classes: list[str]
    splits: dict[str, list[MediaFile]]
    skips: list[Skip] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Problem:
    key: str
    reason: str
    detail: str
    label: str | None  # the class folder it was found in, if any


def hidden(name: str) -> bool:
    return name.startswith(".") or name in HIDDEN_NAMES


def select_classes(available: list[str], wanted: tuple[str, ...], where: str) -> set[str]:
    """`wanted` (all when empty); an unknown name is an error listing the available ones."""
    if not wanted:
        return set(available)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ConversionError(
            f"--classes: {', '.join(unknown)} not found in {where}; available: "
            f"{', '.join(available)}"
        )
    return set(wanted)


def list_class_folders(src: Path, spec: FolderSpec) -> Listing:
    """Every usable file of SRC per split, in plan order, and the named skips.

    Raises:
        ConversionError: SRC is not a folder of class (or split) folders, holds no file of
            the kind, or the options do not fit it.
    """
    if not src.is_dir():
        raise ConversionError(
            f"{src} is not a folder: give the folder that holds <class>/ (or "
            "<split>/<class>/) folders"
        )
    layout = detect_layout(src, spec.layout)
    found: dict[str, dict[str, list[MediaFile]]] = {}
    problems: dict[str, list[_Problem]] = {}
    if layout == "splits":
        if spec.val_fraction or spec.test_fraction:
            raise ConversionError(
                f"{src} has its own split folders: drop --val-fraction and --test-fraction"
            )
        for split, folder in _split_folders(src, forced=spec.layout == "splits"):
            found[split], problems[split] = _scan_root(folder, f"{folder.name}/", spec)
    else:
        found["train"], problems["train"] = _scan_root(src, "", spec)
    available = sorted({label for by_class in found.values() for label in by_class})
    if not available:
        raise ConversionError(_nothing_found(src, spec, layout, problems))
    selected = select_classes(available, spec.classes, str(src))
    kept = {
        split: [file for label in sorted(by_class) if label in selected for file in by_class[label]]
        for split, by_class in found.items()
    }
    skips = [
        Skip(split, problem.key, problem.reason, problem.detail)
        for split, listed in problems.items()
        for problem in listed
        if problem.label is None or problem.label in selected
    ]
    splits = kept if layout == "splits" else assign_splits(kept["train"], spec)
    return Listing(layout=layout, classes=sorted(selected), splits=splits, skips=skips)


def detect_layout(src: Path, layout: str) -> str:
    if layout != "auto":
        return layout
    folders = [entry.name for entry in _entries(src) if entry.is_dir()]
    split_like = [name for name in folders if name.lower() in SPLIT_ALIASES]
    if split_like and len(split_like) < len(folders):
        others = [name for name in folders if name not in split_like]
        raise ConversionError(
            f"{src} mixes split folders ({', '.join(split_like)}) with other folders "
            f"({', '.join(others[:5])}{' ...' if len(others) > 5 else ''}): pass --layout "
            "splits (every folder is a split) or --layout classes (every folder is a class)"
        )
    return "splits" if split_like else "classes"


def _split_folders(src: Path, forced: bool) -> list[tuple[str, Path]]:
    named: dict[str, Path] = {}
    for entry in _entries(src):
        if not entry.is_dir():
            continue
        split = SPLIT_ALIASES.get(entry.name.lower(), entry.name if forced else "")
        if not SAFE_NAME.fullmatch(split):
            raise ConversionError(
                f"{entry}: a split folder name must be letters, digits, '.', '_' and '-' "
                "(it names the output file <source>_<split>.jsonl); rename it"
            )
        if split in named:
            raise ConversionError(
                f"{named[split]} and {entry} are both the {split!r} split: merge or rename one"
            )
        named[split] = entry
    return sorted(named.items(), key=lambda item: (_SPLIT_RANK.get(item[0], 2), item[0]))


def _entries(folder: Path) -> list[Path]:
    """The visible entries of `folder`, sorted by name."""
    try:
        return sorted((p for p in folder.iterdir() if not hidden(p.name)), key=lambda p: p.name)
    except OSError as exc:
        raise ConversionError(f"{folder}: cannot list it ({exc.strerror or exc})") from exc


def _scan_root(
    root: Path, prefix: str, spec: FolderSpec
) -> tuple[dict[str, list[MediaFile]], list[_Problem]]:
    """The files of each class folder under `root`, and what was found that is not used."""
    by_class: dict[str, list[MediaFile]] = {}
    problems: list[_Problem] = []
    for entry in _entries(root):
        key = prefix + entry.name
        if entry.is_dir():
            files = _scan_class(entry, key + "/", spec, problems)
            if files:
                by_class[entry.name] = files
        elif entry.suffix.lower() in spec.extensions:
            problems.append(
                _Problem(
                    key,
                    "not_in_class_folder",
                    f"a {spec.kind} outside any class folder is not read: move it into "
                    f"{prefix}<class>/",
                    None,
                )
            )
    return by_class, problems


def _scan_class(
    folder: Path, prefix: str, spec: FolderSpec, problems: list[_Problem]
) -> list[MediaFile]:
    label = folder.name
    try:
        entries = _entries(folder)
    except ConversionError as exc:
        problems.append(_Problem(prefix, "unreadable", str(exc), label))
        return []
    media: list[Path] = []
    for entry in entries:
        key = prefix + entry.name
        if entry.is_dir():
            problems.append(
                _Problem(
                    key + "/",
                    "nested_folder",
                    f"folders inside a class folder are not read: put its files directly in "
                    f"{prefix}",
                    label,
                )
            )
        elif entry.suffix.lower() in spec.extensions:
            media.append(entry)
        else:
            what = f"extension {entry.suffix!r}" if entry.suffix else "no extension"
            problems.append(
                _Problem(
                    key,
                    spec.not_media,
                    f"{what} is not among the {spec.kind} extensions, so the file is not read",
                    label,
                )
            )
    stems = unique_stems([path.name for path in media])
    return [MediaFile(str(path), prefix + path.name, label, stems[path.name]) for path in media]


def unique_stems(names: Iterable[str]) -> dict[str, str]:
    """An output stem per file name, unique even on a case-insensitive filesystem.

    The stem (`a` for `a.mp4`) unless it collides; then the whole name (`a.mp4`), and
    as a last resort a `~N` suffix.
    """
    names = list(names)
    chosen = {name: PurePosixPath(name).stem for name in names}
    while True:
        counts = Counter(stem.casefold() for stem in chosen.values())
        clashing = [n for n in names if counts[chosen[n].casefold()] > 1 and chosen[n] != n]
        if not clashing:
            break
        for name in clashing:
            chosen[name] = name
    counts = Counter(stem.casefold() for stem in chosen.values())
    seen: Counter[str] = Counter()
    for name in names:
        folded = chosen[name].casefold()
        if counts[folded] > 1:
            seen[folded] += 1
            chosen[name] = f"{chosen[name]}~{seen[folded]}"
    return chosen


def _nothing_found(
    src: Path, spec: FolderSpec, layout: str, problems: dict[str, list[_Problem]]
) -> str:
    expected = "<split>/<class>/<file>" if layout == "splits" else "<class>/<file>"
    message = (
        f"{src}: no {spec.kind} file in any class folder (expected {src}/{expected}, "
        f"extensions {', '.join(sorted(spec.extensions))})"
    )
    others = [problem.key for listed in problems.values() for problem in listed]
    if others:
        message += f"; found {len(others)} other entries, e.g. {', '.join(others[:3])}"
    return message
