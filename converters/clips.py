"""What the video sources share: the frame options, sampling one clip, writing its JPEGs.

`phi3v convert ucf101` and `phi3v convert video-folder` read clips the same way: the
exact frame readers of `converters/video.py` (demux once, decode only up to the wanted
frames, every frame checked against the probed timestamps), the same `--num-frames`,
`--sampling`, `--max-frames`, `--decoder`, `--max-side`, `--jpeg-quality` and
`--allow-truncated` options, and the same JPEG encoding, so a clip gives the same frames
whichever source reads it.

One difference is asked for by `video-folder` (`ClipSampler(..., exact_time=True)`): its
clips come from anywhere, often with a variable frame rate (phones, screen recordings),
so timestamps come from the frames' presentation times instead of `index / fps`, and
`--sampling fps` on a clip whose frame durations vary picks the frame shown at 0, 1/k,
2/k... seconds. On a constant-rate clip both give what `ucf101` gives.
"""

from __future__ import annotations

import bisect
import dataclasses
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters.converter import ItemResult, OutputContext
from converters.frame_readers import FrameReader, frame_reader
from converters.video import (
    DECODERS,
    SAMPLING_MODES,
    VideoClip,
    VideoError,
    VideoProbe,
    sample_frame_indices,
)
from phi3v_data.flags import flag

if TYPE_CHECKING:
    from PIL import Image


# The shared command-line flags, one field factory each; the field names give the flags
# (--num-frames...). Every video source's options declare these fields (`FrameSettings`).
def num_frames_flag(default: int = 8) -> Any:
    return flag(default, min=1, help="Frames per clip (per second with --sampling fps).")


def sampling_flag(default: str = "uniform") -> Any:
    return flag(
        default,
        choices=SAMPLING_MODES,
        help="uniform: floor(arange(0, n, n/k)) as the reference; center: middle of k "
        "equal segments; fps: k frames per second, at most --max-frames.",
    )


def max_frames_flag(default: int = 64) -> Any:
    return flag(default, min=1, help="Cap on frames per clip with --sampling fps.")


def decoder_flag(default: str = "pyav") -> Any:
    return flag(
        default,
        choices=DECODERS,
        help="pyav (exact and fastest here) or decord; decord is used only on clips "
        "without B-frames (its random access is wrong there), others fall back to PyAV "
        "and their meta says so.",
    )


def max_side_flag(default: int | None = None) -> Any:
    return flag(default, min=16, help="Downscale frames so the longer side is at most this.")


def jpeg_quality_flag(default: int = 75) -> Any:
    return flag(default, min=1, max=100, help="JPEG quality of the saved frames.")


def allow_truncated_flag(default: bool = False) -> Any:
    return flag(
        default,
        help="Keep clips with fewer decodable frames than their header says, sampling "
        "from the frames that decode (meta.truncated records both counts). Default: skip.",
    )


@dataclass(frozen=True, slots=True)
class FrameSettings:
    """How frames are chosen and saved: the fields every video source's options carry."""

    num_frames: int = 8
    sampling: str = "uniform"
    max_frames: int = 64
    decoder: str = "pyav"
    max_side: int | None = None
    jpeg_quality: int = 75
    allow_truncated: bool = False

    @classmethod
    def of(cls, options: Any) -> FrameSettings:
        """The frame settings held by a source's options (fields of the same names)."""
        return cls(
            **{field.name: getattr(options, field.name) for field in dataclasses.fields(cls)}
        )


def frame_times(probe: VideoProbe, time_base: Fraction | None) -> list[Fraction] | None:
    """Each frame's display time in seconds, from the first frame's (None without a time base)."""
    if not time_base or not probe.frame_pts:
        return None
    first = probe.frame_pts[0]
    return [(pts - first) * time_base for pts in probe.frame_pts]


