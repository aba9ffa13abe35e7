"""Cutting a class-folder dataset without split folders into train/val/test by group.

`--val-fraction`/`--test-fraction` move whole groups of files: a group is what
`--group-regex` finds in a file name (its first capture group, else the whole match;
digits compared as numbers), by default UCF-101's `_g(\\d+)_` when any name has it; a file
whose name does not match is a group of its own. Groups are ordered by sha256(seed, group)
and the first round(F x groups) go to val, the next to test: deterministic, and the same for
any worker count. Per class when no group spans two classes, else across all classes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from converters.converter import ConversionError

if TYPE_CHECKING:
    from converters.class_folders import FolderSpec, MediaFile

UCF_GROUP_REGEX = r"_g(\d+)_"


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
