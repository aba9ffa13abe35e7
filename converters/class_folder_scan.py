"""Reading a class-folder dataset's folders: which are splits, which are classes, which
files are the media to convert (`MediaFile`) and what else was found (`FolderProblem`,
later a named skip). Only folders are listed; no file is opened.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from converters.converter import ConversionError

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


@dataclass(frozen=True, slots=True)
class FolderProblem:
    key: str
    reason: str
    detail: str
    label: str | None  # the class folder it was found in, if any


def hidden(name: str) -> bool:
    return name.startswith(".") or name in HIDDEN_NAMES


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


def split_folders(src: Path, forced: bool) -> list[tuple[str, Path]]:
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


def scan_root(
    root: Path, prefix: str, spec: FolderSpec
) -> tuple[dict[str, list[MediaFile]], list[FolderProblem]]:
    """The files of each class folder under `root`, and what was found that is not used."""
    by_class: dict[str, list[MediaFile]] = {}
    problems: list[FolderProblem] = []
    for entry in _entries(root):
        key = prefix + entry.name
        if entry.is_dir():
            files = _scan_class(entry, key + "/", spec, problems)
            if files:
                by_class[entry.name] = files
        elif entry.suffix.lower() in spec.extensions:
            problems.append(
                FolderProblem(
                    key,
                    "not_in_class_folder",
                    f"a {spec.kind} outside any class folder is not read: move it into "
                    f"{prefix}<class>/",
                    None,
                )
            )
    return by_class, problems


def _scan_class(
    folder: Path, prefix: str, spec: FolderSpec, problems: list[FolderProblem]
) -> list[MediaFile]:
    label = folder.name
    try:
        entries = _entries(folder)
    except ConversionError as exc:
        problems.append(FolderProblem(prefix, "unreadable", str(exc), label))
        return []
    media: list[Path] = []
    for entry in entries:
        key = prefix + entry.name
        if entry.is_dir():
            problems.append(
                FolderProblem(
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
                FolderProblem(
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