def is_variable_rate(probe: VideoProbe) -> bool:
    """True when the frames' durations differ by more than a tick and 2 % (real VFR).

    Millisecond time bases round 29.97 fps to 33 and 34 ms: that is still constant.
    """
    pts = probe.frame_pts
    if len(pts) < 3:
        return False
    steps = [b - a for a, b in itertools.pairwise(pts)]
    low, high = min(steps), max(steps)
    return high - low > max(1, low // 50)


def sample_by_time(times: Sequence[Fraction], per_second: int, max_frames: int) -> list[int]:
    """`--sampling fps` by timestamp: the frame on screen at 0, 1/k, 2/k... seconds.

    The clip ends one frame duration (the last step) after its last frame; more than
    `max_frames` picks are thinned uniformly, as `sample_frame_indices` does.
    """
    end = _end_time(times)
    indices: list[int] = []
    j = 0
    while Fraction(j, per_second) < end or j == 0:
        index = bisect.bisect_right(times, Fraction(j, per_second)) - 1
        if not indices or index != indices[-1]:
            indices.append(max(0, index))
        j += 1
    if len(indices) > max_frames:
        picks = sample_frame_indices(len(indices), max_frames, "uniform")
        indices = [indices[p] for p in picks]
    return indices


def _end_time(times: Sequence[Fraction]) -> Fraction:
    """When the clip ends: its last frame lasts as long as the step before it."""
    last_step = times[-1] - times[-2] if len(times) > 1 else Fraction(0)
    return times[-1] + last_step


class ClipSampler:
    """Samples clips and writes their frames; one frame reader per process, made on first use.

    `exact_time`: timestamps from presentation times, and `--sampling fps` by time on
    variable-rate clips (video-folder); otherwise `index / fps` as ucf101 always did.
    """

    def __init__(self, settings: FrameSettings, exact_time: bool = False) -> None:
        self.settings = settings
        self.exact_time = exact_time
        self._reader: FrameReader | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "exact_time": self.exact_time}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"], state["exact_time"])  # type: ignore[misc]

    def sample(self, path: Path, meta: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        """The sampled frames of the clip at `path`, and `meta` completed with how.

        Raises:
            VideoError: the clip cannot be sampled (`reason` says why).
        """
        settings = self.settings
        if self._reader is None:
            self._reader = frame_reader(settings.decoder)
        with VideoClip(path) as video:
            probe = video.probe
            frame_count = probe.frames
            if probe.truncated:
                decodable = video.count_decodable_frames()
                counts = f"the header says {probe.header_frames} frames, {decodable} decode"
                if not settings.allow_truncated:
                    raise VideoError(
                        "truncated", f"{counts} (--allow-truncated samples from those)"
                    )
                if decodable == 0:
                    raise VideoError("no_frames", counts)
                frame_count = min(decodable, probe.frames)
                meta["truncated"] = {
                    "header_frames": probe.header_frames,
                    "decodable_frames": decodable,
                }
            times = frame_times(probe, video.time_base) if self.exact_time else None
            variable = times is not None and is_variable_rate(probe)
            try:
                if variable and settings.sampling == "fps":
                    assert times is not None
                    indices = sample_by_time(
                        times[:frame_count], settings.num_frames, settings.max_frames
                    )
                else:
                    indices = sample_frame_indices(
                        frame_count,
                        settings.num_frames,
                        settings.sampling,  # type: ignore[arg-type]
                        probe.fps,
                        settings.max_frames,
                    )
            except ValueError as exc:
                raise VideoError("unsupported", str(exc)) from exc
            sampled = self._reader.read(video, indices)
            codec = video.codec if self.exact_time else None
        if times is not None:
            timestamps = [round(float(times[i]), 3) for i in indices]
        else:
            timestamps = [round(i / probe.fps, 3) for i in indices] if probe.fps else None
        fps = probe.fps
        if variable:  # the container's rate is a guess: the mean rate over the clip
            assert times is not None
            fps = frame_count / float(_end_time(times[:frame_count]) or 1)
        meta.update(
            frame_indices=indices,
            timestamps=timestamps,
            fps=round(fps, 3),
            frame_count=frame_count,
            header_frame_count=probe.header_frames,
            decoder=sampled.decoder,
            access=sampled.access,
        )
        if self.exact_time:
            meta.update(codec=codec, width=probe.width, height=probe.height)
            if variable:
                meta["variable_frame_rate"] = True
        if sampled.note:
            meta["decoder_note"] = sampled.note
        return sampled.images, meta

    def jpeg(self, image: Image.Image) -> bytes:
        """The frame as JPEG bytes at `--jpeg-quality`, downscaled to `--max-side`."""
        from PIL import Image

        side = self.settings.max_side
        if side and max(image.size) > side:
            scale = side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.settings.jpeg_quality)
        return buffer.getvalue()

    def write_frames(
        self, output: OutputContext, images: Sequence[Image.Image], rel_stem: str
    ) -> list[str]:
        """Write the frames as `images/<rel_stem>.<position>.jpg`; return their paths."""
        return [
            output.write_image(f"{rel_stem}.{position}.jpg", self.jpeg(image))
            for position, image in enumerate(images)
        ]


def count_clip(result: ItemResult, meta: dict[str, Any], frames: int) -> None:
    """The counters of one converted clip (progress bar and manifest)."""
    result.counters["clips"] += 1
    result.counters["frames"] += frames
    if "decoder_note" in meta:
        result.counters["decord_fallback"] += 1
    if "truncated" in meta:
        result.counters["truncated_kept"] += 1
