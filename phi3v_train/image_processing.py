"""The HD image transform of Phi-3.5-vision, with PIL, numpy and torch only.

Per image, for `num_crops` (see `phi3v_data.tokens`):
1. RGB; a portrait image is transposed so the steps below work on a landscape one.
2. Bilinear resize (PIL) to `scale * 336` wide, keeping the aspect ratio.
3. White padding, centred, to a height that is a multiple of 336; transpose back.
4. To float, normalise with the CLIP mean and std.
5. Global view: bicubic interpolation of the normalised image to 336 x 336.
6. `[global] + crops` in row-major order, zero crops up to `num_crops + 1`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from phi3v_data.tokens import CROP_SIZE, check_num_crops, hd_resized_size

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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

    def padded_uint8(self, image: Image.Image) -> np.ndarray:
        """Steps 1-3: the resized, white-padded image as (h, w, 3) uint8."""
        image = image.convert("RGB") if image.mode != "RGB" else image
        transposed = image.width < image.height
        if transposed:
            image = image.transpose(Image.Transpose.TRANSPOSE)
        new_w, new_h = hd_resized_size(image.width, image.height, self.num_crops)
        resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR))
        rows = -(-new_h // CROP_SIZE)
        padded = np.full((rows * CROP_SIZE, new_w, 3), 255, dtype=np.uint8)
        top = (rows * CROP_SIZE - new_h) // 2
        padded[top : top + new_h] = resized
        return padded.transpose(1, 0, 2) if transposed else padded

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        padded = self.padded_uint8(image)
        height, width = padded.shape[:2]
        hd = torch.from_numpy(padded).permute(2, 0, 1).float().div_(255)
        hd = hd.sub_(self.mean).div_(self.std)  # (3, h, w)
        rows, cols = height // CROP_SIZE, width // CROP_SIZE
        out = torch.zeros(self.num_crops + 1, 3, CROP_SIZE, CROP_SIZE)
        out[0] = F.interpolate(hd[None], size=(CROP_SIZE, CROP_SIZE), mode="bicubic")[0]
        crops = hd.view(3, rows, CROP_SIZE, cols, CROP_SIZE).permute(1, 3, 0, 2, 4)
        out[1 : 1 + rows * cols] = crops.reshape(rows * cols, 3, CROP_SIZE, CROP_SIZE)
        return out, (height, width)
