"""Training throughput and peak memory per mode (full, freeze-vision, LoRA, QLoRA), and
per batch layout (padded, packed, length-grouped) on mixed video and document samples.

    python benchmarks/bench_train.py                                  # CPU, tiny model
    python benchmarks/bench_train.py --device cuda --size phi-3.5-vision --num-crops 16 \\
        --modes full,freeze-vision,lora,qlora --attn sdpa            # GPU, the seed's table
    python benchmarks/bench_train.py --batching                      # CPU, tiny model, < 2 min
    python benchmarks/bench_train.py --batching --device cuda --size phi-3.5-vision \\
        --attn flash_attention_2 --mode lora --ucf 8 --docvqa 24 --batch-size 4

One optimizer step = forward + backward + AdamW step (the recipe's settings: gradient
checkpointing on; bf16 autocast on a GPU) on synthetic batches shaped like the data:
one image per sample with its exact number of placeholder positions for `--num-crops`,
plus text, `--tokens` positions per sample in total (DocVQA's mean is ~2,443 at num_crops
16). Each mode runs in its own process, so peak memory (GPU: max allocated; CPU: max RSS)
belongs to that mode alone. Weights are random: throughput does not depend on them.

`--batching`: `--ucf` UCF-101-shaped samples (8 frames of 320x240 at num_crops 4: 8 x 757
placeholders + the 101-class prompt, ~6.5k tokens) mixed with `--docvqa` DocVQA-shaped
ones (one tall page at num_crops 16: 2,377 placeholders + a question, ~2.5k tokens), text
lengths jittered, in micro-batches of `--batch-size`, each layout in its own process:
padded (the Trainer's seeded random order, right padding), packed (`--packing`: the same
micro-batches, one row each, no padding) and length-grouped (`--group-by-length`'s order,
padded). Tokens/s counts sample tokens (padding excluded), so layouts compare directly.
On CPU, sdpa with a packed row uses a dense block-diagonal mask (the quadratic attention
cost spans the whole row); flash_attention_2 on a GPU runs the packed row as separate
sequences (varlen), where packing gains the most.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = ("full", "freeze-vision", "lora", "qlora")
LAYOUTS = ("padded", "packed", "length-grouped")


# A tall page: 2 x 4 crops at num_crops 16 = 2,377 placeholder positions, which with
# ~65 text tokens is DocVQA's mean of 2,443 positions per sample.
PAGE_SIZE = (1000, 2000)


def synthetic_batch(config, batch: int, num_crops: int, tokens: int, device: str) -> dict:
    """(batch, tokens) ids with one image's placeholders per sample, loss on the last 16."""
    import torch

    from phi3v_data.tokens import hd_padded_size, num_image_tokens

    width, height = PAGE_SIZE
    image_tokens = num_image_tokens(width, height, num_crops)
    text = max(16, tokens - image_tokens - 1)
    generator = torch.Generator().manual_seed(0)
    # Ordinary text ids: below the special tokens (the tiny vocabulary has 512 ids).
    high = min(1000, config.image_token_id)
    rows = []
    for _ in range(batch):
        body = torch.randint(high // 4, high, (text,), generator=generator)
        rows.append(
            torch.cat([torch.tensor([1]), torch.full((image_tokens,), config.image_token_id), body])
        )
    input_ids = torch.stack(rows)
    labels = torch.full_like(input_ids, -100)
    labels[:, -16:] = input_ids[:, -16:]
    padded_h, padded_w = hd_padded_size(width, height, num_crops)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "labels": labels.to(device),
        "pixel_values": torch.randn(batch, num_crops + 1, 3, 336, 336, generator=generator).to(
            device
        ),
        "image_sizes": torch.tensor([[padded_h, padded_w]] * batch).to(device),
    }


# UCF-101-shaped: 8 frames at num_crops 4 (320x240 -> a 2x2 grid: 757 placeholders each,
# every frame's run followed by <s>) and the 101-class prompt: ~6.5k tokens in all.
UCF_FRAME_GRID, UCF_FRAMES, UCF_TEXT = (2, 2), 8, 440
# DocVQA-shaped: one tall page at num_crops 16 (a 5x3 grid: 2,377 placeholders) and a
# question: ~2.5k tokens.
DOC_PAGE_GRID, DOC_TEXT = (5, 3), 66
TEXT_JITTER = 40  # +- text tokens per sample, so no two samples have the same length


