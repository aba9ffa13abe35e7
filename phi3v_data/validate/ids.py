"""Duplicate ids across all the files validated together, in bounded memory.

The index keeps 16 bytes per record: the id's hash and its place (file index, line). At
the end a bitmap finds the hashes that repeat (no sort, no id kept), and only the lines
holding them are read again, to name each duplicate and where its id was first used.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from pathlib import Path

from phi3v_data.jsonl import iter_jsonl
from phi3v_data.validate.report import InputFile

_MAX_BITMAP_BYTES = 16 * 1024 * 1024  # the bitmap: 8 bytes per id up to this


class IdIndex:
    """The ids seen so far, as hashes and places."""

    def __init__(self) -> None:
        self.hashes = array("q")
        self.places = array("q")  # file index << 32 | line

    def add(self, record_id: str, file_index: int, line: int) -> None:
        self.hashes.append(hash(record_id))
        self.places.append(file_index << 32 | line)

    def report(
        self,
        inputs: list[InputFile],
        max_line_bytes: int,
        add: Callable[..., None],
        per_folder: bool = False,
    ) -> None:
        """`add` a `duplicate_id` problem for every record whose id an earlier one has
        (`per_folder`: an earlier one in a file of the same folder, i.e. the same data set)."""
        suspects = repeated_places(self.hashes, self.places)
        if not suspects:
            return
        lines_by_file: dict[int, set[int]] = {}
        for place in suspects:
            lines_by_file.setdefault(place >> 32, set()).add(place & 0xFFFFFFFF)
        first_seen: dict[tuple[Path | None, str], str] = {}
        for file_index in sorted(lines_by_file):
            wanted = lines_by_file[file_index]
            path = inputs[file_index].path
            for line in iter_jsonl(path, max_line_bytes):
                value = line.value
                if line.lineno not in wanted or not isinstance(value, dict):
                    continue
                record_id = value.get("id")
                if not isinstance(record_id, str):
                    continue
                where = f"{path}:{line.lineno}"
                key = (path.parent.resolve() if per_folder else None, record_id)
                if key in first_seen:
                    add(
                        "duplicate_id",
                        str(path),
                        line.lineno,
                        record_id,
                        "id",
                        f"id {record_id!r} is already used at {first_seen[key]}",
                    )
                else:
                    first_seen[key] = where


def repeated_places(hashes: array, places: array) -> list[int]:
    """The places of the hashes that occur more than once, in bounded memory and no sort.

    A bitmap of hash bits (8 bytes per hash, at most `_MAX_BITMAP_BYTES`) finds the bits
    set twice; a second pass gathers the hashes on those bits with their places.
    """
    if len(hashes) < 2:
        return []
    size = min(_MAX_BITMAP_BYTES, 1 << (8 * len(hashes) - 1).bit_length())
    mask = size * 8 - 1
    bitmap = bytearray(size)
    twice: set[int] = set()
    for value in hashes:
        bit = value & mask
        byte, flag = bit >> 3, 1 << (bit & 7)
        if bitmap[byte] & flag:
            twice.add(bit)
        else:
            bitmap[byte] |= flag
    if not twice:
        return []
    by_hash: dict[int, list[int]] = {}
    for value, place in zip(hashes, places, strict=True):
        if value & mask in twice:
            by_hash.setdefault(value, []).append(place)
    return sorted(place for group in by_hash.values() if len(group) > 1 for place in group)
