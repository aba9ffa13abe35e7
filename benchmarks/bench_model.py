"""Throughput of the native Phi-3.5-vision processor and model.

    python benchmarks/bench_model.py                      # CPU: processor + tiny model
    python benchmarks/bench_model.py --device cuda --size phi-3.5-vision \\
        --attn sdpa,flash_attention_2                      # GPU: full-size fwd+bwd

Processor: images/s of the HD transform + prompt encoding at num_crops 4 and 16, on one
thread and through a DataLoader with workers. Model: forward+backward samples/s (tiny, CPU)
or tokens/s and peak memory (full size, bf16, gradient checkpointing, one document-sized
image at num_crops 16 per sample), per attention implementation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phi3v_data.records import Record, Turn
from phi3v_train.builders import init_model_dir, phi35_vision_config, tiny_token_ids
from phi3v_train.checkpoint import build_model
from phi3v_train.processing import Phi3VProcessor

console = Console()


def photo(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


SAMPLE = Record(
    id="bench",
    source="bench",
    conversations=(Turn(user="What is shown?", assistant="A test pattern.", images=("a.jpg",)),),
)


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
    from phi3v_train.modeling import Phi3VForCausalLM

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
    args = parser.parse_args()

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
