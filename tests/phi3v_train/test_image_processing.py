"""HDImageTransform against the straightforward algorithm it speeds up, bit for bit."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from phi3v_data.tokens import CROP_SIZE, hd_padded_size, hd_resized_size
from phi3v_train.image_processing_phi3v import CLIP_MEAN, CLIP_STD, HDImageTransform

# Square, landscape, portrait, odd paddings (1 row), 1-pixel sides, extreme aspect ratios.
SIZES = [
    (336, 336),
    (640, 480),
    (480, 640),
    (1700, 2200),
    (2200, 1700),
    (1001, 999),
    (999, 1001),
    (337, 1),
    (1, 337),
    (4000, 1),
    (1, 4000),
    (5, 170),
    (1280, 720),
    (719, 1281),
]


def reference_padded(image: Image.Image, num_crops: int) -> np.ndarray:
    """Steps 1-3 as written: RGB, transpose a portrait, resize, pad rows, transpose back."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    transposed = image.width < image.height
    if transposed:
        image = image.transpose(Image.Transpose.TRANSPOSE)
    new_w, new_h = hd_resized_size(image.width, image.height, num_crops)
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR))
    rows = -(-new_h // CROP_SIZE)
    padded = np.full((rows * CROP_SIZE, new_w, 3), 255, dtype=np.uint8)
    top = (rows * CROP_SIZE - new_h) // 2
    padded[top : top + new_h] = resized
    return padded.transpose(1, 0, 2) if transposed else padded


def reference(image: Image.Image, num_crops: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The previous implementation: normalise the padded image, interpolate, copy crops in."""
    padded = reference_padded(image, num_crops)
    height, width = padded.shape[:2]
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    hd = torch.from_numpy(padded).permute(2, 0, 1).float().div_(255).sub_(mean).div_(std)
    rows, cols = height // CROP_SIZE, width // CROP_SIZE
    out = torch.zeros(num_crops + 1, 3, CROP_SIZE, CROP_SIZE)
    out[0] = F.interpolate(hd[None], size=(CROP_SIZE, CROP_SIZE), mode="bicubic")[0]
    crops = hd.view(3, rows, CROP_SIZE, cols, CROP_SIZE).permute(1, 3, 0, 2, 4)
    out[1 : 1 + rows * cols] = crops.reshape(rows * cols, 3, CROP_SIZE, CROP_SIZE)
    return out, (height, width)


@functools.cache  # the transforms never modify their input
def noise_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    return image if mode == "RGBA" else image.convert(mode)


@pytest.mark.parametrize("num_crops", [1, 4, 16])
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_pixels_and_sizes_equal_the_previous_algorithm(
    width: int, height: int, num_crops: int
) -> None:
    image = noise_image(width, height, seed=width * height)
    pixels, size = HDImageTransform(num_crops)(image)
    expected, expected_size = reference(image, num_crops)
    assert size == expected_size == hd_padded_size(width, height, num_crops)
    assert pixels.dtype == torch.float32 and pixels.is_contiguous()
    assert torch.equal(pixels, expected)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "1", "CMYK"])
@pytest.mark.parametrize("num_crops", [1, 4, 16])
def test_other_modes_equal_the_previous_algorithm(mode: str, num_crops: int) -> None:
    for width, height in [(700, 500), (500, 700), (3, 900)]:
        image = noise_image(width, height, mode, seed=7)
        pixels, size = HDImageTransform(num_crops)(image)
        expected, expected_size = reference(image, num_crops)
        assert size == expected_size
        assert torch.equal(pixels, expected), (mode, width, height)


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_padded_uint8_equals_the_previous_algorithm(mode: str) -> None:
    transform = HDImageTransform(4)
    for width, height in [(700, 500), (500, 700), (1, 4000), (4000, 1)]:
        image = noise_image(width, height, mode, seed=3)
        padded = transform.padded_uint8(image)
        assert padded.dtype == np.uint8
        assert np.array_equal(padded, reference_padded(image, 4))


def test_custom_mean_and_std_are_used() -> None:
    mean, std = (0.5, 0.25, 0.0), (0.5, 2.0, 1.0)
    transform = HDImageTransform(4, mean, std)
    image = noise_image(640, 480, seed=5)
    padded = torch.from_numpy(reference_padded(image, 4)).permute(2, 0, 1).float()
    expected = padded.div(255).sub_(torch.tensor(mean).view(3, 1, 1))
    expected = expected.div_(torch.tensor(std).view(3, 1, 1))
    pixels, _ = transform(image)
    assert torch.equal(pixels[1], expected[:, :CROP_SIZE, :CROP_SIZE])
    assert transform.mean.flatten().tolist() == list(mean)
    assert transform.std.flatten().tolist() == list(std)


@pytest.mark.parametrize("num_crops", [1, 4, 16])
def test_shapes_and_zero_padding_crops(num_crops: int) -> None:
    transform = HDImageTransform(num_crops)
    for width, height in SIZES:
        pixels, (h, w) = transform(noise_image(width, height))
        count = (h // CROP_SIZE) * (w // CROP_SIZE)
        assert pixels.shape == (num_crops + 1, 3, CROP_SIZE, CROP_SIZE)
        assert 1 <= count <= num_crops
        assert not pixels[1 + count :].any()
        assert pixels[count].abs().sum() > 0


def test_padding_is_normalised_white() -> None:
    # 640x480 at 4 crops: 672 x 504 resized, 84 white rows above and below.
    pixels, (h, w) = HDImageTransform(4)(noise_image(640, 480))
    assert (h, w) == (672, 672)
    white = (torch.ones(3) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    top = pixels[1, :, :84]
    assert torch.equal(top, white.view(3, 1, 1).expand_as(top))
    assert not torch.equal(pixels[1, :, 84], white.view(3, 1).expand(3, CROP_SIZE))
