"""The HD image transform of Phi-3.5-vision, with PIL, numpy and torch only.

Per image, for `num_crops` (see `phi3v_data.tokens`):
1. RGB; a portrait image is transposed so the steps below work on a landscape one.
2. Bilinear resize (PIL) to `scale * 336` wide, keeping the aspect ratio.
3. White padding, centred, to a height that is a multiple of 336; transpose back.
4. To float, normalise with the CLIP mean and std.
5. Global view: bicubic interpolation of the normalised image to 336 x 336.
6. `[global] + crops` in row-major order, zero crops up to `num_crops + 1`.

The output is bit for bit that of the steps as written, computed with fewer passes over
memory: no transposes and a grayscale image resized as one band (see `_resized`), no
padded uint8 copy (the padding is written as normalised white), a contiguous normalised
image for the bicubic global view and one copy from it into the crops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from phi3v_data.tokens import CROP_SIZE, check_num_crops, hd_resized_size

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _padded_layout(height: int, width: int) -> tuple[int, int, int, int]:
    """(padded height, padded width, top, left) of a resized image: centred, multiples of 336."""
    padded_h = -(-height // CROP_SIZE) * CROP_SIZE
    padded_w = -(-width // CROP_SIZE) * CROP_SIZE
    return padded_h, padded_w, (padded_h - height) // 2, (padded_w - width) // 2


class HDImageTransform:
    """`transform(image) -> (pixel_values (num_crops+1, 3, 336, 336), (h, w) padded)`."""

    def __init__(
        self,
        num_crops: int = 4,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
    ) -> None:
        check_num_crops(num_crops)
        self.num_crops = num_crops
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        # The same float32 ops as the image body, so the padding has the bits of a 255 pixel.
        self._white = (
            torch.full((3, 1, 1), 255.0, dtype=torch.float32) / 255 - self.mean
        ) / self.std

    def _resized(self, image: Image.Image) -> np.ndarray:
        """Steps 1-2 in the image's own orientation: (h, w, 3) uint8, or (h, w) if grayscale."""
        # PIL resizes each band alike, so a grayscale image is resized once and its band
        # stands for R, G and B (what convert("RGB") would give), at a third of the work.
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        new_w, new_h = hd_resized_size(image.width, image.height, self.num_crops)
        if image.width < image.height:
            # PIL resizes the width first, then the height, rounding to uint8 in between.
            # Resizing a portrait's height alone, then its width, is that order on the
            # transposed image: the same integers, without transposing in and out.
            image = image.resize((image.width, new_h), Image.Resampling.BILINEAR)
        return np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR))

    def padded_uint8(self, image: Image.Image) -> np.ndarray:
        """Steps 1-3: the resized, white-padded image as (h, w, 3) uint8."""
        resized = self._resized(image)
        height, width = resized.shape[:2]
        padded_h, padded_w, top, left = _padded_layout(height, width)
        padded = np.full((padded_h, padded_w, 3), 255, dtype=np.uint8)
        padded[top : top + height, left : left + width] = (
            resized[..., None] if resized.ndim == 2 else resized
        )
        return padded

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        """Steps 1-6: pixel values and the padded (height, width)."""
        resized = self._resized(image)
        height, width = resized.shape[:2]
        padded_h, padded_w, top, left = _padded_layout(height, width)
        hd = torch.empty(3, padded_h, padded_w, dtype=torch.float32)
        body = hd[:, top : top + height, left : left + width]
        # numpy casts uint8 -> float32 straight from PIL's read-only buffer into the tensor
        # (torch.from_numpy would warn about it); a grayscale band broadcasts to R, G, B.
        source = resized.transpose(2, 0, 1) if resized.ndim == 3 else resized
        np.copyto(body.numpy(), source, casting="unsafe")
        body.div_(255).sub_(self.mean).div_(self.std)
        if padded_h > height:
            hd[:, :top] = self._white
            hd[:, top + height :] = self._white
        if padded_w > width:
            hd[:, :, :left] = self._white
            hd[:, :, left + width :] = self._white
        rows, cols = padded_h // CROP_SIZE, padded_w // CROP_SIZE
        count = rows * cols
        out = torch.empty(self.num_crops + 1, 3, CROP_SIZE, CROP_SIZE, dtype=torch.float32)
        out[0] = F.interpolate(hd[None], size=(CROP_SIZE, CROP_SIZE), mode="bicubic")[0]
        crops = hd.view(3, rows, CROP_SIZE, cols, CROP_SIZE).permute(1, 3, 0, 2, 4)
        out[1 : 1 + count].view(rows, cols, 3, CROP_SIZE, CROP_SIZE).copy_(crops)
        out[1 + count :].zero_()
        return out, (padded_h, padded_w)
