"""Image import: identification by content, checks, naming, dedup and links."""

from __future__ import annotations

from pathlib import Path

from converters.converter import OutputContext
from converters.images import (
    CheckedImage,
    ImageFailure,
    ImportedImage,
    check_image_bytes,
    import_hf_image,
    import_image_bytes,
    import_image_file,
)
from converters.samples.still_images import image_bytes


def test_check_identifies_by_content() -> None:
    assert check_image_bytes(image_bytes(64, 48, "PNG"), "a.jpg") == CheckedImage("PNG", 64, 48)
    assert check_image_bytes(image_bytes(64, 48, "JPEG"), "a.png") == CheckedImage("JPEG", 64, 48)
    assert check_image_bytes(image_bytes(8, 8, "WEBP"), "x").format == "WEBP"


def test_check_refuses_damaged_and_foreign_data() -> None:
    png = image_bytes(64, 48, "PNG")
    assert check_image_bytes(b"", "e.png").reason == "image_empty"
    assert check_image_bytes(b"%PDF-1.4 hello", "d.png").reason == "image_not_image"
    assert check_image_bytes(png[: len(png) // 2], "t.png").reason == "image_corrupt"
    jpeg = image_bytes(64, 48, "JPEG")
    truncated = check_image_bytes(jpeg[: len(jpeg) // 3], "t.jpg")
    assert isinstance(truncated, ImageFailure) and truncated.reason == "image_corrupt"


def test_file_import_uses_the_real_extension_and_links(tmp_path: Path) -> None:
    output = OutputContext(tmp_path / "out")
    source = tmp_path / "in" / "x.png"
    source.parent.mkdir()
    source.write_bytes(image_bytes(32, 16, "JPEG"))
    imported = import_image_file(output, source, "src/dir/x")
    assert imported == ImportedImage("src/dir/x.jpg", "JPEG", 32, 16)
    assert (tmp_path / "out/images/src/dir/x.jpg").read_bytes() == source.read_bytes()
    linked = import_image_file(output, source, "src/linked/x", link=True)
    assert isinstance(linked, ImportedImage)
    assert (tmp_path / "out/images" / linked.rel).stat().st_ino == source.stat().st_ino
    missing = import_image_file(output, tmp_path / "in/none.png", "src/none")
    assert missing.reason == "image_missing" and "none.png" in missing.detail


def test_embedded_bytes_are_stored_once_by_content(tmp_path: Path) -> None:
    output = OutputContext(tmp_path / "out")
    data = image_bytes(16, 16, "PNG", seed=5)
    first = import_image_bytes(output, data, "memes", "row 1")
    second = import_hf_image(output, {"bytes": data, "path": "ignored.png"}, "memes", "row 2", [])
    assert isinstance(first, ImportedImage) and first.rel == second.rel
    assert first.rel.startswith("memes/") and first.rel.endswith(".png")
    assert len(list((tmp_path / "out/images/memes").rglob("*.png"))) == 1


def test_hf_path_cells_resolve_inside_their_folders(tmp_path: Path) -> None:
    output = OutputContext(tmp_path / "out")
    (tmp_path / "copy/img").mkdir(parents=True)
    (tmp_path / "copy/img/a.png").write_bytes(image_bytes(8, 8))
    found = import_hf_image(
        output, {"bytes": None, "path": "img/a.png"}, "s", "r", [tmp_path / "copy"]
    )
    assert isinstance(found, ImportedImage)
    escaping = import_hf_image(
        output, {"bytes": None, "path": "../copy/img/a.png"}, "s", "r", [tmp_path / "copy"]
    )
    assert escaping.reason == "image_missing"
    assert import_hf_image(output, None, "s", "row 9", []).reason == "image_missing"
