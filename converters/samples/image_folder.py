"""Tiny class-folder image trees in every supported format, with deliberate quirks.

Images cycle through PNG, JPEG, WEBP, BMP, GIF and TIFF (`converters.samples.still_images`
pictures, different per file), named UCF-style `<class>_gGG_NN.<ext>` so the default
group regex finds their groups (a group holds two images per class).

Layouts: `classes` (`ROOT/<class>/<file>`) or `splits` (`ROOT/{train,val,test}/<class>/`:
train groups >= 3, val group 2, test group 1).

With `bad_files=True` (in the first class of train): `broken.jpg` (a JPEG cut in half),
`fake.png` (text), `empty.png` (0 bytes), `notes.txt` (not an image), `.hidden.png` (a
good image, but hidden) and `Thumbs.db` (ignored), `disguised.png` (a JPEG: kept, stored
as .jpg), and `pic.png` + `pic.jpg` (same stem, both good).

Run `python -m converters.samples.image_folder ROOT [--layout splits] [--no-bad-files]`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from converters.samples.still_images import image_bytes, write

DEFAULT_CLASSES = ("bird", "cat", "dog")
DEFAULT_GROUPS = (1, 2, 3, 4)
# (Pillow format, extension) in the order images cycle through them.
FORMATS = (
    ("PNG", ".png"),
    ("JPEG", ".jpg"),
    ("WEBP", ".webp"),
    ("BMP", ".bmp"),
    ("GIF", ".gif"),
    ("TIFF", ".tiff"),
)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What a file in the tree is. `kind`: ok, corrupt, not_image, empty, not_an_image
    (wrong extension), hidden. `format` is the real format of a good image."""

    format: str = ""
    kind: str = "ok"
    group: int | None = None


def build_image_folder_tree(
    root: Path,
    *,
    layout: str = "classes",
    classes: Sequence[str] = DEFAULT_CLASSES,
    groups: Sequence[int] = DEFAULT_GROUPS,
    per_group: int = 2,
    size: tuple[int, int] = (48, 32),
    bad_files: bool = True,
) -> dict[str, ImageInfo]:
    """Build the tree under `root`; return `{path under root (POSIX): ImageInfo}`."""
    if layout not in ("classes", "splits"):
        raise ValueError(f"unknown layout {layout!r}: classes or splits")
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, ImageInfo] = {}
    count = 0

    def folder(class_name: str, group: int) -> str:
        if layout == "classes":
            return class_name
        split = "test" if group <= 1 else "val" if group == 2 else "train"
        return f"{split}/{class_name}"

    for class_name in classes:
        for group in groups:
            for number in range(1, per_group + 1):
                fmt, extension = FORMATS[count % len(FORMATS)]
                key = (
                    f"{folder(class_name, group)}/{class_name}_g{group:02d}_{number:02d}{extension}"
                )
                write(root / key, image_bytes(*size, fmt=fmt, seed=count))
                files[key] = ImageInfo(fmt, group=group)
                count += 1
    if bad_files:
        files.update(_write_bad_files(root, folder(classes[0], max(groups)), size))
    return files


def _write_bad_files(root: Path, prefix: str, size: tuple[int, int]) -> dict[str, ImageInfo]:
    jpeg = image_bytes(*size, fmt="JPEG", seed=1001)
    written = {
        "broken.jpg": (jpeg[: len(jpeg) // 2], ImageInfo(kind="corrupt")),
        "fake.png": (b"this is not a picture\n" * 4, ImageInfo(kind="not_image")),
        "empty.png": (b"", ImageInfo(kind="empty")),
        "notes.txt": (b"labels were checked by hand\n", ImageInfo(kind="not_an_image")),
        ".hidden.png": (image_bytes(*size, seed=1002), ImageInfo("PNG", kind="hidden")),
        "Thumbs.db": (b"\xd0\xcf\x11\xe0 thumbnails", ImageInfo(kind="hidden")),
        "disguised.png": (image_bytes(*size, fmt="JPEG", seed=1003), ImageInfo("JPEG")),
        "pic.png": (image_bytes(*size, fmt="PNG", seed=1004), ImageInfo("PNG")),
        "pic.jpg": (image_bytes(*size, fmt="JPEG", seed=1005), ImageInfo("JPEG")),
    }
    for name, (data, _) in written.items():
        write(root / prefix / name, data)
    return {f"{prefix}/{name}": info for name, (_, info) in written.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a tiny class-folder tree of images.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=("classes", "splits"), default="classes")
    parser.add_argument("--no-bad-files", action="store_true", help="only good images")
    args = parser.parse_args(argv)
    files = build_image_folder_tree(args.root, layout=args.layout, bad_files=not args.no_bad_files)
    good = sum(1 for info in files.values() if info.kind == "ok")
    print(
        f"built {good} images and {len(files) - good} quirks ({args.layout} layout) in {args.root}"
    )


if __name__ == "__main__":
    main()
