"""Frame readers: the frames at given indices of a `VideoClip`, as RGB images.

`PyAVReader` (default) decodes with `VideoClip.decode` (exact: see `converters/video.py`);
`DecordReader` (`--decoder decord`) uses decord's `get_batch` only where it is exact (no
B-frames) and PyAV elsewhere, saying why in the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from converters.video import DECODERS, SampledFrames, VideoClip

if TYPE_CHECKING:
    from PIL import Image


class FrameReader(Protocol):
    """Reads the frames at `indices` (display order, duplicates allowed) as RGB images."""

    name: str

    def read(self, clip: VideoClip, indices: Sequence[int]) -> SampledFrames: ...


class PyAVReader:
    """Exact frames with PyAV; only the kept frames are converted to RGB."""

    name = "pyav"

    def __init__(self) -> None:
        self._reformatter: Any = None

    def read(self, clip: VideoClip, indices: Sequence[int]) -> SampledFrames:
        if indices and max(indices) >= clip.probe.frames:
            raise ValueError(f"frame {max(indices)} asked from a clip of {clip.probe.frames}")
        frames, access = clip.decode(indices)
        images = {i: self.to_rgb(frame) for i, frame in frames.items()}
        return SampledFrames([images[i] for i in indices], decoder=self.name, access=access)

    def to_rgb(self, frame: Any) -> Image.Image:
        """The frame as an RGB image: the same pixels as `frame.to_image()`, 2-3x cheaper.

        A reused reformatter keeps its swscale context between frames; `to_image()`
        builds a new one per call.
        """
        from PIL import Image

        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        rgb = self._reformatter.reformat(frame, format="rgb24")
        return Image.fromarray(rgb.to_ndarray())


class DecordReader:
    """decord's `get_batch` on clips where it is exact (no B-frames); PyAV on the others."""

    name = "decord"

    def __init__(self) -> None:
        self.fallback = PyAVReader()

    def read(self, clip: VideoClip, indices: Sequence[int]) -> SampledFrames:
        probe = clip.probe
        if probe.has_b_frames:
            return self._fall_back(clip, indices, "decord unsafe: B-frames")
        import decord
        from PIL import Image

        try:
            reader = decord.VideoReader(str(clip.path), ctx=decord.cpu(0), num_threads=1)
        except Exception as exc:  # decord raises its own DECORDError and RuntimeError
            return self._fall_back(clip, indices, f"decord cannot open it: {exc}")
        if len(reader) != probe.frames:
            return self._fall_back(
                clip,
                indices,
                f"decord counts {len(reader)} frames, the stream has {probe.frames}",
            )
        try:
            batch = reader.get_batch(list(indices)).asnumpy()
        except Exception as exc:
            return self._fall_back(clip, indices, f"decord failed: {exc}")
        images = [Image.fromarray(array) for array in batch]
        return SampledFrames(images, decoder=self.name, access="batch")

    def _fall_back(self, clip: VideoClip, indices: Sequence[int], why: str) -> SampledFrames:
        result = self.fallback.read(clip, indices)
        return SampledFrames(result.images, result.decoder, result.access, note=why)


def frame_reader(name: str) -> FrameReader:
    """The reader called `name` (`pyav` or `decord`)."""
    readers: dict[str, type[PyAVReader] | type[DecordReader]] = {
        "pyav": PyAVReader,
        "decord": DecordReader,
    }
    if name not in readers:
        raise ValueError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}")
    return readers[name]()
