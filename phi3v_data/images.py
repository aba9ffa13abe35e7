"""What is this image file (or these bytes) and is it usable: the one image policy.

`phi3v validate` (`check_image`), `phi3v convert` (converters/images.py, on bytes read once),
training's image loader and the report all judge images here: the same accepted formats,
the same pixel guard, the same decode check, the same problem codes.

A check never raises: every outcome is an `ImageCheck` with a problem code (or None)
and the image size from its header, which the token budget needs. The default check is
the cheapest one that still catches damaged files (see `docs/performance.md`):
`verify()` for PNG (chunk CRCs, truncation), a reduced-size draft decode for JPEG
(truncation, bad Huffman data), a full decode for other formats; `deep` decodes every
image fully. Images over `max_pixels` are refused before any decoding (decompression
bombs: a 100 kB PNG can declare 50,000 x 50,000 pixels).
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from phi3v_data.paths import PathProblem, resolve_image_path

# Pillow's own decompression-bomb threshold (about 89 megapixels), as a default.
DEFAULT_MAX_PIXELS = 89_478_485

# What a file's extension promises; compared with what its bytes are.
EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

# Only these are opened: every other Pillow plugin (EPS, PSD, ...) is refused as "not an
# image", since the training data loader has no business reading them.
ACCEPTED_FORMATS = tuple(sorted(set(EXTENSION_FORMATS.values())))


class ImageCheck(NamedTuple):
    """The outcome of checking one image file (a tuple: cheap to send between processes)."""

    code: str | None  # None: the image is usable (perhaps with a warning code below)
    message: str
    width: int = 0
    height: int = 0
    format: str = ""
    warning: str | None = None  # e.g. image_format_mismatch, reported but usable


def check_image(
    root: str, rel: str, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageCheck:
    """Check the image `rel` (a record's path, already lexically valid) under `root`.

    `root` should be the real path of the image root (`os.path.realpath`).
    """
    resolved = resolve_image_path(root, rel, real_root=root)
    if isinstance(resolved, PathProblem):
        return ImageCheck(resolved.code, resolved.message)
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        return ImageCheck("image_missing", f"image {rel!r} does not exist under the image root")
    except OSError as exc:
        return ImageCheck("image_corrupt", f"image {rel!r} cannot be read: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        return ImageCheck("image_not_file", f"image {rel!r} is {kind}")
    if info.st_size == 0:
        return ImageCheck("image_empty", f"image {rel!r} is empty (0 bytes)")
    check = inspect_image(str(resolved), f"image {rel!r}", deep, max_pixels)
    if check.code is None:
        return _with_extension_check(check, rel)
    return check


def inspect_image(
    source: str | bytes, label: str, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageCheck:
    """Identify and check an image file (a path) or image bytes; `label` names it in
    messages. Never raises: a problem is an `ImageCheck` with its code."""
    if isinstance(source, bytes) and not source:
        return ImageCheck("image_empty", f"{label} is empty (0 bytes)")
    try:
        return _decode_check(source, label, deep, max_pixels)
    except Exception as exc:  # a damaged file can make any decoder raise anything
        return ImageCheck("image_corrupt", f"{label} does not decode: {_describe(exc)}")


def _decode_check(source: str | bytes, label: str, deep: bool, max_pixels: int) -> ImageCheck:
    # `max_pixels` decides, before any decoding: Pillow's own guard is off while the
    # (lazy, header-only) open runs, and on again for everything else in the process.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(
            io.BytesIO(source) if isinstance(source, bytes) else source, formats=ACCEPTED_FORMATS
        )
    except UnidentifiedImageError:
        if isinstance(source, bytes):
            head = source[:8]
        else:
            with open(source, "rb") as stream:
                head = stream.read(8)
        return ImageCheck(
            "image_not_image", f"{label} is not a JPEG/PNG/GIF/WEBP/BMP/TIFF image: starts {head!r}"
        )
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with image:
            width, height, fmt = image.width, image.height, image.format or ""
            if width * height > max_pixels:
                return ImageCheck(
                    "image_too_large",
                    f"{label} is {width}x{height} = {width * height:,} pixels,"
                    f" over the {max_pixels:,}-pixel limit (decompression-bomb guard)",
                    width,
                    height,
                    fmt,
                )
            if deep:
                image.load()
            elif fmt == "PNG":
                image.verify()
            elif fmt == "JPEG":
                # A 1/8-scale greyscale decode still reads every entropy-coded byte, so
                # it catches truncation, at a third of the cost of a full decode.
                image.draft("L", (max(1, width // 8), max(1, height // 8)))
                image.load()
            else:
                image.load()
    return ImageCheck(None, "", width, height, fmt)


def _with_extension_check(check: ImageCheck, rel: str) -> ImageCheck:
    """A usable image whose extension promises another format gets a warning."""
    fmt = check.format
    warning = None
    expected = EXTENSION_FORMATS.get(os.path.splitext(rel)[1].lower())
    if expected != fmt:
        warning = "image_format_mismatch"
        promised = (
            f"its extension promises {expected}"
            if expected
            else "its extension is not an image extension"
        )
        message = f"image {rel!r} holds {fmt} data but {promised}"
    else:
        message = ""
    return ImageCheck(None, message, check.width, check.height, fmt, warning)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or "no details"
    return f"{type(exc).__name__}: {text}"


def check_image_batch(
    items: list[tuple[str, str]], deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[ImageCheck]:
    """Check many (real image root, relative path) pairs; the unit of work of the process pool."""
    return [check_image(root, rel, deep, max_pixels) for root, rel in items]
