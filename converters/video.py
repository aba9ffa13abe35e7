"""Exact frame sampling from video files: probe once, pick indices, read only those frames.

A frame's index is its position in what a plain sequential decode outputs (display
order). Readers must return exactly those frames:

- `VideoClip` demuxes the clip once without decoding (cheap) and keeps its packets: the
  header's frame count, the frames really there with their presentation timestamps, the
  keyframes and whether B-frames reorder the stream (`VideoClip.probe`).
- `PyAVReader` (default) decodes forward and jumps only when a keyframe lies between the
  current decode position and the next wanted frame. A jump restarts the decoder at the
  keyframe's packet in decode order, which is seeking by the keyframe's decode timestamp
  (right with B-frames too) without re-reading the file. Every decoded frame is checked
  against the probed timestamps; on any surprise it falls back to one sequential decode
  from the start, which is always exact. Only kept frames are converted to RGB.
- `DecordReader` (`--decoder decord`) uses decord's `get_batch` only on clips where it
  is exact (no B-frames; decord 0.6 returns wrong frames on random access otherwise,
  see docs/performance.md); other clips are read by PyAV and the result says why.

The readers (`PyAVReader`, `DecordReader`, `frame_reader`) are in
`converters/frame_readers.py`. `av` and `decord` are imported inside the functions that
need them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL import Image

SamplingMode = Literal["uniform", "center", "fps"]
SAMPLING_MODES: tuple[str, ...] = ("uniform", "center", "fps")
DECODERS: tuple[str, ...] = ("pyav", "decord")


class VideoError(Exception):
    """A clip that cannot be sampled; `reason` is a stable code for manifests and summaries."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VideoProbe:
    """What demuxing (no decoding) tells about a clip's video stream.

    `frame_pts` lists the presentation timestamps of the frames a decoder outputs, in
    display order, so frame `i` has timestamp `frame_pts[i]`. `keyframes` holds the
    display index of each keyframe and `keyframe_dts` its decode timestamp (the seek target).
    """

    header_frames: int
    packets: int
    frame_pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    keyframe_dts: tuple[int, ...]
    has_b_frames: bool
    fps: float
    width: int
    height: int

    @property
    def frames(self) -> int:
        return len(self.frame_pts)

    @property
    def truncated(self) -> bool:
        """Fewer frames in the file than its header announces (a cut download, usually)."""
        return self.packets < self.header_frames


@dataclass(frozen=True, slots=True)
class SampledFrames:
    """The frames asked for, in the order asked, plus how they were read."""

    images: list[Image.Image]
    decoder: str
    access: str  # "seek", "sequential" or "batch"
    note: str | None = None


