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

Here: listing a SRC (`list_class_folders`) and cutting it into splits (`assign_splits`).
Reading the folders: `converters/class_folder_scan.py`; the sources' flags and their
checks: `converters/class_folder_flags.py`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from converters.class_folder_scan import (
    FolderProblem,
    FolderSpec,
    MediaFile,
    detect_layout,
    scan_root,
    split_folders,
)
from converters.converter import ConversionError, Skip

UCF_GROUP_REGEX = r"_g(\d+)_"


@dataclass(slots=True)
class Listing:
    """The files per split in plan order, the classes, and the skips found while listing."""

    layout: str
    classes: list[str]
    splits: dict[str, list[MediaFile]]
    skips: list[Skip] = field(default_factory=list)


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
    problems: dict[str, list[FolderProblem]] = {}
    if layout == "splits":
        if spec.val_fraction or spec.test_fraction:
            raise ConversionError(
                f"{src} has its own split folders: drop --val-fraction and --test-fraction"
            )
        for split, folder in split_folders(src, forced=spec.layout == "splits"):
            found[split], problems[split] = scan_root(folder, f"{folder.name}/", spec)
    else:
        found["train"], problems["train"] = scan_root(src, "", spec)
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


def assign_splits(files: list[MediaFile], spec: FolderSpec) -> dict[str, list[MediaFile]]:
    """Files (in plan order) per split: train, plus val/test when their fractions are set."""
    val, test = spec.val_fraction, spec.test_fraction
    if not val and not test:
        return {"train": files}
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConversionError(
            f"--val-fraction {val} and --test-fraction {test} must be >= 0 and add up to "
            "less than 1"
        )
    pattern = _group_pattern(files, spec.group_regex)
    grouped = [replace(file, group=group_of(pattern, file)) for file in files]
    members: dict[str, set[str]] = {}
    for file in grouped:
        members.setdefault(_group_key(file), set()).add(file.label)
    per_class = all(len(labels) == 1 for labels in members.values())
    strata: dict[str, list[str]] = {}
    for key, labels in members.items():
        strata.setdefault(next(iter(labels)) if per_class else "", []).append(key)
    split_of: dict[str, str] = {}
    for keys in strata.values():
        ordered = sorted(keys, key=lambda key: (_draw(spec.split_seed, key), key))
        n_val, n_test = _share(val, len(ordered)), _share(test, len(ordered))
        if n_val + n_test >= len(ordered):
            if not per_class:
                raise ConversionError(
                    f"--val-fraction {val} and --test-fraction {test} of {len(ordered)} "
                    "groups leave no train group (the groups span classes, so they are cut "
                    "across all classes): lower the fractions or check --group-regex"
                )
            while n_val + n_test > len(ordered) - 1:  # keep one train group per class
                if n_test >= n_val and n_test > 0:
                    n_test -= 1
                else:
                    n_val -= 1
        for position, key in enumerate(ordered):
            split_of[key] = (
                "val" if position < n_val else "test" if position < n_val + n_test else "train"
            )
    splits: dict[str, list[MediaFile]] = {"train": []}
    if val:
        splits["val"] = []
    if test:
        splits["test"] = []
    for file in grouped:
        splits[split_of[_group_key(file)]].append(file)
    return splits


def _group_pattern(files: list[MediaFile], regex: str | None) -> re.Pattern[str] | None:
    names = [PurePosixPath(file.key).name for file in files]
    if regex is None:
        pattern = re.compile(UCF_GROUP_REGEX, re.IGNORECASE)
        return pattern if any(pattern.search(name) for name in names) else None
    pattern = re.compile(regex)
    if not any(pattern.search(name) for name in names):
        examples = ", ".join(names[:3])
        raise ConversionError(
            f"--group-regex {regex!r} matches no file name (e.g. {examples}): fix it, or drop "
            "it to make each file its own group"
        )
    return pattern


def group_of(pattern: re.Pattern[str] | None, file: MediaFile) -> str | None:
    """The group `pattern` finds in the file's name (digits as a number), or None."""
    if pattern is None:
        return None
    match = pattern.search(PurePosixPath(file.key).name)
    if match is None:
        return None
    value = match.group(1) if pattern.groups else match.group(0)
    if value is None:
        return None
    return str(int(value)) if value.isdigit() else value


def _group_key(file: MediaFile) -> str:
    return f"group:{file.group}" if file.group is not None else f"file:{file.key}"


def _draw(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def _share(fraction: float, count: int) -> int:
    """round(fraction x count), halves up."""
    return int(fraction * count + 0.5)


def _nothing_found(
    src: Path, spec: FolderSpec, layout: str, problems: dict[str, list[FolderProblem]]
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
