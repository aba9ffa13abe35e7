"""Any folder of videos sorted by class -> `<source>_<split>.jsonl`: sampled frames + "which class?".

Layouts (see `converters/class_folders.py`): `SRC/<class>/<video>`, or
`SRC/<split>/<class>/<video>` with split folders such as train/, val/, test/. Without split
folders, `--val-fraction`/`--test-fraction` move whole groups of files (`--group-regex`,
by default UCF-101's `_gNN_` when names have it, else each file is its own group).

Videos are recognised by extension (`VIDEO_EXTENSIONS`); any container and codec the
installed PyAV (FFmpeg) decodes works: mp4, mkv, webm, mov, avi, m4v...; H.264, HEVC,
VP8/VP9, MPEG-4, AV1 where a decoder exists. Hidden files are ignored; a file with another
extension, or one that does not open or decode, is a named skip.

Frames are read exactly as `ucf101` reads them (`converters/clips.py`, same options and
defaults: 8 frames at `floor(arange(0, n, n/8))`): frame i is the i-th frame a sequential
decode outputs, also on variable-frame-rate clips, whose timestamps come from the frames'
presentation times (and `--sampling fps` picks frames by time there). Records: id
`<split>-<index:010d>`, `source` = `--source` (default: SRC's folder name), the prompt
listing the sorted classes, answer = the class folder's name; JPEGs at
`images/<split>/<class>/<stem>.<i>.jpg`; `meta` holds the file, label, group (when groups
split the files), frame indices, timestamps, fps, frame counts, codec, size and decoder.
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
from converters.clips import (
    ClipSampler,
    FrameSettings,
    allow_truncated_flag,
    count_clip,
    decoder_flag,
    jpeg_quality_flag,
    max_frames_flag,
    max_side_flag,
    num_frames_flag,
    sampling_flag,
)
from converters.converter import Converter, ItemResult, OutputContext, Plan, Skip, WorkItem
from converters.registry import register_source
from converters.video import VideoError
from phi3v_data.records import Record, Turn

COMMAND = "video-folder"
DEFAULT_SOURCE = "video_folder"
PROMPT = "Classify the video into one of the following classes: {classes}."
VIDEO_EXTENSIONS = frozenset(
    {
        ".3g2", ".3gp", ".asf", ".avi", ".divx", ".dv", ".f4v", ".flv", ".m2ts", ".m2v",
        ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".mxf", ".ogv", ".qt",
        ".ts", ".vob", ".webm", ".wmv", ".y4m",
    }
)  # fmt: skip


@dataclass(frozen=True)
class VideoFolderOptions(NamedBySrc):
    """Everything that changes the output (stored in the manifest, checked on resume).

    The fields are the flags of `phi3v convert video-folder`, in their order.
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
    num_frames: int = num_frames_flag()
    sampling: str = sampling_flag()
    max_frames: int = max_frames_flag()
    decoder: str = decoder_flag()
    max_side: int | None = max_side_flag()
    jpeg_quality: int = jpeg_quality_flag()
    allow_truncated: bool = allow_truncated_flag()


@dataclass(frozen=True, slots=True)
class Video:
    """A work item's payload: the file and the question to ask."""

    file: MediaFile
    prompt: str


class VideoFolderConverter(Converter):
    name = DEFAULT_SOURCE
    progress_unit = "clips"
    rate_counter = "frames"

    def __init__(self, options: VideoFolderOptions) -> None:
        super().__init__(options)
        self.name = options.source
        self._sampler = ClipSampler(FrameSettings.of(options), exact_time=True)

    def plan(self, src: Path) -> Plan:
        options: VideoFolderOptions = self.options
        listing = list_class_folders(src, FolderSpec.of(options, "video", VIDEO_EXTENSIONS))
        prompt = options.prompt.format(classes=", ".join(listing.classes))
        splits = {
            split: [
                WorkItem(split, index, file.key, Video(file, prompt))
                for index, file in enumerate(files)
            ]
            for split, files in listing.splits.items()
        }
        return Plan(splits=splits, skips=listing.skips)

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        video: Video = item.payload
        file = video.file
        result = ItemResult()
        meta: dict[str, Any] = {"label": file.label, "file": file.key}
        if file.group is not None:
            meta["group"] = file.group
        try:
            frames, meta = self._sampler.sample(Path(file.path), meta)
        except VideoError as exc:
            result.skips.append(Skip(item.split, item.key, exc.reason, exc.detail))
            return result
        except Exception as exc:  # FFmpeg on odd files: a named skip, never a crash
            detail = f"reading it failed: {type(exc).__name__}: {exc}"
            result.skips.append(Skip(item.split, item.key, "undecodable", detail))
            return result
        rel_stem = f"{item.split}/{file.label}/{file.stem}"
        images = self._sampler.write_frames(output, frames, rel_stem)
        record = Record(
            id=f"{item.split}-{item.index:010d}",
            source=self.name,
            conversations=(Turn(user=video.prompt, assistant=file.label, images=tuple(images)),),
            meta=meta,
        )
        result.records.append(record)
        count_clip(result, meta, len(images))
        return result


register_source(
    COMMAND,
    help=(
        "Videos sorted into class folders -> k sampled JPEG frames per clip + 'which class?' "
        "question.\n\n"
        "SRC is SRC/<class>/<video> or SRC/<split>/<class>/<video> (train/ val/ test/...). "
        "Any container and codec PyAV decodes (mp4, mkv, webm, mov, avi, m4v...), variable "
        "frame rate included; frames are exactly those a sequential decode gives, with the "
        "options and defaults of ucf101. Hidden files are ignored; other files and videos "
        "that do not decode are skipped and listed in manifest.json. Without split folders, "
        "--val-fraction/--test-fraction move whole groups (--group-regex).\n\n"
        "Example: phi3v convert video-folder ~/data/clips -o data/clips --val-fraction 0.1"
    ),
    options=VideoFolderOptions,
    converter=VideoFolderConverter,
)