def batching_samples(config, ucf: int, docvqa: int, seed: int = 0) -> list[dict]:
    """Encoded samples (as `Phi3VProcessor.encode` returns them) with random pixels: the
    UCF-shaped ones first, then the DocVQA-shaped ones; loss on the last 5 tokens."""
    import torch

    from phi3v_data.tokens import CROP_SIZE, num_image_tokens_for_padded

    generator = torch.Generator().manual_seed(seed)
    high = min(1000, config.image_token_id)
    samples = []
    for kind in ["ucf"] * ucf + ["docvqa"] * docvqa:
        (rows, cols), images, text = (
            (UCF_FRAME_GRID, UCF_FRAMES, UCF_TEXT)
            if kind == "ucf"
            else (DOC_PAGE_GRID, 1, DOC_TEXT)
        )
        text += int(torch.randint(-TEXT_JITTER, TEXT_JITTER + 1, (1,), generator=generator))
        placeholders = num_image_tokens_for_padded(rows * CROP_SIZE, cols * CROP_SIZE)
        ids: list[int] = []
        for _ in range(images):
            ids += [config.image_token_id] * placeholders + [1]
        ids += torch.randint(high // 4, high, (text,), generator=generator).tolist()
        input_ids = torch.tensor(ids)
        labels = torch.full_like(input_ids, -100)
        labels[-5:] = input_ids[-5:]
        samples.append(
            {
                "kind": kind,
                "input_ids": input_ids,
                "labels": labels,
                "crops": rows * cols + 1,
                "images": images,
                "image_sizes": torch.tensor([[rows * CROP_SIZE, cols * CROP_SIZE]] * images),
            }
        )
    return samples


def batching_orders(lengths: list[int], batch_size: int, seed: int) -> dict[str, list[int]]:
    """Sample order per layout: the seeded random order (padded and packed use the same
    micro-batches) and `--group-by-length`'s."""
    from phi3v_train.packing import length_grouped_indices, random_indices

    shuffled = random_indices(len(lengths), seed)
    grouped = length_grouped_indices(lengths, batch_size, seed)
    return {"padded": shuffled, "packed": shuffled, "length-grouped": grouped}


def _with_pixels(samples: list[dict], generator) -> list[dict]:
    """Random pixel values, zero-padded to the micro-batch's most crops (one tensor)."""
    import torch

    crops = max(s["crops"] for s in samples)
    out = []
    for sample in samples:
        pixels = torch.zeros(sample["images"], crops, 3, 336, 336)
        pixels[:, : sample["crops"]] = torch.randn(
            sample["images"], sample["crops"], 3, 336, 336, generator=generator
        )
        out.append({**sample, "pixel_values": pixels})
    return out


def run_layout(args: argparse.Namespace) -> dict:
    """Train one epoch of the mixed samples in one batch layout; time it after a warm-up."""
    import resource
    from types import SimpleNamespace

    import torch

    from phi3v_train.init_model import phi35_vision_config, tiny_config
    from phi3v_train.modeling_phi3v import build_model
    from phi3v_train.modes import add_lora
    from phi3v_train.packing import pack, padding_stats
    from phi3v_train.processing_phi3v import Phi3VProcessor
    from phi3v_train.train_config import TrainConfig

    layout = args.worker_layout
    on_gpu = args.device == "cuda"
    config = phi35_vision_config() if args.size == "phi-3.5-vision" else tiny_config()
    dtype = torch.bfloat16 if on_gpu and args.mode == "lora" else torch.float32
    model = build_model(config, dtype=dtype, attn_implementation=args.attn, device=args.device)
    model.gradient_checkpointing_enable({"use_reentrant": False})
    if args.mode == "lora":
        train_config = TrainConfig(model=Path("."), output_dir=Path("."), data_dir=Path("."))
        model = add_lora(model, train_config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, betas=(0.9, 0.95), eps=1e-7)
    samples = batching_samples(config, args.ucf, args.docvqa)
    lengths = [s["input_ids"].shape[0] for s in samples]
    order = batching_orders(lengths, args.batch_size, seed=0)[layout]
    chunks = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    padder = SimpleNamespace(pad_token_id=config.text_config.pad_token_id)
    generator = torch.Generator().manual_seed(1)

    def batch_of(indices: list[int]) -> dict:
        encoded = _with_pixels([samples[i] for i in indices], generator)
        batch = pack(encoded) if layout == "packed" else Phi3VProcessor.collate(padder, encoded)
        return {k: v.to(args.device) for k, v in batch.items() if v is not None}

    def step(batch: dict) -> None:
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=on_gpu):
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Warm-up on the shortest micro-batch (lazy initialisation, kernel choice).
    step(batch_of(min(chunks, key=lambda c: sum(lengths[i] for i in c))))
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    elapsed = cpu = 0.0
    for chunk in chunks:
        batch = batch_of(chunk)  # built outside the timed part: the data loader's work
        start, start_cpu = time.perf_counter(), time.process_time()
        step(batch)
        if on_gpu:
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    stats = padding_stats(lengths, order, args.batch_size, 1)
    if on_gpu:
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    padded = layout != "packed"
    return {
        "layout": layout,
        "micro_batches": len(chunks),
        "tokens": stats.real,
        "positions": stats.padded if padded else stats.real,
        "padding_fraction": stats.padding_fraction if padded else 0.0,
        "tokens_per_s": stats.real / elapsed,
        "tokens_per_cpu_s": stats.real / cpu,
        "seconds": elapsed,
        "peak_gib": peak_gib,
    }