def sample_frame_indices(
    num_frames: int, k: int, mode: SamplingMode = "uniform", fps: float = 0.0, max_frames: int = 64
) -> list[int]:
    """Indices of the frames to keep from a clip of `num_frames` frames.

    Args:
        num_frames: frames in the clip (> 0).
        k: frames per clip (`uniform`, `center`) or frames per second (`fps`).
        mode: `uniform` is the reference recipe, `floor(arange(0, n, n/k))` (starts at
            frame 0; indices repeat when the clip has fewer than k frames); `center` takes
            the middle frame of k equal segments; `fps` takes k frames per second of video,
            at most `max_frames` (spread uniformly over those when there are more).
        fps: the clip's frame rate (needed by `fps`).
        max_frames: cap for `fps`.

    Returns:
        Sorted frame indices (duplicates possible for clips shorter than k).
    """
    if num_frames <= 0 or k <= 0:
        raise ValueError(f"need a positive frame count and k, got {num_frames} and {k}")
    if mode == "uniform":
        import numpy as np

        # numpy exactly as the reference computes it; float steps may yield k+1 values.
        return [int(i) for i in np.floor(np.arange(0, num_frames, num_frames / k))[:k]]
    if mode == "center":
        return [min(num_frames - 1, (2 * i + 1) * num_frames // (2 * k)) for i in range(k)]
    if mode == "fps":
        if fps <= 0:
            raise ValueError("the clip has no frame rate, so --sampling fps cannot be used")
        indices = sorted({int(j * fps / k) for j in range(int(num_frames * k / fps) + 1)})
        indices = [i for i in indices if i < num_frames]
        if len(indices) > max_frames:
            picks = sample_frame_indices(len(indices), max_frames, "uniform")
            indices = [indices[p] for p in picks]
        return indices
    raise ValueError(f"unknown sampling mode {mode!r}; choose one of {', '.join(SAMPLING_MODES)}")


def _open(path: Path):
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise VideoError("unreadable", f"cannot open the file: {exc.strerror}") from exc
    except (av.error.PermissionError, av.error.IsADirectoryError, OSError) as exc:
        raise VideoError("unreadable", f"cannot read the file: {exc}") from exc
    except av.error.FFmpegError as exc:
        reason = exc.strerror or str(exc)
        raise VideoError("corrupt", f"not a readable video container ({reason})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError("corrupt", "the file has no video stream")
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1  # parallelism comes from worker processes
    return container, stream


class VideoClip:
    """An open clip whose video packets are demuxed once and kept (a clip is ~1 MB).

    Decoding then feeds those packets to the decoder from the right keyframe: the same
    as seeking the container by the keyframe's decode timestamp, without re-reading.
    Use as a context manager; `probe` describes the clip.

    Raises:
        VideoError: unreadable, corrupt or frameless clips (`reason` says which).
    """

    def __init__(self, path: Path) -> None:
        import av

        self.path = path
        self._container, self._stream = _open(path)
        stream = self._stream
        try:
            header = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            packets = 0
            self._packets: list = []  # non-empty video packets in decode order
            try:
                for packet in self._container.demux(stream):
                    if packet.dts is None and packet.pts is None:
                        continue  # the end-of-stream flush packet
                    packets += 1
                    if packet.size:  # an empty packet is a dropped frame: no output
                        self._packets.append(packet)
            except av.error.FFmpegError as exc:
                raise VideoError(
                    "corrupt", f"demuxing failed after {packets} packets: {exc}"
                ) from exc
            if not self._packets:
                raise VideoError(
                    "no_frames", f"the video stream has no frames (header says {header})"
                )
            self.probe = self._describe(header, packets, float(rate) if rate else 0.0)
        except BaseException:
            self._container.close()
            raise

    def _describe(self, header: int, packets: int, fps: float) -> VideoProbe:
        decode_order = [_pts(packet) for packet in self._packets]
        display = sorted(decode_order)
        keyframes: tuple[int, ...] = ()
        keyframe_dts: tuple[int, ...] = ()
        self._keyframe_packet: dict[int, int] = {}  # display index -> position in packets
        if len(set(display)) == len(display):  # else pts cannot identify frames
            index_of = {pts: i for i, pts in enumerate(display)}
            key = sorted(
                (index_of[_pts(packet)], position)
                for position, packet in enumerate(self._packets)
                if packet.is_keyframe
            )
            keyframes = tuple(i for i, _ in key)
            keyframe_dts = tuple(_dts(self._packets[position]) for _, position in key)
            self._keyframe_packet = dict(key)
        context = self._stream.codec_context
        return VideoProbe(
            header_frames=header,
            packets=packets,
            frame_pts=tuple(display),
            keyframes=keyframes,
            keyframe_dts=keyframe_dts,
            has_b_frames=decode_order != display,
            fps=fps,
            width=context.width,
            height=context.height,
        )

    def __enter__(self) -> VideoClip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    @property
    def time_base(self) -> Fraction | None:
        """Seconds per tick of `probe.frame_pts` (None when the container gives none)."""
        return self._stream.time_base

    @property
    def codec(self) -> str:
        """The video stream's codec (h264, hevc, vp9, av1, mpeg4...), not the decoder's name."""
        codec = self._stream.codec_context.codec
        return getattr(codec, "canonical_name", None) or codec.name

    def _decode_from(self, position: int) -> Iterator:
        """Frames out of the decoder, fed from packet `position` on (a keyframe or 0)."""
        context = self._stream.codec_context
        context.flush_buffers()
        for packet in self._packets[position:]:
            yield from context.decode(packet)
        yield from context.decode(None)

    def count_decodable_frames(self) -> int:
        """Decode everything and count the frames that come out (for truncated clips)."""
        import av

        count = 0
        try:
            for _ in self._decode_from(0):
                count += 1
        except av.error.FFmpegError:
            pass  # a cut file ends in a broken packet: the frames before it count
        return count

    def decode(self, indices: Sequence[int]) -> tuple[dict[int, Any], str]:
        """The frames at `indices` (display order) as av.VideoFrames, and the access used.

        Raises:
            VideoError: decoding failed (`corrupt`) or the clip ended early (`truncated`).
        """
        import av

        wanted = sorted(set(indices))
        try:
            if self.probe.keyframes:
                try:
                    return self._decode_seeking(wanted), "seek"
                except _SeekFailed:
                    pass
            return self._decode_sequential(wanted), "sequential"
        except av.error.FFmpegError as exc:
            raise VideoError("corrupt", f"decoding failed: {exc}") from exc

    def _decode_seeking(self, wanted: list[int]) -> dict[int, Any]:
        probe = self.probe
        index_of = {pts: i for i, pts in enumerate(probe.frame_pts)}
        kept: dict[int, Any] = {}
        frames: Iterator | None = None
        position = 0  # display index of the next frame the running decode will output
        for target in wanted:
            slot = bisect.bisect_right(probe.keyframes, target) - 1
            keyframe = probe.keyframes[slot] if slot >= 0 else 0
            expect_first: int | None = None
            # Jump only when a keyframe lies between the decode position and the target:
            # jumping before every index re-decodes the same GOP on long-GOP clips.
            if frames is None or keyframe > position:
                frames = self._decode_from(self._keyframe_packet.get(keyframe, 0))
                expect_first = keyframe
            for frame in frames:
                index = index_of.get(frame.pts)
                if index is None:
                    raise _SeekFailed
                if expect_first is not None:
                    # After a jump the keyframe comes first; B-frames that depend on
                    # frames before it may be dropped or come earlier, never later.
                    if index > expect_first:
                        raise _SeekFailed
                    if index == expect_first:
                        expect_first = None
                position = index + 1
                if index == target:
                    kept[index] = frame
                    break
                if index > target:
                    raise _SeekFailed
            else:
                raise _SeekFailed  # the clip ended early: let the sequential decode tell
        return kept

    def _decode_sequential(self, wanted: list[int]) -> dict[int, Any]:
        import av

        kept: dict[int, Any] = {}
        targets, last = set(wanted), wanted[-1]
        try:
            for index, frame in enumerate(self._decode_from(0)):
                if index in targets:
                    kept[index] = frame
                if index >= last:
                    break
        except av.error.FFmpegError:
            if not kept:
                raise
        missing = [i for i in wanted if i not in kept]
        if missing:
            raise VideoError(
                "truncated",
                f"frames {missing} could not be decoded ({self.probe.frames} frames expected)",
            )
        return kept


def _pts(packet: Any) -> int:
    return packet.pts if packet.pts is not None else packet.dts


def _dts(packet: Any) -> int:
    return packet.dts if packet.dts is not None else packet.pts


def probe_video(path: Path) -> VideoProbe:
    """Demux the clip (no decoding) and describe its frames; raises `VideoError`."""
    with VideoClip(path) as clip:
        return clip.probe


class _SeekFailed(Exception):
    """The seek path met something the probe did not predict: decode sequentially instead."""
