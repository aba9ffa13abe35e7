"""Any folder of images sorted by class -> `<source>_<split>.jsonl`: one image + "which class?".

Layouts (see `converters/class_folders.py`): `SRC/<class>/<image>`, or
`SRC/<split>/<class>/<image>` with split folders such as train/, val/, test/. Without split
folders, `--val-fraction`/`--test-fraction` move whole groups of files (`--group-regex`,
by default UCF-101's `_gNN_` when names have it, else each file is its own group).

Images are recognised by extension (`IMAGE_EXTENSIONS`: jpg, png, webp, bmp, gif, tiff...)
and then identified and checked by content as every image source does
(`converters/images.py`): a JPEG named `.png` is stored as `.jpg`, corrupt, empty or
non-image files are named skips. `--deep-check` decodes every image fully; `--link`
hard-links instead of copying. Hidden files are ignored; files with other extensions
are named skips.

Records: id `<split>-<index:010d>`, `source` = `--source` (default: SRC's folder name),
the prompt listing the sorted classes, answer = the class folder's name; the image at
`images/<split>/<class>/<stem>.<real ext>`; `meta` holds the file, label, group (when
groups split the files), format and size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from converters.class_folder_flags import (
    NamedBySrc,
    classes_flag,
    group_regex_flag,
    layout_flag,
    prompt_flag,
    source_flag,
    split_seed_flag,
    test_fraction_flag,
    val_fraction_flag,
)
from converters.class_folder_scan import FolderSpec, MediaFile
from converters.class_folders import list_class_folders
from converters.converter import Converter, ItemResult, OutputContext, Plan, Skip, WorkItem
from converters.images import ImageFailure, deep_check_flag, import_image_file, link_flag
from converters.registry import register_source
from phi3v_data.records import Record, Turn

COMMAND = "image-folder"
DEFAULT_SOURCE = "image_folder"
PROMPT = "Classify the image into one of the following classes: {classes}."
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".dib", ".gif", ".jfif", ".jpe", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
)


@dataclass(frozen=True)
class ImageFolderOptions(NamedBySrc):
    """Everything that changes the output (stored in the manifest, checked on resume).

    The fields are the flags of `phi3v convert image-folder`, in their order.
    """

    default_source: ClassVar[str] = DEFAULT_SOURCE
    source: str | None = source_flag()  # None: SRC's folder name
    layout: str = layout_flag()
    classes: tuple[str, ...] = classes_flag()
    val_fraction: float = val_fraction_flag()
    test_fraction: float = test_fraction_flag()
    group_regex: str | None = group_regex_flag()
    split_seed: int = split_seed_flag()
    prompt: str = prompt_flag(PROMPT)
    link: bool = link_flag()
    deep_check: bool = deep_check_flag()


@dataclass(frozen=True, slots=True)
class Picture:
    """A work item's payload: the file and the question to ask."""

    file: MediaFile
    prompt: str


class ImageFolderConverter(Converter):
    name = DEFAULT_SOURCE
    progress_unit = "images"

    def __init__(self, options: ImageFolderOptions) -> None:
        super().__init__(options)
        self.name = options.source

    def plan(self, src: Path) -> Plan:
        options: ImageFolderOptions = self.options
        listing = list_class_folders(src, FolderSpec.of(options, "image", IMAGE_EXTENSIONS))
        prompt = options.prompt.format(classes=", ".join(listing.classes))
        splits = {
            split: [
                WorkItem(split, index, file.key, Picture(file, prompt))
                for index, file in enumerate(files)
            ]
            for split, files in listing.splits.items()
        }
        return Plan(splits=splits, skips=listing.skips)

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        options: ImageFolderOptions = self.options
        picture: Picture = item.payload
        file = picture.file
        imported = import_image_file(
            output,
            Path(file.path),
            f"{item.split}/{file.label}/{file.stem}",
            options.link,
            options.deep_check,
        )
        if isinstance(imported, ImageFailure):
            return ItemResult(skips=[Skip(item.split, item.key, imported.reason, imported.detail)])
        meta: dict[str, Any] = {"label": file.label, "file": file.key}
        if file.group is not None:
            meta["group"] = file.group
        meta.update(format=imported.format, width=imported.width, height=imported.height)
        turn = Turn(user=picture.prompt, assistant=file.label, images=(imported.rel,))
        record = Record(f"{item.split}-{item.index:010d}", self.name, (turn,), meta)
        result = ItemResult(records=[record])
        result.counters["images"] += 1
        return result


register_source(
    COMMAND,
    help=(
        "Images sorted into class folders -> one image + 'which class?' question per image."
        "\n\n"
        "SRC is SRC/<class>/<image> or SRC/<split>/<class>/<image> (train/ val/ test/...). "
        "JPEG, PNG, WEBP, BMP, GIF and TIFF, identified and checked by content (a JPEG named "
        ".png is stored as .jpg). Hidden files are ignored; other files and corrupt images "
        "are skipped and listed in manifest.json. Without split folders, "
        "--val-fraction/--test-fraction move whole groups (--group-regex).\n\n"
        "Example: phi3v convert image-folder ~/data/flowers -o data/flowers "
        "--val-fraction 0.1 --test-fraction 0.1"
    ),
    options=ImageFolderOptions,
    converter=ImageFolderConverter,
)
