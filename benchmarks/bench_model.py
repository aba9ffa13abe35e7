"""Throughput of the native Phi-3.5-vision processor and model.

    python benchmarks/bench_model.py                      # CPU: transform, processor, tiny model
    python benchmarks/bench_model.py --only transform     # the HD transform comparison alone
    python benchmarks/bench_model.py --device cuda --size phi-3.5-vision \\
        --attn sdpa,flash_attention_2                      # GPU: full-size fwd+bwd

Transform: images/s of the HD image transform at num_crops 4 and 16 on one thread, photos
and pages from 336x336 to 1700x2200, for a re-implementation of the official image
processor's steps, our previous implementation and the current one, in interleaved rounds;
outputs compared bit for bit. Processor: images/s of the HD transform + prompt encoding at
num_crops 4 and 16, on one thread and through a DataLoader with workers. Model:
forward+backward samples/s (tiny, CPU) or tokens/s and peak memory (full size, bf16,
gradient checkpointing, one document-sized image at num_crops 16 per sample), per
attention implementation.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phi3v_data.records import Record, Turn
from phi3v_data.tokens import hd_resized_size
from phi3v_train.image_processing_phi3v import CLIP_MEAN, CLIP_STD, HDImageTransform
from phi3v_train.init_model import init_model_dir, phi35_vision_config, tiny_token_ids
from phi3v_train.modeling_phi3v import build_model
from phi3v_train.processing_phi3v import Phi3VProcessor

console = Console()


def photo(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


SAMPLE = Record(
    id="bench",
    source="bench",
    conversations=(Turn(user="What is shown?", assistant="A test pattern.", images=("a.jpg",)),),
)


# Portrait and landscape photos, screenshots and document pages.
TRANSFORM_SIZES = [
    (336, 336),
    (640, 480),
    (480, 640),
    (1024, 768),
    (768, 1024),
    (1280, 720),
    (720, 1280),
    (1100, 1400),
    (1700, 2200),
    (2200, 1700),
]

Transform = Callable[[Image.Image], tuple[torch.Tensor, tuple[int, int]]]


def official_style_transform(num_crops: int) -> Transform:
    """The official Phi-3.5-vision image processor's operations, in its order, one image.

    PIL RGB copy, transpose of a portrait, bilinear resize, white padding of the PIL image
    (what torchvision's pad does with one), transpose back; ToTensor (contiguous CHW,
    float, /255); Normalize (clone, -mean, /std); bicubic global view; crops by reshape,
    permute and a contiguous copy; concatenation, zero crops, then the batch stack.
    """
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def transform(image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        image = image.convert("RGB")  # a copy even for an RGB image
        transposed = image.width < image.height
        if transposed:
            image = image.transpose(Image.Transpose.TRANSPOSE)
        ratio = image.width / image.height
        scale = 1
        while scale * math.ceil(scale / ratio) <= num_crops:
            scale += 1
        new_w = (scale - 1) * 336
        new_h = int(new_w / ratio)
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        target = math.ceil(new_h / 336) * 336
        top = (target - new_h) // 2
        image = ImageOps.expand(image, (0, top, 0, target - new_h - top), fill=(255, 255, 255))
        if transposed:
            image = image.transpose(Image.Transpose.TRANSPOSE)
        hwc = torch.from_numpy(np.array(image, np.uint8, copy=True))
        tensor = hwc.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        tensor = tensor.clone().sub_(mean).div_(std)
        glb = F.interpolate(tensor[None].float(), size=(336, 336), mode="bicubic")
        h, w = tensor.shape[1:]
        crops = tensor.reshape(1, 3, h // 336, 336, w // 336, 336).permute(0, 2, 4, 1, 3, 5)
        crops = crops.reshape(-1, 3, 336, 336).contiguous()
        pixels = torch.cat([glb.to(tensor.dtype), crops])
        if pixels.shape[0] < num_crops + 1:
            zeros = torch.zeros(num_crops + 1 - pixels.shape[0], 3, 336, 336)
            pixels = torch.cat([pixels, zeros])
        return torch.stack([pixels])[0], (h, w)

    return transform


def previous_transform(num_crops: int) -> Transform:
    """Our implementation before the speed-up: padded uint8 copy, strided normalisation,
    bicubic on the strided image, crops copied into a zeroed output."""
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def transform(image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        image = image.convert("RGB") if image.mode != "RGB" else image
        transposed = image.width < image.height
        if transposed:
            image = image.transpose(Image.Transpose.TRANSPOSE)
        new_w, new_h = hd_resized_size(image.width, image.height, num_crops)
        resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR))
        rows = -(-new_h // 336)
        padded = np.full((rows * 336, new_w, 3), 255, dtype=np.uint8)
        top = (rows * 336 - new_h) // 2
        padded[top : top + new_h] = resized
        padded = padded.transpose(1, 0, 2) if transposed else padded
        height, width = padded.shape[:2]
        hd = torch.from_numpy(padded).permute(2, 0, 1).float().div_(255)
        hd = hd.sub_(mean).div_(std)
        rows, cols = height // 336, width // 336
        out = torch.zeros(num_crops + 1, 3, 336, 336)
        out[0] = F.interpolate(hd[None], size=(336, 336), mode="bicubic")[0]
        crops = hd.view(3, rows, 336, cols, 336).permute(1, 3, 0, 2, 4)
        out[1 : 1 + rows * cols] = crops.reshape(rows * cols, 3, 336, 336)
        return out, (height, width)

    return transform


def bench_transform(rounds: int) -> None:
    """Images/s of the three transforms on one thread, and whether they agree bit for bit."""
    images = [photo(i, width, height) for i, (width, height) in enumerate(TRANSFORM_SIZES)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    table = Table(
        title=f"HD image transform, 1 thread, {len(images)} images"
        f" {TRANSFORM_SIZES[0][0]}x{TRANSFORM_SIZES[0][1]} to 1700x2200,"
        f" median of {rounds} interleaved rounds",
        title_justify="left",
    )
    for column in (
        "num_crops",
        "implementation",
        "images/s",
        "vs official-style",
        "same bits as new",
    ):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for num_crops in (4, 16):
        transforms = {
            "official-style": official_style_transform(num_crops),
            "previous": previous_transform(num_crops),
            "new": HDImageTransform(num_crops),
        }
        same = dict.fromkeys(transforms, True)
        for image in images:  # one image's outputs at a time: at num_crops 16 each is 23 MB
            pixels, size = transforms["new"](image)
            for name, transform in transforms.items():
                other_pixels, other_size = transform(image)
                same[name] &= torch.equal(other_pixels, pixels) and other_size == size
        rates: dict[str, list[float]] = {name: [] for name in transforms}
        for round_ in range(rounds):
            names = list(transforms)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]  # no fixed order
            for name in names:
                start = time.perf_counter()
                kept = [transforms[name](image) for image in images]  # outputs live, as in use
                rates[name].append(len(kept) / (time.perf_counter() - start))
        official = statistics.median(rates["official-style"])
        for name in transforms:
            rate = statistics.median(rates[name])
            table.add_row(
                str(num_crops),
                name,
                f"{rate:,.1f}",
                f"{rate / official:.2f}x",
                "yes" if same[name] else "[red]no[/]",
            )
    torch.set_num_threads(threads)
    console.print(table)


class EncodeDataset(torch.utils.data.Dataset):
    def __init__(self, processor: Phi3VProcessor, images: list[Image.Image]) -> None:
        self.processor, self.images = processor, images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return self.processor.encode(SAMPLE, [self.images[index]])


def bench_processor(model_dir: Path, count: int, workers: int) -> list[tuple]:
    rows = []
    images = [photo(i) for i in range(count)]
    for num_crops in (4, 16):
        processor = Phi3VProcessor.from_pretrained(model_dir, num_crops=num_crops)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        processor.encode(SAMPLE, [images[0]])
        start = time.perf_counter()
        for image in images:
            processor.encode(SAMPLE, [image])
        rows.append(
            (
                f"processor, num_crops {num_crops}",
                "1 thread",
                count / (time.perf_counter() - start),
                "img/s",
            )
        )
        torch.set_num_threads(threads)
        loader = torch.utils.data.DataLoader(
            EncodeDataset(processor, images * 2),
            batch_size=8,
            num_workers=workers,
            collate_fn=processor.collate,
            persistent_workers=False,
        )
        start = time.perf_counter()
        seen = sum(batch["pixel_values"].shape[0] for batch in loader)
        rows.append(
            (
                f"processor, num_crops {num_crops}",
                f"DataLoader, {workers} workers",
                seen / (time.perf_counter() - start),
                "img/s",
            )
        )
    return rows


def bench_tiny_model(model_dir: Path, steps: int, batch_size: int) -> list[tuple]:
    from phi3v_train.modeling_phi3v import Phi3VForCausalLM

    processor = Phi3VProcessor.from_pretrained(model_dir)
    model = Phi3VForCausalLM.from_pretrained(model_dir)
    model.train()
    batch = processor.collate([processor.encode(SAMPLE, [photo(i)]) for i in range(batch_size)])
    model(**batch).loss.backward()
    start = time.perf_counter()
    for _ in range(steps):
        model(**batch).loss.backward()
    elapsed = time.perf_counter() - start
    tokens = int(batch["attention_mask"].sum())
    return [
        (
            "tiny model fwd+bwd, CPU, num_crops 4",
            f"batch {batch_size}, {tokens // batch_size} tok/sample",
            steps * batch_size / elapsed,
            "samples/s",
        )
    ]


def bench_full_model(device: str, attn: list[str], steps: int, batch_size: int) -> list[tuple]:
    rows = []
    ids = tiny_token_ids()
    with tempfile.TemporaryDirectory() as tmp:
        tiny_dir = init_model_dir(Path(tmp) / "tok", "tiny")  # only its tokenizer is used
        processor = Phi3VProcessor.from_pretrained(tiny_dir, num_crops=16)
    page = photo(0, 1700, 2200)  # a document page: 4x4 crops at num_crops 16
    batch = processor.collate([processor.encode(SAMPLE, [page]) for _ in range(batch_size)])
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    tokens = int(batch["attention_mask"].sum())
    for implementation in attn:
        config = phi35_vision_config()
        config.image_token_id = ids["<|image|>"]
        try:
            model = build_model(
                config, dtype=torch.bfloat16, attn_implementation=implementation, device=device
            )
        except ImportError as error:
            rows.append(
                (f"full size, {implementation}", "not available", float("nan"), str(error)[:60])
            )
            continue
        model.train()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model(**batch).loss.backward()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            model(**batch).loss.backward()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append(
            (
                f"full size fwd+bwd, bf16, {implementation}, num_crops 16",
                f"batch {batch_size} x {tokens // batch_size} tok, peak {peak:.1f} GiB",
                steps * tokens / elapsed,
                "tokens/s",
            )
        )
        rows.append((f"  same, {implementation}", "", steps * batch_size / elapsed, "samples/s"))
        del model
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "phi-3.5-vision"])
    parser.add_argument(
        "--attn", default="sdpa", help="comma-separated: sdpa,flash_attention_2,eager"
    )
    parser.add_argument("--images", type=int, default=48, help="images per processor measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds of the transform comparison"
    )
    parser.add_argument(
        "--only",
        choices=["transform", "model"],
        help="transform: the transform comparison alone; model: every section but that one",
    )
    args = parser.parse_args()

    if args.only != "model":
        bench_transform(args.rounds)
    if args.only == "transform":
        return
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = init_model_dir(Path(tmp) / "tiny", "tiny")
        if args.size == "tiny" or args.device == "cpu":
            rows += bench_processor(model_dir, args.images, args.workers)
            rows += bench_tiny_model(model_dir, args.steps, args.batch_size or 4)
    if args.size == "phi-3.5-vision":
        if args.device != "cuda" or not torch.cuda.is_available():
            console.print(
                "[yellow]full-size model benchmark needs --device cuda and a GPU; skipped[/]"
            )
        else:
            rows += bench_full_model(
                args.device, args.attn.split(","), args.steps, args.batch_size or 1
            )

    table = Table(title="phi3v native model and processor throughput", title_justify="left")
    for column in ("what", "setting", "rate", "unit"):
        table.add_column(column, justify="right" if column == "rate" else "left")
    for what, setting, rate, unit in rows:
        table.add_row(what, setting, f"{rate:,.1f}", unit)
    console.print(table)
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
    )


if __name__ == "__main__":
    main()
