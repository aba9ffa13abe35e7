"""One image policy: validate, convert and training judge the same files the same way."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from converters.images import ImageFailure, check_image_bytes, import_image_file
from phi3v_data.images import check_image, inspect_image


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_huge_png_is_too_large_everywhere(tmp_path: Path) -> None:
    data = _png_header_only(20_000, 10_000)
    (tmp_path / "huge.png").write_bytes(data)
    assert check_image(str(tmp_path), "huge.png").code == "image_too_large"
    assert inspect_image(data, "huge.png").code == "image_too_large"
    failure = check_image_bytes(data, "huge.png")
    assert isinstance(failure, ImageFailure) and failure.reason == "image_too_large"

    from phi3v_data.records import Record, Turn
    from phi3v_train.data import Sample, UnreadableImage, load_images

    record = Record("r", "s", (Turn("What?", "x", ("huge.png",)),))
    with pytest.raises(UnreadableImage, match="image_too_large"):
        load_images(Sample(record, tmp_path, "d.jsonl:1"))


def test_a_directory_named_like_an_image_is_not_a_file_everywhere(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").mkdir()
    assert check_image(str(tmp_path), "x.jpg").code == "image_not_file"
    failure = import_image_file(None, tmp_path / "x.jpg", "x")  # fails before any output
    assert isinstance(failure, ImageFailure) and failure.reason == "image_not_file"


def test_formats_outside_the_policy_are_refused_everywhere(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.ico")  # Pillow reads ICO; the policy does not
    data = (tmp_path / "a.ico").read_bytes()
    assert inspect_image(data, "a.ico").code == "image_not_image"
    assert check_image(str(tmp_path), "a.ico").code == "image_not_image"
