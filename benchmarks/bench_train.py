"""Training throughput and peak memory per mode (full, freeze-vision, LoRA, QLoRA).

    python benchmarks/bench_train.py                                  # CPU, tiny model
    python benchmarks/bench_train.py --device cuda --size phi-3.5-vision --num-crops 16 \\
        --modes full,freeze-vision,lora,qlora --attn sdpa            # GPU, the seed's table

One optimizer step = forward + backward + AdamW step (the recipe's settings: gradient
checkpointing on; bf16 autocast on a GPU) on synthetic batches shaped like the data:
one image per sample with its exact number of placeholder positions for `--num-crops`,
plus text, `--tokens` positions per sample in total (DocVQA's mean is ~2,443 at num_crops
16). Each mode runs in its own process, so peak memory (GPU: max allocated; CPU: max RSS)
belongs to that mode alone. Weights are random: throughput does not depend on them.
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


def run_mode(args: argparse.Namespace) -> dict:
    """Build the model for one mode, time `--steps` optimizer steps, report the figures."""
    import resource

    import torch

    from phi3v_train.builders import phi35_vision_config, tiny_config
    from phi3v_train.checkpoint import build_model
    from phi3v_train.config import TrainConfig
    from phi3v_train.modes import (
        add_lora,
        compute_dtype,
        freeze_vision,
        quantize_4bit,
        trainable_parameters,
    )

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
    args = parser.parse_args()
    on_gpu = args.device == "cuda"
    args.num_crops = args.num_crops or (16 if on_gpu else 4)
    args.tokens = args.tokens or (2443 if on_gpu else 900)
    args.batch_size = args.batch_size or (1 if on_gpu else 2)

    if args.worker is not None:
        print(json.dumps(run_mode(args)))
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
