"""Tiny class-folder video trees in many containers and codecs, with deliberate quirks.

Every clip's frame i shows the index i (`frame_pattern` of `converters.samples.ucf101`;
`frame_index_of` reads it back), so tests can check exactly which frames were kept.
Clips cycle through `FORMATS` (mp4/H.264 with B-frames, webm/VP9, mkv/H.264 with a
variable frame rate, mov/H.264, avi/MPEG-4, m4v/MPEG-4, mp4/HEVC, webm/VP8, mkv/AV1);
a format whose encoder this PyAV build lacks is left out (`available_formats`).

Layouts: `classes` (`ROOT/<Class>/<file>`) or `splits` (`ROOT/{train,val,test}/<Class>/`:
train groups >= 3, val group 2, test group 1). File names are UCF-style,
`v_<Class>_gGG_c01.<ext>`, so the default group regex finds their groups. The first
class also holds `clip.mp4` and `clip.webm` (same stem, no group).

With `bad_files=True` (in the first class of train): `corrupt.mp4` (random bytes),
`empty.webm` (0 bytes), `cut.avi` (the last 40 % cut off), `notes.txt` and `cover.jpg`
(not videos), `.hidden.mp4` (a good clip, but hidden) and `.DS_Store` (ignored), a
folder `extra/` holding a clip (not read), and `stray.mp4` beside the class folders.

Run `python -m converters.samples.video_folder ROOT [--layout splits] [--no-bad-files]`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from converters.samples.ucf101 import CLASS_TINTS, frame_pattern

DEFAULT_CLASSES = ("Archery", "Basketball", "Drumming")
DEFAULT_GROUPS = (1, 2, 3, 4)
VFR_STEPS_MS = (40, 40, 100)  # frame durations of variable-rate clips, repeated


@dataclass(frozen=True, slots=True)
class VideoFormat:
    name: str
    extension: str
    container: str
    encoder: str
    options: dict[str, str] = field(default_factory=dict)
    b_frames: int = 0
    variable_rate: bool = False
    size: tuple[int, int] = (64, 48)


FORMATS = (
    VideoFormat("mp4-h264", ".mp4", "mp4", "libx264", {"preset": "veryfast"}, b_frames=2),
    VideoFormat("webm-vp9", ".webm", "webm", "libvpx-vp9", {"deadline": "realtime"}),
    VideoFormat("mkv-h264-vfr", ".mkv", "matroska", "libx264", {"preset": "veryfast"}, 2, True),
    VideoFormat("mov-h264", ".mov", "mov", "libx264", {"preset": "veryfast"}, b_frames=1),
    VideoFormat("avi-mpeg4", ".avi", "avi", "mpeg4"),
    VideoFormat("m4v-mpeg4", ".m4v", "mp4", "mpeg4", b_frames=2),
    VideoFormat(
        "mp4-hevc",
        ".mp4",
        "mp4",
        "libx265",
        {"preset": "ultrafast", "x265-params": "log-level=none"},
    ),
    VideoFormat("webm-vp8", ".webm", "webm", "libvpx", {"deadline": "realtime"}),
    VideoFormat("mkv-av1", ".mkv", "matroska", "libsvtav1", {"preset": "12"}, size=(64, 64)),
)


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """What a file in the tree is. `kind`: ok, corrupt, truncated, not_video, hidden,
    nested or stray. `frame_ms` holds each frame's time for variable-rate clips."""

    frames: int
    format: str = ""
    kind: str = "ok"
    group: int | None = None
    frame_ms: tuple[int, ...] | None = None


def available_formats(formats: Sequence[VideoFormat] = FORMATS) -> list[VideoFormat]:
    """The formats whose encoder this PyAV build has."""
    import av

    return [fmt for fmt in formats if fmt.encoder in av.codecs_available]


def variable_rate_times(frames: int) -> tuple[int, ...]:
    """Milliseconds at which each frame of a variable-rate sample clip is shown."""
    times, now = [], 0
    for index in range(frames):
        times.append(now)
        now += VFR_STEPS_MS[index % len(VFR_STEPS_MS)]
    return tuple(times)


