"""The converted folder's layout, read in one place: manifest, split -> files, split names.

    OUT/
      manifest.json               written last by `phi3v convert`: source, options, and per
                                  split {"file", "records", "sha256", ...}
      <source>_<split>.jsonl      one file per split (e.g. hateful_memes_dev_seen.jsonl)
      images/                     the image root of every JSONL file in OUT

Folders not written by `phi3v convert` work too: `<split>.jsonl` (train.jsonl, val.jsonl)
or `<anything>_<split>.jsonl`, without a manifest.
"""

from __future__ import annotations

from pathlib import Path

import orjson

MANIFEST_NAME = "manifest.json"

# Split names of the supported datasets and common ones, longest first, so that a file
# name without a manifest (`hateful_memes_dev_seen.jsonl`) is read as `dev_seen`.
KNOWN_SPLITS = (
    "validation", "dev_unseen", "test_unseen", "trainval", "dev_seen", "test_seen",
    "train", "test1", "test2", "test", "val", "dev",
)  # fmt: skip


class DatasetDirError(ValueError):
    """A converted folder without the asked split; the message lists what is there."""


def manifest_splits(folder: Path) -> dict[str, str] | None:
    """split -> file name from `folder/manifest.json`; None without a usable manifest."""
    try:
        data = orjson.loads((folder / MANIFEST_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    splits = data.get("splits") if isinstance(data, dict) else None
    if not isinstance(splits, dict):
        return None
    return {
        str(name): info["file"]
        for name, info in splits.items()
        if isinstance(info, dict) and isinstance(info.get("file"), str)
    }


def split_of_name(file_name: str) -> str:
    """The split a JSONL file name stands for, without a manifest."""
    stem = file_name.removesuffix(".jsonl")
    for split in KNOWN_SPLITS:
        if stem == split or stem.endswith("_" + split):
            return split
    return stem.split("_", 1)[1] if "_" in stem else stem


def split_of_file(path: Path) -> str:
    """The split of a JSONL file: from its folder's manifest, else from its name."""
    by_file = {file: split for split, file in (manifest_splits(path.parent) or {}).items()}
    return by_file.get(path.name) or split_of_name(path.name)


def splits(folder: Path) -> dict[str, list[Path]]:
    """Every split of a folder and its JSONL file(s)."""
    listed = manifest_splits(folder)
    if listed is not None:
        return {split: [folder / file] for split, file in listed.items()}
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        found.setdefault(split_of_name(path.name), []).append(path)
    return found


def split_files(folder: Path, split: str) -> list[Path]:
    """The JSONL file(s) of `split` in `folder`.

    Raises:
        DatasetDirError: no such split; the message names the splits that are there.
    """
    available = splits(folder)
    if split in available:
        return available[split]
    where = "in manifest.json" if manifest_splits(folder) is not None else "among its *.jsonl"
    found = ", ".join(sorted(available)) or "none"
    raise DatasetDirError(
        f"{folder}: no split {split!r} {where} (found: {found}); expected a `phi3v convert` "
        f"folder or JSONL files named {split}.jsonl or <name>_{split}.jsonl"
    )