def batching_table(args: argparse.Namespace) -> None:
    """One process per layout, then the rich table."""
    from rich.console import Console
    from rich.table import Table

    rows = []
    for layout in LAYOUTS:
        command = [sys.executable, __file__, "--batching", "--worker-layout", layout]
        for flag in ("device", "size", "attn", "mode", "ucf", "docvqa", "batch_size"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            rows.append({"layout": layout, "error": done.stderr.strip().splitlines()[-1]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    on_gpu = args.device == "cuda"
    memory = "peak GPU memory (GiB)" if on_gpu else "peak RSS (GiB)"
    table = Table(
        title=f"phi3v train batch layouts: {args.size} on {args.device}, {args.mode}, attn "
        f"{args.attn}, {args.ucf} UCF-101-shaped (8 frames, num_crops 4, ~6.5k tokens) + "
        f"{args.docvqa} DocVQA-shaped (1 page, num_crops 16, ~2.5k tokens) samples, "
        f"{args.batch_size} per micro-batch, gradient checkpointing"
        + (", bf16" if on_gpu else ", fp32"),
        title_justify="left",
    )
    columns = ("layout", "micro-batches", "sample tokens", "positions computed", "padding")
    # On a CPU shared with other work, the process's CPU time is the steadier measure.
    speeds = ("tokens/s",) if on_gpu else ("tokens/s", "tokens/CPU-s")
    for column in (*columns, *speeds, "time (s)", memory):
        table.add_column(column, justify="left" if column == "layout" else "right")
    base = next((r for r in rows if r.get("layout") == "padded" and "error" not in r), None)
    for row in rows:
        if "error" in row:
            table.add_row(row["layout"], f"[red]{row['error']}", *[""] * (4 + len(speeds)))
            continue
        cells = []
        for key in ("tokens_per_s", "tokens_per_cpu_s")[: len(speeds)]:
            cell = f"{row[key]:,.0f}"
            if base is not None and row is not base:
                cell += f" ({row[key] / base[key]:.2f}x)"
            cells.append(cell)
        table.add_row(
            row["layout"],
            str(row["micro_batches"]),
            f"{row['tokens']:,}",
            f"{row['positions']:,}",
            f"{row['padding_fraction']:.1%}",
            *cells,
            f"{row['seconds']:.1f}",
            f"{row['peak_gib']:.2f}",
        )
    Console(width=160).print(table)


def run_mode(args: argparse.Namespace) -> dict:
    """Build the model for one mode, time `--steps` optimizer steps, report the figures."""
    import resource

    import torch

    from phi3v_train.init_model import phi35_vision_config, tiny_config
    from phi3v_train.modeling_phi3v import build_model
    from phi3v_train.modes import (
        add_lora,
        compute_dtype,
        freeze_vision,
        quantize_4bit,
        trainable_parameters,
    )
    from phi3v_train.train_config import TrainConfig

    mode = args.worker
    on_gpu = args.device == "cuda"
    precision = "bf16" if on_gpu else "fp32"
    config = phi35_vision_config() if args.size == "phi-3.5-vision" else tiny_config()
    train_config = TrainConfig(model=Path("."), output_dir=Path("."), data_dir=Path("."), mode=mode)
    lora = mode in ("lora", "qlora")
    dtype = compute_dtype(precision) if lora else torch.float32
    model = build_model(config, dtype=dtype, attn_implementation=args.attn, device=args.device)
    if mode == "qlora":
        quantize_4bit(model, compute_dtype(precision), args.device)
    if mode == "freeze-vision":
        freeze_vision(model)
    model.gradient_checkpointing_enable({"use_reentrant": False})
    if lora:
        model = add_lora(model, train_config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=1e-5, betas=(0.9, 0.95), eps=1e-7, weight_decay=0.01
    )
    batch = synthetic_batch(config, args.batch_size, args.num_crops, args.tokens, args.device)

    def step() -> None:
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=on_gpu):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if on_gpu:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    samples = args.steps * args.batch_size
    if on_gpu:
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "mode": mode,
        "attn": args.attn,
        "samples_per_s": samples / elapsed,
        "tokens_per_s": samples * batch["input_ids"].shape[1] / elapsed,
        "tokens_per_sample": int(batch["input_ids"].shape[1]),
        "peak_gib": peak_gib,
        "trainable": trainable_parameters(model)["total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "phi-3.5-vision"])
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    parser.add_argument(
        "--attn", default="sdpa", help="sdpa | flash_attention_2 | eager (comma list)"
    )
    parser.add_argument(
        "--num-crops", type=int, default=None, help="default: 16 on a GPU, 4 on CPU"
    )
    parser.add_argument(
        "--tokens", type=int, default=None, help="positions per sample (default 2443 / 900)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="samples per step (default 1 / 2)"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--batching",
        action="store_true",
        help="compare batch layouts (padded, packed, length-grouped) instead of modes",
    )
    parser.add_argument("--mode", default="full", help="--batching: full | lora")
    parser.add_argument("--ucf", type=int, default=2, help="--batching: UCF-101-shaped samples")
    parser.add_argument("--docvqa", type=int, default=4, help="--batching: DocVQA-shaped samples")
    parser.add_argument("--worker-layout", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    on_gpu = args.device == "cuda"
    args.num_crops = args.num_crops or (16 if on_gpu else 4)
    args.tokens = args.tokens or (2443 if on_gpu else 900)
    args.batch_size = args.batch_size or (1 if on_gpu and not args.batching else 2)

    if args.worker is not None:
        print(json.dumps(run_mode(args)))
        return
    if args.worker_layout is not None:
        print(json.dumps(run_layout(args)))
        return
    if args.batching:
        batching_table(args)
        return

    from rich.console import Console
    from rich.table import Table

    rows = []
    for attn in args.attn.split(","):
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--worker", mode, "--attn", attn]
            for flag in ("device", "size", "num_crops", "tokens", "batch_size", "steps", "warmup"):
                command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                rows.append(
                    {"mode": mode, "attn": attn, "error": done.stderr.strip().splitlines()[-1]}
                )
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    memory = "peak GPU memory (GiB)" if on_gpu else "peak RSS (GiB)"
    table = Table(
        title=f"phi3v train throughput: {args.size} on {args.device}, num_crops {args.num_crops}, "
        f"{args.tokens} tokens/sample, batch {args.batch_size}, gradient checkpointing"
        + (", bf16" if on_gpu else ", fp32"),
        title_justify="left",
    )
    for column in ("mode", "attn", "img/s (= samples/s)", "tokens/s", memory, "trainable params"):
        table.add_column(column, justify="left" if column in ("mode", "attn") else "right")
    for row in rows:
        if "error" in row:
            table.add_row(row["mode"], row["attn"], f"[red]{row['error']}", "", "", "")
            continue
        table.add_row(
            row["mode"],
            row["attn"],
            f"{row['samples_per_s']:.2f}",
            f"{row['tokens_per_s']:.0f}",
            f"{row['peak_gib']:.2f}",
            f"{row['trainable']:,}",
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
