"""Importing still images into `OUT/images/`, checked by content.

Every image is read once into memory, identified by its bytes (never by its extension)
and checked the way `phi3v validate` checks (see docs/performance.md):
`verify()` for PNG, a 1/8-scale draft decode for JPEG, a full decode for the other formats
(GIF, WEBP, BMP, TIFF), a full decode of everything with `deep`. Anything else is refused.

Naming: the written file always carries the extension of its real format, so a JPEG
inside `x.png` (NLVR2 has such files) is written as `x.jpg` and the record's `meta` keeps
the original path. Two source files that differ only in extension and hold the same
format (`a.png` and `a.jpg`, both JPEG) would collide: none of our sources has such names.

- Files from an original release are mirrored: `images/<source>/<relative path>` (copied,
  or hard-linked with `--link`); a file already written by an earlier item or run is
  not written again (final names are only ever created atomically).
- Embedded bytes (Hugging Face copies) get content-addressed names,
  `images/<source>/<sha256[:2]>/<sha256>.<ext>`, so identical images are stored once.

A failure is returned (`ImageFailure`), never raised, so the converter turns it into a skip.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from converters.converter import OutputContext
from phi3v_data.flags import flag
from phi3v_data.images import DEFAULT_MAX_PIXELS, inspect_image

MAX_PIXELS = DEFAULT_MAX_PIXELS

EXTENSION_OF_FORMAT = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


def link_flag() -> Any:
    """The `--link` field of a source's options."""
    return flag(
        False,
        "--link",
        help="Hard-link image files into OUT/images instead of copying them (same "
        "filesystem only; falls back to a copy). Embedded images are always written.",
    )


def deep_check_flag() -> Any:
    """The `--deep-check` field of a source's options."""
    return flag(
        False,
        "--deep-check",
        help="Decode every image fully (slower; the default check already catches "
        "truncated and corrupt PNG and JPEG files).",
    )


class CheckedImage(NamedTuple):
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSION_OF_FORMAT[self.format]


class ImageFailure(NamedTuple):
    """Why an image cannot be used: a stable reason code and a message naming it."""

    reason: str
    detail: str


class ImportedImage(NamedTuple):
    rel: str  # relative to OUT/images
    format: str
    width: int
    height: int


def check_image_bytes(data: bytes, name: str, deep: bool = False) -> CheckedImage | ImageFailure:
    """Identify and check an image held in memory (`phi3v_data.images.inspect_image`, the
    policy `phi3v validate` applies); `name` is used in messages only."""
    check = inspect_image(data, name, deep, MAX_PIXELS)
    if check.code is not None:
        return ImageFailure(check.code, check.message)
    return CheckedImage(check.format, check.width, check.height)


def import_image_file(
    output: OutputContext, path: Path, rel_stem: str, link: bool = False, deep: bool = False
) -> ImportedImage | ImageFailure:
    """Check the file at `path` and put it at `images/<rel_stem><real extension>`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageFailure("image_missing", f"{path} does not exist")
    except IsADirectoryError:
        return ImageFailure("image_not_file", f"{path} is a directory, not an image file")
    except OSError as exc:
        return ImageFailure("image_unreadable", f"{path} cannot be read: {exc.strerror}")
    checked = check_image_bytes(data, str(path), deep)
    if isinstance(checked, ImageFailure):
        return checked
    return _store(output, checked, rel_stem + checked.extension, data, path if link else None)


def import_image_bytes(
    output: OutputContext, data: bytes, source: str, name: str, deep: bool = False
) -> ImportedImage | ImageFailure:
    """Check embedded bytes and write them under a content-addressed name."""
    checked = check_image_bytes(data, name, deep)
    if isinstance(checked, ImageFailure):
        return checked
    return _store(output, checked, _content_rel(source, data, checked), data, None)


def import_hf_image(
    output: OutputContext,
    cell: Mapping[str, Any] | None,
    source: str,
    name: str,
    search_dirs: Sequence[Path],
    link: bool = False,
    deep: bool = False,
) -> ImportedImage | ImageFailure:
    """Import a Hugging Face `Image` cell: its bytes, else the file its `path` names.

    A relative `path` is looked up under each of `search_dirs` (never outside them); an
    absolute one is used as is. Either way the image gets a content-addressed name.
    """
    if not cell or (not cell.get("bytes") and not cell.get("path")):
        return ImageFailure("image_missing", f"{name} has no image (null cell)")
    if cell.get("bytes"):
        return import_image_bytes(output, cell["bytes"], source, name, deep)
    path = _find_cell_file(str(cell["path"]), search_dirs)
    if path is None:
        return ImageFailure("image_missing", f"{name}: image file {cell['path']!r} was not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageFailure("image_unreadable", f"{path} cannot be read: {exc.strerror}")
    checked = check_image_bytes(data, str(path), deep)
    if isinstance(checked, ImageFailure):
        return checked
    rel = _content_rel(source, data, checked)
    return _store(output, checked, rel, data, path if link else None)


def _content_rel(source: str, data: bytes, checked: CheckedImage) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{source}/{digest[:2]}/{digest}{checked.extension}"


def _store(
    output: OutputContext, checked: CheckedImage, rel: str, data: bytes, link_from: Path | None
) -> ImportedImage:
    """Write `data` at `rel` (or hard-link `link_from`) unless an earlier item already did."""
    target = output.image_path(rel)
    if not (target.is_file() and target.stat().st_size == len(data)):
        if link_from is not None:
            output.link_or_copy(link_from, rel, link=True)
        else:
            output.write_image(rel, data)
    return ImportedImage(rel, checked.format, checked.width, checked.height)


def _find_cell_file(text: str, search_dirs: Sequence[Path]) -> Path | None:
    if os.path.isabs(text):
        return Path(text) if os.path.isfile(text) else None
    rel = PurePosixPath(text.replace("\\", "/"))
    if ".." in rel.parts:
        return None
    for folder in search_dirs:
        candidate = folder / rel
        if candidate.is_file():
            return candidate
    return None


def mirrored_stem(source: str, rel_path: str) -> str:
    """`<source>/<rel_path without extension>`: where an original release file is put."""
    path = PurePosixPath(rel_path.replace("\\", "/"))
    return str(PurePosixPath(source, path.parent, path.stem))
