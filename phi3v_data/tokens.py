"""Image token arithmetic of Phi-3.5-vision's HD transform, without torch.

Shared by the validator (token budget from image headers) and the processor (which
must produce exactly this many placeholder positions). See docs in
`docs/model.md`: the padded HD size decides the crop grid, and each
image costs `(rows * cols + 1) * 144 + 1 + (rows + 1) * 12` tokens.
"""

from __future__ import annotations

import math

CROP_SIZE = 336
TOKENS_PER_CROP = 144
MIN_NUM_CROPS = 1
MAX_NUM_CROPS = 16
NUM_CROPS_HELP = (
    "Maximum number of 336x336 crops per image in the HD transform (1-16), plus one global"
    " view. More crops = more detail and more tokens: a square image costs 757 tokens at"
    " 4 (the default, good for photos and video frames) and 2509 at 16 (use 16 for"
    " documents such as DocVQA)."
)


def check_num_crops(num_crops: int) -> None:
    if not MIN_NUM_CROPS <= num_crops <= MAX_NUM_CROPS:
        raise ValueError(
            f"num_crops must be between {MIN_NUM_CROPS} and {MAX_NUM_CROPS}, got {num_crops}"
        )


def hd_scale(width: int, height: int, num_crops: int) -> int:
    """The number of 336-px columns of the (landscape-oriented) HD image."""
    ratio = max(width, height) / min(width, height)
    scale = 1
    while (scale + 1) * math.ceil((scale + 1) / ratio) <= num_crops:
        scale += 1
    return scale


def hd_resized_size(width: int, height: int, num_crops: int) -> tuple[int, int]:
    """(width, height) of the image after the HD resize, before padding."""
    check_num_crops(num_crops)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    transposed = width < height
    w, h = (height, width) if transposed else (width, height)
    ratio = w / h
    new_w = hd_scale(w, h, num_crops) * CROP_SIZE
    # At least one row: an extreme panorama would otherwise round to zero height.
    new_h = max(1, int(new_w / ratio))
    return (new_h, new_w) if transposed else (new_w, new_h)


def hd_padded_size(width: int, height: int, num_crops: int) -> tuple[int, int]:
    """(height, width) after padding to multiples of 336: the processor's `image_sizes`."""
    new_w, new_h = hd_resized_size(width, height, num_crops)
    if width < height:
        return new_h, math.ceil(new_w / CROP_SIZE) * CROP_SIZE
    return math.ceil(new_h / CROP_SIZE) * CROP_SIZE, new_w


def num_image_tokens_for_padded(height: int, width: int) -> int:
    rows, cols = height // CROP_SIZE, width // CROP_SIZE
    return (rows * cols + 1) * TOKENS_PER_CROP + 1 + (rows + 1) * 12


def num_image_tokens(width: int, height: int, num_crops: int) -> int:
    """Placeholder positions one image of `width` x `height` takes at `num_crops`."""
    return num_image_tokens_for_padded(*hd_padded_size(width, height, num_crops))