def write_video(
    path: Path,
    num_frames: int,
    fmt: VideoFormat,
    *,
    fps: int = 25,
    gop: int = 12,
    seed: int = 0,
    tint: tuple[int, int, int] = (255, 255, 255),
    size: tuple[int, int] | None = None,
    bit_rate: int | None = None,
) -> ClipInfo:
    """Encode a clip in `fmt` whose frame i shows the index i."""
    import av
    import numpy as np

    if fmt.encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only: its banner is long
    width, height = size or fmt.size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 8)), dtype=np.uint8)
    texture = np.kron(coarse, np.ones((8, 8), np.uint8))
    texture = np.resize(texture, (height - height // 2, width * 2)).astype(np.uint8)
    times = variable_rate_times(num_frames) if fmt.variable_rate else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt.container) as container:
        stream = container.add_stream(fmt.encoder, rate=fps, options=dict(fmt.options))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        context = stream.codec_context
        context.gop_size = gop
        context.max_b_frames = fmt.b_frames
        context.thread_count = 1
        context.bit_rate = bit_rate or width * height * 8
        if times is not None:
            context.time_base = stream.time_base = Fraction(1, 1000)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(
                frame_pattern(index, width, height, texture, tint), format="rgb24"
            )
            if times is not None:
                frame.pts, frame.time_base = times[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return ClipInfo(num_frames, fmt.name, frame_ms=times)


def build_video_folder_tree(
    root: Path,
    *,
    layout: str = "classes",
    classes: Sequence[str] = DEFAULT_CLASSES,
    groups: Sequence[int] = DEFAULT_GROUPS,
    formats: Sequence[VideoFormat] | None = None,
    bad_files: bool = True,
) -> dict[str, ClipInfo]:
    """Build the tree under `root`; return `{path under root (POSIX): ClipInfo}`."""
    if layout not in ("classes", "splits"):
        raise ValueError(f"unknown layout {layout!r}: classes or splits")
    usable = available_formats(formats or FORMATS)
    if not usable:
        raise RuntimeError("no video encoder of FORMATS is available in this PyAV build")
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, ClipInfo] = {}
    count = 0

    def folder(class_name: str, group: int) -> str:
        if layout == "classes":
            return class_name
        split = "test" if group <= 1 else "val" if group == 2 else "train"
        return f"{split}/{class_name}"

    for position, class_name in enumerate(classes):
        tint = CLASS_TINTS[position % len(CLASS_TINTS)]
        for group in groups:
            fmt = usable[count % len(usable)]
            frames = 20 + (count * 7) % 23
            key = f"{folder(class_name, group)}/v_{class_name}_g{group:02d}_c01{fmt.extension}"
            info = write_video(root / key, frames, fmt, seed=count, tint=tint)
            files[key] = ClipInfo(info.frames, fmt.name, group=group, frame_ms=info.frame_ms)
            count += 1
    first = folder(classes[0], max(groups))
    for extension in (".mp4", ".webm"):
        fmt = next((f for f in usable if f.extension == extension), usable[0])
        key = f"{first}/clip{extension}"
        info = write_video(root / key, 17, fmt, seed=count, tint=CLASS_TINTS[0])
        files[key] = ClipInfo(info.frames, fmt.name, frame_ms=info.frame_ms)
        count += 1
    if bad_files:
        files.update(_write_bad_files(root, first, usable, layout))
    return files


def _write_bad_files(
    root: Path, first: str, usable: Sequence[VideoFormat], layout: str
) -> dict[str, ClipInfo]:
    files: dict[str, ClipInfo] = {}
    target = root / first
    (target / "corrupt.mp4").write_bytes(bytes((i * 7919 + 13) % 251 for i in range(4096)))
    files[f"{first}/corrupt.mp4"] = ClipInfo(0, kind="corrupt")
    (target / "empty.webm").write_bytes(b"")
    files[f"{first}/empty.webm"] = ClipInfo(0, kind="corrupt")
    avi = next((f for f in FORMATS if f.name == "avi-mpeg4"), usable[0])
    write_video(target / "cut.avi", 40, avi)
    data = (target / "cut.avi").read_bytes()
    (target / "cut.avi").write_bytes(data[: len(data) * 6 // 10])
    files[f"{first}/cut.avi"] = ClipInfo(40, avi.name, kind="truncated")
    (target / "notes.txt").write_text("not a video\n")
    files[f"{first}/notes.txt"] = ClipInfo(0, kind="not_video")
    (target / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a picture either")
    files[f"{first}/cover.jpg"] = ClipInfo(0, kind="not_video")
    write_video(target / ".hidden.mp4", 12, usable[0])
    files[f"{first}/.hidden.mp4"] = ClipInfo(12, usable[0].name, kind="hidden")
    (target / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    files[f"{first}/.DS_Store"] = ClipInfo(0, kind="hidden")
    write_video(target / "extra" / "inner.mp4", 12, usable[0])
    files[f"{first}/extra/inner.mp4"] = ClipInfo(12, usable[0].name, kind="nested")
    stray = "train/stray.mp4" if layout == "splits" else "stray.mp4"
    write_video(root / stray, 12, usable[0])
    files[stray] = ClipInfo(12, usable[0].name, kind="stray")
    return files


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a tiny class-folder tree of videos.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=("classes", "splits"), default="classes")
    parser.add_argument("--no-bad-files", action="store_true", help="only good clips")
    args = parser.parse_args(argv)
    files = build_video_folder_tree(args.root, layout=args.layout, bad_files=not args.no_bad_files)
    good = sum(1 for info in files.values() if info.kind == "ok")
    formats = sorted({info.format for info in files.values() if info.kind == "ok"})
    print(
        f"built {good} clips ({', '.join(formats)}) and {len(files) - good} quirks "
        f"({args.layout} layout) in {args.root}"
    )


if __name__ == "__main__":
    main()
