"""Frame sampling and the frame readers on real tiny AVI clips whose frames show their index."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from converters.frame_readers import DecordReader, PyAVReader
from converters.samples.ucf101 import frame_index_of, write_clip
from converters.video import (
    VideoClip,
    VideoError,
    probe_video,
    sample_frame_indices,
)

# name: (frames, gop, b_frames)
CLIPS = {
    "short_gop": (45, 12, 0),
    "long_gop": (60, 250, 0),
    "b_frames": (50, 12, 2),
    "b_frames_long_gop": (41, 250, 1),
    "tiny": (5, 12, 0),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    paths = {}
    for seed, (name, (frames, gop, b_frames)) in enumerate(CLIPS.items()):
        paths[name] = root / f"{name}.avi"
        write_clip(paths[name], frames, gop=gop, b_frames=b_frames, seed=seed)
    return paths


def _sequential_rgb(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [frame.to_image().tobytes() for frame in container.decode(video=0)]


def test_uniform_sampling_is_the_reference_formula() -> None:
    assert sample_frame_indices(175, 8) == [0, 21, 43, 65, 87, 109, 131, 153]
    for n in (1, 7, 8, 9, 100, 301, 1000):
        for k in (1, 3, 7, 8, 16):
            expected = np.floor(np.arange(0, n, n / k)).astype(int).tolist()[:k]
            assert sample_frame_indices(n, k) == expected
    assert sample_frame_indices(5, 8) == [0, 0, 1, 1, 2, 3, 3, 4]  # short clips repeat frames


def test_center_and_fps_sampling() -> None:
    assert sample_frame_indices(80, 8, "center") == [5, 15, 25, 35, 45, 55, 65, 75]
    assert sample_frame_indices(3, 4, "center") == [0, 1, 1, 2]
    # 2 frames per second of a 25 fps, 3 s clip: every 12.5 frames.
    assert sample_frame_indices(75, 2, "fps", fps=25.0) == [0, 12, 25, 37, 50, 62]
    capped = sample_frame_indices(750, 2, "fps", fps=25.0, max_frames=4)
    assert len(capped) == 4 and capped[0] == 0 and capped == sorted(capped)
    with pytest.raises(ValueError, match="frame rate"):
        sample_frame_indices(75, 2, "fps", fps=0.0)
    with pytest.raises(ValueError, match="unknown sampling"):
        sample_frame_indices(75, 2, "random")  # type: ignore[arg-type]


def test_probe_reads_counts_keyframes_and_b_frames(clips: dict[str, Path]) -> None:
    short = probe_video(clips["short_gop"])
    assert (short.header_frames, short.frames, short.packets) == (45, 45, 45)
    assert short.keyframes == (0, 12, 24, 36) and not short.has_b_frames
    assert short.fps == 25.0 and (short.width, short.height) == (64, 48)
    assert probe_video(clips["long_gop"]).keyframes == (0,)
    with_b = probe_video(clips["b_frames"])
    assert with_b.has_b_frames and with_b.frames == 50 and with_b.keyframes[:3] == (0, 12, 24)
    # The keyframe's decode timestamp precedes its presentation (B-frames are reordered).
    assert with_b.keyframe_dts[1] < with_b.frame_pts[12]


@pytest.mark.parametrize("name", list(CLIPS))
@pytest.mark.parametrize("mode", ["uniform", "center", "fps"])
def test_pyav_reader_returns_exactly_the_sampled_frames(
    clips: dict[str, Path], name: str, mode: str
) -> None:
    path = clips[name]
    sequential = _sequential_rgb(path)
    with VideoClip(path) as clip:
        indices = sample_frame_indices(clip.probe.frames, 8, mode, clip.probe.fps)  # type: ignore[arg-type]
        result = PyAVReader().read(clip, indices)
    assert [frame_index_of(image) for image in result.images] == indices
    assert [image.tobytes() for image in result.images] == [sequential[i] for i in indices]
    assert (result.decoder, result.access, result.note) == ("pyav", "seek", None)


def test_pyav_reader_every_single_frame(clips: dict[str, Path]) -> None:
    for name in ("b_frames", "short_gop"):
        sequential = _sequential_rgb(clips[name])
        reader = PyAVReader()
        with VideoClip(clips[name]) as clip:
            for index in (44, 13, 12, 11, 0, 25, 36, 37):
                image = reader.read(clip, [index]).images[0]
                assert image.tobytes() == sequential[index], (name, index)


@pytest.mark.parametrize("name", list(CLIPS))
def test_decord_reader_exact_or_falls_back(clips: dict[str, Path], name: str) -> None:
    with VideoClip(clips[name]) as clip:
        indices = sample_frame_indices(clip.probe.frames, 8)
        result = DecordReader().read(clip, indices)
    assert [frame_index_of(image) for image in result.images] == indices
    if CLIPS[name][2]:  # B-frames: decord's random access is wrong there, PyAV reads
        assert (result.decoder, result.note) == ("pyav", "decord unsafe: B-frames")
    else:
        assert (result.decoder, result.access, result.note) == ("decord", "batch", None)


def test_bad_clips_raise_video_errors(tmp_path: Path, clips: dict[str, Path]) -> None:
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(bytes(range(256)) * 16)
    empty = tmp_path / "empty.avi"
    write_clip(empty, 0)
    cut = tmp_path / "cut.avi"
    data = clips["short_gop"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    for path, reason in [
        (corrupt, "corrupt"),
        (empty, "no_frames"),
        (tmp_path / "absent.avi", "unreadable"),
    ]:
        with pytest.raises(VideoError) as caught:
            probe_video(path)
        assert caught.value.reason == reason
    with VideoClip(cut) as clip:
        assert clip.probe.truncated and clip.probe.header_frames == 45
        decodable = clip.count_decodable_frames()
        assert 0 < decodable < 45 and decodable <= clip.probe.frames
        indices = sample_frame_indices(decodable, 4)
        images = PyAVReader().read(clip, indices).images
    assert [frame_index_of(image) for image in images] == indices


def _with_header_count(source: Path, target: Path, count: int) -> None:
    """Copy an AVI, rewriting the frame count in its main (avih) and stream (strh) headers."""
    data = bytearray(source.read_bytes())
    for tag, offset in ((b"avih", 16), (b"strh", 32)):  # dwTotalFrames, dwLength
        at = data.index(tag) + 8 + offset
        data[at : at + 4] = struct.pack("<I", count)
    target.write_bytes(bytes(data))


@pytest.mark.parametrize("header", [0, 20])
def test_wrong_low_header_count_uses_the_real_frames(
    clips: dict[str, Path], tmp_path: Path, header: int
) -> None:
    path = tmp_path / "header.avi"
    _with_header_count(clips["b_frames"], path, header)
    with VideoClip(path) as clip:
        assert clip.probe.header_frames == header
        assert clip.probe.frames == 50 and not clip.probe.truncated
        indices = sample_frame_indices(clip.probe.frames, 8)
        images = PyAVReader().read(clip, indices).images
    assert [frame_index_of(image) for image in images] == indices


def test_header_announcing_more_frames_marks_the_clip_truncated(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "header.avi"
    _with_header_count(clips["short_gop"], path, 90)
    with VideoClip(path) as clip:
        assert clip.probe.truncated and clip.count_decodable_frames() == 45
