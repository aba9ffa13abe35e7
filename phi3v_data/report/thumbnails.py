"""Thumbnails and full-size views of the cards' images, within the page's byte budget.

Only the chosen records' images are decoded, once per distinct file. Paths are resolved
with the validator's rules (`phi3v_data.paths`, `phi3v_data.images`): a path outside the
image root is never opened, and a broken file becomes a placeholder with the reason.
Images are embedded as JPEG data URIs, or written beside the page by an `AssetWriter`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from phi3v_data.jsonl import atomic_write_bytes
from phi3v_data.report.cards import Card

THUMB_SIZE = 160  # px, longest side of a card thumbnail
FULL_SIZE = 1024  # px, longest side of the view opened by a click (self-contained page)
FULL_SIZE_ASSETS = 2048  # the same for --assets-dir, where size is not a concern


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


class AssetWriter:
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


def attach_images(cards: list[Card], budget: int, assets: AssetWriter | None) -> list[str]:
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


def _full_view(key: tuple[str, str], assets: AssetWriter | None, room: int) -> str | None:
    if assets is None and room <= 0:
        return None
    try:
        rgb, _ = _open_rgb(*key, FULL_SIZE_ASSETS if assets else FULL_SIZE, checked=True)
    except Exception:  # the thumbnail decoded; a second failure just keeps the thumbnail
        return None
    data = _jpeg(rgb, 85)
    return assets.write("full", key, data) if assets else _data_uri(data)
