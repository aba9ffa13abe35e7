"""Benchmark: `phi3v convert ucf101` against the reference approach, on UCF-like clips.

Clips are generated here: 320x240, 25 fps, mpeg4 (XVID tag) in AVI, 7 s and 20 s, keyframe
every 12 frames or only one (GOP 250), with and without B-frames. For each configuration,
in the same run and interleaved (the machine is noisy, see docs/performance.md):

- baseline: the reference recipe's approach; decode every clip sequentially from the start
  with PyAV up to the last sampled index, keep the 8 sampled frames (`frame.to_image()`),
  save them as JPEG (quality 75);
- ours: `run_conversion` of the ucf101 source (plan, exact frame reader, JPEGs, JSONL,
  manifest) with 1 worker, with all workers, and with `--decoder decord` (1 worker).

Frames are checked byte-identical to the baseline's first. Reported: CPU ms per clip (the
figure to compare: a second worker shares a vCPU here), clips/s (wall), the CPU ratio
baseline/ours, and peak RSS. Each figure is the best of `--rounds` rounds.

The `video-folder` rows run `phi3v convert video-folder` the same way on 7 s clips in a
class-folder tree (`SRC/<Class>/<clip>`): MPEG-4 AVI (the first UCF configuration, to
show the generic source's overhead), mp4/H.264 with B-frames and webm/VP9 (whose header
has no frame count, so the baseline counts packets first).

Run: `.venv/bin/python benchmarks/bench_convert_ucf101.py [--clips 20] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from converters.framework import RunSettings, default_workers, run_conversion
from converters.samples.ucf101 import write_clip
from converters.samples.video_folder import FORMATS as VIDEO_FORMATS
from converters.samples.video_folder import available_formats, write_video
from converters.sources.ucf101 import UCF101Converter, UCF101Options
from converters.sources.video_folder import VideoFolderConverter, VideoFolderOptions
from converters.video import sample_frame_indices


@dataclass(frozen=True)
class Config:
    name: str
    seconds: int
    gop: int
    b_frames: int


CONFIGS = (
    Config("7s GOP-12", 7, 12, 0),
    Config("7s GOP-12 2B", 7, 12, 2),
    Config("7s one keyframe", 7, 250, 0),
    Config("20s GOP-12", 20, 12, 0),
    Config("20s one keyframe", 20, 250, 0),
)
FPS, WIDTH, HEIGHT, BIT_RATE = 25, 320, 240, 600_000


def build_clips(root: Path, config: Config, count: int) -> list[Path]:
    """A subset-layout tree `root/train/<Class>/*.avi` of `count` clips."""
    paths = []
    for i in range(count):
        label = f"Class{i % 4}"
        path = root / "train" / label / f"v_{label}_g{8 + i:02d}_c01.avi"
        write_clip(
            path,
            config.seconds * FPS,
            width=WIDTH,
            height=HEIGHT,
            fps=FPS,
            gop=config.gop,
            b_frames=config.b_frames,
            bit_rate=BIT_RATE,
            seed=i,
        )
        paths.append(path)
    return sorted(paths)


def baseline(paths: list[Path], out: Path) -> dict[str, bytes]:
    """The reference approach: sequential decode to the last sampled frame, keep, save."""
    import av

    written = {}
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            indices = sample_frame_indices(stream.frames, 8)
            wanted, kept = set(indices), {}
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    kept[index] = frame.to_image()
                if index >= indices[-1]:
                    break
        for position, index in enumerate(indices):
            buffer = io.BytesIO()
            kept[index].save(buffer, format="JPEG", quality=75)
            rel = f"{path.parent.name}/{path.stem}.{position}.jpg"
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(buffer.getvalue())
            written[rel] = buffer.getvalue()
    return written


def ours(src: Path, out: Path, workers: int, decoder: str = "pyav") -> dict[str, bytes]:
    converter = UCF101Converter(UCF101Options(decoder=decoder))
    run_conversion(converter, src, RunSettings(out, workers=workers, validate=False))
    images = out / "images" / "train"
    return {str(p.relative_to(images)): p.read_bytes() for p in sorted(images.rglob("*.jpg"))}


# video-folder rows: (row name, sample format name), 7 s clips with a keyframe every 12.
VIDEO_FOLDER_ROWS = (
    ("video-folder 7s avi MPEG-4", "avi-mpeg4"),
    ("video-folder 7s mp4 H.264 2B", "mp4-h264"),
    ("video-folder 7s webm VP9", "webm-vp9"),
)


def build_folder_clips(root: Path, format_name: str, count: int) -> list[Path]:
    """A class-folder tree `root/<Class>/*.<ext>` of `count` 7 s clips in one format."""
    fmt = next(f for f in VIDEO_FORMATS if f.name == format_name)
    paths = []
    for i in range(count):
        label = f"Class{i % 4}"
        path = root / label / f"v_{label}_g{8 + i:02d}_c01{fmt.extension}"
        size = (WIDTH, HEIGHT)
        write_video(path, 7 * FPS, fmt, fps=FPS, gop=12, seed=i, size=size, bit_rate=BIT_RATE)
        paths.append(path)
    return sorted(paths)


def baseline_counted(paths: list[Path], out: Path) -> dict[str, bytes]:
    """`baseline` for containers without a frame count in the header (webm, mkv): the
    packets are counted first (a demux, no decoding), then the same sequential decode."""
    import av

    written = {}
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            indices = sample_frame_indices(frames, 8)
            wanted, kept = set(indices), {}
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    kept[index] = frame.to_image()
                if index >= indices[-1]:
                    break
        for position, index in enumerate(indices):
            buffer = io.BytesIO()
            kept[index].save(buffer, format="JPEG", quality=75)
            rel = f"{path.parent.name}/{path.stem}.{position}.jpg"
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(buffer.getvalue())
            written[rel] = buffer.getvalue()
    return written


def ours_video_folder(
    src: Path, out: Path, workers: int, decoder: str = "pyav"
) -> dict[str, bytes]:
    converter = VideoFolderConverter(VideoFolderOptions(source="bench", decoder=decoder))
    run_conversion(converter, src, RunSettings(out, workers=workers, validate=False))
    images = out / "images" / "train"
    return {str(p.relative_to(images)): p.read_bytes() for p in sorted(images.rglob("*.jpg"))}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(run, out: Path) -> tuple[float, float, dict[str, bytes]]:
    shutil.rmtree(out, ignore_errors=True)
    cpu, wall = cpu_seconds(), time.perf_counter()
    written = run(out)
    return cpu_seconds() - cpu, time.perf_counter() - wall, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="clips per configuration")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="'all workers'")
    args = parser.parse_args()
    console = Console()
    table = Table(
        title=f"ucf101 frame sampling, {args.clips} clips/config, 320x240, 8 frames, "
        f"best of {args.rounds} rounds (CPU ms per clip; ratio = baseline CPU / ours)"
    )
    for column in (
        "clips",
        "baseline",
        "ours 1w",
        "ratio",
        f"ours {args.workers}w",
        f"{args.workers}w / 1w CPU",
        "decord 1w",
        "clips/s base / 1w / Nw",
    ):
        table.add_column(column, justify="right" if column != "clips" else "left")
    with tempfile.TemporaryDirectory(prefix="bench-ucf101-") as tmp:
        root = Path(tmp)
        for config in CONFIGS:
            src = root / config.name.replace(" ", "_")
            paths = build_clips(src, config, args.clips)
            runs = {
                "baseline": lambda out, paths=paths: baseline(paths, out),
                "ours1": lambda out, src=src: ours(src, out, 1),
                "oursN": lambda out, src=src: ours(src, out, args.workers),
                "decord": lambda out, src=src: ours(src, out, 1, "decord"),
            }
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):
                outputs = {}
                for name, run in runs.items():
                    cpu, wall, outputs[name] = measure(run, root / "out" / name)
                    previous = best.get(name, (float("inf"), float("inf")))
                    best[name] = (min(previous[0], cpu), min(previous[1], wall))
                reference = outputs["baseline"]
                assert len(reference) == 8 * args.clips
                for name in ("ours1", "oursN"):
                    assert outputs[name] == reference, f"{name} frames differ from the baseline"
                assert outputs["decord"].keys() == reference.keys()
            per_clip = {name: cpu / args.clips * 1000 for name, (cpu, _) in best.items()}
            rate = {name: args.clips / wall for name, (_, wall) in best.items()}
            table.add_row(
                config.name,
                f"{per_clip['baseline']:.1f}",
                f"{per_clip['ours1']:.1f}",
                f"{per_clip['baseline'] / per_clip['ours1']:.2f}x",
                f"{per_clip['oursN']:.1f}",
                f"{per_clip['oursN'] / per_clip['ours1']:.2f}x",
                f"{per_clip['decord']:.1f}",
                f"{rate['baseline']:.0f} / {rate['ours1']:.0f} / {rate['oursN']:.0f}",
            )
            console.print(f"done: {config.name} (frames identical to the baseline)")
        usable = {fmt.name for fmt in available_formats()}
        for row_name, format_name in VIDEO_FOLDER_ROWS:
            if format_name not in usable:
                console.print(f"skipped: {row_name} (no encoder for {format_name} here)")
                continue
            src = root / row_name.replace(" ", "_")
            paths = build_folder_clips(src, format_name, args.clips)
            runs = {
                "baseline": lambda out, paths=paths: baseline_counted(paths, out),
                "ours1": lambda out, src=src: ours_video_folder(src, out, 1),
                "oursN": lambda out, src=src: ours_video_folder(src, out, args.workers),
                "decord": lambda out, src=src: ours_video_folder(src, out, 1, "decord"),
            }
            best = {}
            for _ in range(args.rounds):
                outputs = {}
                for name, run in runs.items():
                    cpu, wall, outputs[name] = measure(run, root / "out" / name)
                    previous = best.get(name, (float("inf"), float("inf")))
                    best[name] = (min(previous[0], cpu), min(previous[1], wall))
                reference = outputs["baseline"]
                assert len(reference) == 8 * args.clips
                for name in ("ours1", "oursN"):
                    assert outputs[name] == reference, f"{name} frames differ from the baseline"
                assert outputs["decord"].keys() == reference.keys()
            per_clip = {name: cpu / args.clips * 1000 for name, (cpu, _) in best.items()}
            rate = {name: args.clips / wall for name, (_, wall) in best.items()}
            table.add_row(
                row_name,
                f"{per_clip['baseline']:.1f}",
                f"{per_clip['ours1']:.1f}",
                f"{per_clip['baseline'] / per_clip['ours1']:.2f}x",
                f"{per_clip['oursN']:.1f}",
                f"{per_clip['oursN'] / per_clip['ours1']:.2f}x",
                f"{per_clip['decord']:.1f}",
                f"{rate['baseline']:.0f} / {rate['ours1']:.0f} / {rate['oursN']:.0f}",
            )
            console.print(f"done: {row_name} (frames identical to the baseline)")
    console.print(table)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    console.print(
        f"peak RSS: this process {own:.0f} MB (clips generated in-process too), "
        f"largest worker {child:.0f} MB"
    )


if __name__ == "__main__":
    main()
