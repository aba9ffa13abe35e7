"""Tiny UCF-101 trees in the real on-disk layouts, with clips whose frames say their index.

Each frame carries its index as 16 black/white blocks in the top half (bit b is block
b, two rows of eight), big enough to survive mpeg4 compression; the bottom half is a
moving texture so the encoder works like on real footage, tinted in its class's colour so
that a model can learn the class from the frames (`make demo` trains on that). `frame_index_of(image)` reads
the index back, so tests can assert exactly which frames a reader returned.

Layouts (see docs/datasets.md):
- `original`: `UCF-101/<Class>/v_<Class>_gGG_cCC.avi` + `ucfTrainTestlist/` (classInd.txt,
  trainlist0k.txt, testlist0k.txt with CRLF line endings; testlist02.txt carries labels
  as some copies do). Split k tests groups 7k-6..7k.
- `subset`: `<root>/{train,val,test}/<Class>/*.avi` (the reference recipe's subset).

The `HandstandPushups` folder holds `v_HandStandPushups_*` files, as in the release.
With `bad_clips=True` the first class also gets a truncated, a corrupt and a zero-frame
clip, and a clip listed in the split files that is not on disk.

Run `python -m converters.samples.ucf101 ROOT [--layout subset]` to build one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

DEFAULT_CLASSES = ("ApplyEyeMakeup", "Archery", "HandstandPushups")
# Groups chosen so every official split has both train and test groups.
DEFAULT_GROUPS = (1, 5, 8, 12, 16, 20, 23, 25)
BITS = 16
# The texture tint of the class at each position (red, green, blue, yellow, magenta, cyan).
CLASS_TINTS = ((255, 64, 64), (64, 255, 64), (64, 64, 255), (255, 255, 64), (255, 64, 255))
CLASS_TINTS += ((64, 255, 255),)


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """How a sample clip was made; `kind` is ok, truncated, corrupt, zero_frames or missing."""

    frames: int
    gop: int = 12
    b_frames: int = 0
    kind: str = "ok"


def file_class_name(class_name: str) -> str:
    """The class name as the release spells it inside file names (the one known quirk)."""
    return "HandStandPushups" if class_name == "HandstandPushups" else class_name


def frame_pattern(
    index: int,
    width: int,
    height: int,
    texture: np.ndarray,
    tint: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """An RGB frame (height, width, 3) showing `index` as bit blocks above a moving texture
    in the colour `tint`."""
    import numpy as np

    frame = np.zeros((height, width, 3), np.uint8)
    block_w, block_h = width // 8, height // 4
    for bit in range(BITS):
        if (index >> bit) & 1:
            row, col = divmod(bit, 8)
            frame[row * block_h : (row + 1) * block_h, col * block_w : (col + 1) * block_w] = 255
    shift = (index * 3) % width
    moved = np.roll(texture, shift, axis=1)[:, :width, None].astype(np.uint16)
    frame[height // 2 :] = (moved * np.array(tint, np.uint16) // 255).astype(np.uint8)
    return frame


def frame_index_of(image: Image.Image | np.ndarray) -> int:
    """Read back the index drawn by `frame_pattern` (tolerates lossy compression)."""
    import numpy as np

    array = np.asarray(image.convert("L") if hasattr(image, "convert") else image, np.float32)
    if array.ndim == 3:
        array = array.mean(axis=2)
    height, width = array.shape
    block_w, block_h = width // 8, height // 4
    mx, my = max(1, block_w // 4), max(1, block_h // 4)
    index = 0
    for bit in range(BITS):
        row, col = divmod(bit, 8)
        block = array[
            row * block_h + my : (row + 1) * block_h - my,
            col * block_w + mx : (col + 1) * block_w - mx,
        ]
        if block.mean() > 128:
            index |= 1 << bit
    return index


def write_clip(
    path: Path,
    num_frames: int,
    *,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    gop: int = 12,
    b_frames: int = 0,
    bit_rate: int | None = None,
    seed: int = 0,
    tint: tuple[int, int, int] = (255, 255, 255),
) -> None:
    """Encode an mpeg4 (XVID tag) AVI whose frame i shows the index i."""
    import av
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 8)), dtype=np.uint8)
    texture = np.kron(coarse, np.ones((8, 8), np.uint8))
    texture = np.resize(texture, (height - height // 2, width * 2)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        context = stream.codec_context
        context.gop_size = gop
        context.max_b_frames = b_frames
        context.codec_tag = "XVID"
        context.thread_count = 1
        context.bit_rate = bit_rate or width * height * 8
        container.start_encoding()
        for index in range(num_frames):
            image = av.VideoFrame.from_ndarray(
                frame_pattern(index, width, height, texture, tint), format="rgb24"
            )
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _clip_spec(class_position: int, group: int, clip: int) -> ClipSpec:
    variant = (class_position + group + clip) % 4
    frames = 20 + (group * 7 + clip * 5 + class_position * 3) % 25
    if variant == 0:
        return ClipSpec(frames, gop=12)
    if variant == 1:
        return ClipSpec(frames, gop=12, b_frames=2)
    if variant == 2:
        return ClipSpec(frames, gop=250)
    return ClipSpec(frames, gop=8, b_frames=1)


def _write_bad_clips(folder: Path, stem_prefix: str) -> dict[str, ClipSpec]:
    import os

    specs: dict[str, ClipSpec] = {}
    truncated = folder / f"{stem_prefix}_g02_c90.avi"
    write_clip(truncated, 40, gop=12)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) * 6 // 10])
    specs[truncated.name] = ClipSpec(40, kind="truncated")
    corrupt = folder / f"{stem_prefix}_g02_c91.avi"
    corrupt.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(4096)))
    specs[corrupt.name] = ClipSpec(0, kind="corrupt")
    empty = folder / f"{stem_prefix}_g02_c92.avi"
    write_clip(empty, 0)
    specs[empty.name] = ClipSpec(0, kind="zero_frames")
    specs[f"{stem_prefix}_g02_c93.avi"] = ClipSpec(0, kind="missing")
    assert not os.path.exists(folder / f"{stem_prefix}_g02_c93.avi")
    return specs


def build_ucf101_tree(
    root: Path,
    *,
    layout: str = "original",
    classes: Sequence[str] = DEFAULT_CLASSES,
    groups: Sequence[int] = DEFAULT_GROUPS,
    clips_per_group: int = 1,
    bad_clips: bool = True,
) -> dict[str, ClipSpec]:
    """Build a tiny UCF-101 tree under `root`; return `{"<split?>/<Class>/<file>": spec}`.

    Keys are `<Class>/<file>` for the original layout and `<split>/<Class>/<file>` for the
    subset layout (train: groups >= 8, val: groups 5-7, test: groups <= 4).
    """
    root.mkdir(parents=True, exist_ok=True)
    clips: dict[str, ClipSpec] = {}
    for position, class_name in enumerate(classes):
        prefix = f"v_{file_class_name(class_name)}"
        for group in groups:
            for clip in range(1, clips_per_group + 1):
                name = f"{prefix}_g{group:02d}_c{clip:02d}.avi"
                clips[f"{class_name}/{name}"] = _clip_spec(position, group, clip)
    if layout == "original":
        return _build_original(root, classes, clips, bad_clips)
    if layout == "subset":
        return _build_subset(root, classes, clips, bad_clips)
    raise ValueError(f"unknown layout {layout!r}: original or subset")


def _write(path: Path, spec: ClipSpec, seed: int, classes: Sequence[str]) -> None:
    tint = CLASS_TINTS[classes.index(path.parent.name) % len(CLASS_TINTS)]
    write_clip(path, spec.frames, gop=spec.gop, b_frames=spec.b_frames, seed=seed, tint=tint)


def _build_original(
    root: Path, classes: Sequence[str], clips: dict[str, ClipSpec], bad_clips: bool
) -> dict[str, ClipSpec]:
    videos = root / "UCF-101"
    for seed, (key, spec) in enumerate(clips.items()):
        _write(videos / key, spec, seed, classes)
    if bad_clips:
        first = classes[0]
        bad = _write_bad_clips(videos / first, f"v_{file_class_name(first)}")
        clips.update({f"{first}/{name}": spec for name, spec in bad.items()})
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    numbers = {name: i for i, name in enumerate(sorted(classes), start=1)}
    _write_crlf(lists / "classInd.txt", [f"{n} {name}" for name, n in numbers.items()])
    for split_id in (1, 2, 3):
        test_groups = range(7 * split_id - 6, 7 * split_id + 1)
        train, test = [], []
        for key in sorted(clips):
            group = int(key.split("_g")[1][:2])
            label = numbers[key.split("/")[0]]
            if group in test_groups:
                test.append(f"{key} {label}" if split_id == 2 else key)
            else:
                train.append(f"{key} {label}")
        _write_crlf(lists / f"trainlist{split_id:02d}.txt", train)
        _write_crlf(lists / f"testlist{split_id:02d}.txt", test)
    return clips


def _build_subset(
    root: Path, classes: Sequence[str], clips: dict[str, ClipSpec], bad_clips: bool
) -> dict[str, ClipSpec]:
    placed: dict[str, ClipSpec] = {}
    for seed, (key, spec) in enumerate(clips.items()):
        group = int(key.split("_g")[1][:2])
        split = "train" if group >= 8 else "val" if group >= 5 else "test"
        _write(root / split / key, spec, seed, classes)
        placed[f"{split}/{key}"] = spec
    if bad_clips:
        first = classes[0]
        bad = _write_bad_clips(root / "train" / first, f"v_{file_class_name(first)}")
        placed.update(
            {f"train/{first}/{name}": spec for name, spec in bad.items() if spec.kind != "missing"}
        )
    return placed


def _write_crlf(path: Path, lines: list[str]) -> None:
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a tiny UCF-101-style tree of AVI clips.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=("original", "subset"), default="original")
    parser.add_argument("--no-bad-clips", action="store_true", help="only good clips")
    parser.add_argument("--clips-per-group", type=int, default=1, help="clips per class and group")
    args = parser.parse_args(argv)
    clips = build_ucf101_tree(
        args.root,
        layout=args.layout,
        clips_per_group=args.clips_per_group,
        bad_clips=not args.no_bad_clips,
    )
    print(f"built {len(clips)} clips ({args.layout} layout) in {args.root}")


if __name__ == "__main__":
    main()
