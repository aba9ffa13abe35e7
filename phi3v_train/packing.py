"""Packed micro-batches, length-grouped sampling, and the padding arithmetic of both.

Packing (`phi3v train --packing`) concatenates the samples of a micro-batch into one row
with no padding. It changes no batch composition, only the layout, so a packed run takes
the same optimizer steps as a padded one:

- `position_ids` restart at 0 for each sample, and no `attention_mask` is passed: the
  Phi-3 decoder then finds the sample boundaries in the position ids. Under `sdpa` and
  `eager` transformers builds a block-diagonal causal mask from them (its packed-sequence
  mask: a token sees only the earlier tokens of its own sample, exactly the keys it sees
  in a padded row); under `flash_attention_2` the varlen kernel takes the boundaries
  (cu_seqlens) from the same position ids. Rotary embeddings see the same positions as
  in a padded row. (A KV cache turns the packed-mask detection off: the trainer runs
  packed batches with `use_cache=False`, which training does anyway.)
- Images are concatenated in sample order, which is the order of their placeholders in
  the packed row, so each image's features land in its own sample.
- The loss shifts labels by one inside the row: the label at each sample's first token
  would be predicted from the previous sample's last token. That label is set to -100.
  In a padded row it is the first column, which the shift drops anyway (and which is a
  prompt token, never a target), so the target tokens, and with them
  `num_items_in_batch` (the Trainer counts `labels[..., 1:] != -100`), are the same.

`LengthGroupedSampler` (`--group-by-length`) orders samples so that each micro-batch
holds samples of similar length; it is a pure function of (seed, epoch), so every rank
draws the same order and a resumed run continues it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100
# Samples sorted together by `--group-by-length`: this many micro-batches at a time.
MEGABATCH_MICRO_BATCHES = 64


def pack(encoded: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor | None]:
    """One packed row from `processor.encode` outputs (see the module docstring).

    Returns input_ids, labels and position_ids of shape (1, total tokens), and
    pixel_values / image_sizes (images in sample order) or None; no attention_mask.
    """
    if not encoded:
        raise ValueError("pack needs at least one sample")
    ids, labels, positions = [], [], []
    for sample in encoded:
        size = sample["input_ids"].shape[0]
        ids.append(sample["input_ids"])
        sample_labels = sample.get("labels")
        if sample_labels is None:
            sample_labels = torch.full((size,), IGNORE_INDEX, dtype=torch.long)
        else:
            sample_labels = sample_labels.clone()
        sample_labels[:1] = IGNORE_INDEX  # predicted from the previous sample's last token
        labels.append(sample_labels)
        positions.append(torch.arange(size, dtype=torch.long))
    pixels = [s["pixel_values"] for s in encoded if s.get("pixel_values") is not None]
    sizes = [s["image_sizes"] for s in encoded if s.get("image_sizes") is not None]
    return {
        "input_ids": torch.cat(ids).unsqueeze(0),
        "labels": torch.cat(labels).unsqueeze(0),
        "position_ids": torch.cat(positions).unsqueeze(0),
        "pixel_values": torch.cat(pixels) if pixels else None,
        "image_sizes": torch.cat(sizes) if sizes else None,
    }


# -- lengths ---------------------------------------------------------------------------


def sample_lengths(
    samples: Sequence[Any], processor: Any, max_length: int | None = None
) -> list[int]:
    """Token length of each training sample (text + image placeholders), as the processor
    encodes it, from the records and the image headers (no pixel is decoded).

    Capped at `max_length` (a longer sample is truncated or replaced at fetch time). A
    sample with an unreadable image counts its text only (it is skipped at fetch time).
    """
    from PIL import Image

    from phi3v_data.paths import PathProblem, resolve_image_path
    from phi3v_data.prompt import record_chunks
    from phi3v_data.tokens import num_image_tokens

    texts_per_sample, bos_per_sample = [], []
    for sample in samples:
        chunks = record_chunks(sample.record, False, processor.image_layout)
        texts = [c.text for c in chunks if c.image is None and c.text]
        texts_per_sample.append(texts)
        bos_per_sample.append(sum(bool(c.bos) for c in chunks if c.image is None))
    flat = [text for texts in texts_per_sample for text in texts]
    encoded = processor.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    counts = iter(len(ids) for ids in encoded)
    sizes: dict[tuple[str, str], tuple[int, int] | None] = {}
    lengths = []
    for sample, texts, bos in zip(samples, texts_per_sample, bos_per_sample, strict=True):
        length = bos + sum(next(counts) for _ in texts)
        root = str(sample.image_root)
        for rel in sample.record.images:
            key = (root, rel)
            if key not in sizes:
                sizes[key] = None
                resolved = resolve_image_path(sample.image_root, rel)
                if not isinstance(resolved, PathProblem):
                    try:
                        with Image.open(resolved) as image:
                            sizes[key] = image.size
                    except (OSError, ValueError, Image.DecompressionBombError):
                        pass
            if sizes[key] is not None:
                length += num_image_tokens(*sizes[key], processor.num_crops)
        lengths.append(min(length, max_length) if max_length is not None else length)
    return lengths


# -- length-grouped order --------------------------------------------------------------


def length_grouped_indices(
    lengths: Sequence[int],
    micro_batch: int,
    seed: int,
    epoch: int = 0,
    megabatch_micro_batches: int = MEGABATCH_MICRO_BATCHES,
) -> list[int]:
    """Sample order for one epoch: a seeded shuffle, cut into megabatches of
    `megabatch_micro_batches` micro-batches, each sorted by length (longest first) and cut
    into micro-batches of `micro_batch`, whose order is shuffled again.

    A pure function of its arguments. Consecutive runs of `micro_batch` indices are the
    micro-batches (as the DataLoader cuts them); a last, short micro-batch stays last.
    """
    if micro_batch < 1:
        raise ValueError("micro_batch must be at least 1")
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = micro_batch * megabatch_micro_batches
    result: list[int] = []
    for start in range(0, len(order), size):
        mega = sorted(order[start : start + size], key=lambda i: -lengths[i])
        chunks = [mega[i : i + micro_batch] for i in range(0, len(mega), micro_batch)]
        short = chunks.pop() if len(chunks[-1]) < micro_batch else None
        shuffled = torch.randperm(len(chunks), generator=generator).tolist()
        for index in shuffled:
            result.extend(chunks[index])
        if short is not None:
            result.extend(short)
    return result


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    """`length_grouped_indices` as a sampler: the order depends only on the seed and the
    epoch (`set_epoch`), so every rank of a multi-process run draws the same order, and
    a run resumed mid-epoch skips into the same order it was killed in."""

    def __init__(self, lengths: Sequence[int], micro_batch: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.micro_batch = micro_batch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(length_grouped_indices(self.lengths, self.micro_batch, self.seed, self.epoch))


def random_indices(count: int, seed: int, epoch: int = 0) -> list[int]:
    """A seeded shuffle (the shape of the Trainer's random order, for estimates)."""
    generator = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(count, generator=generator).tolist()


# -- padding arithmetic ----------------------------------------------------------------


@dataclass(frozen=True)
class PaddingStats:
    """Tokens of one epoch's micro-batches in a given sample order.

    `real`: sample tokens; `padded`: positions computed with right padding (micro-batch
    size x its longest sample); `steps`: optimizer steps.
    """

    real: int
    padded: int
    steps: int

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.real / self.padded if self.padded else 0.0

    @property
    def tokens_per_step(self) -> float:
        return self.real / self.steps if self.steps else 0.0

    @property
    def padded_tokens_per_step(self) -> float:
        return self.padded / self.steps if self.steps else 0.0


def padding_stats(
    lengths: Sequence[int], order: Sequence[int], micro_batch: int, micro_batches_per_step: int
) -> PaddingStats:
    """Real and padded tokens of the micro-batches that `order` makes."""
    real = padded = batches = 0
    for start in range(0, len(order), micro_batch):
        chunk = [lengths[i] for i in order[start : start + micro_batch]]
        real += sum(chunk)
        padded += len(chunk) * max(chunk)
        batches += 1
    return PaddingStats(real, padded, math.ceil(batches / max(1, micro_batches_per_step)))


def packing_report(
    lengths: Sequence[int],
    micro_batch: int,
    micro_batches_per_step: int,
    seed: int,
    group_by_length: bool,
) -> dict[str, Any]:
    """Tokens per step and padding fractions for the pre-flight summary and
    `train_summary.json`: one epoch in the run's order (a seeded estimate of the
    Trainer's random order, or the length-grouped order), padded and packed."""
    shuffled = padding_stats(
        lengths, random_indices(len(lengths), seed), micro_batch, micro_batches_per_step
    )
    grouped = padding_stats(
        lengths,
        length_grouped_indices(lengths, micro_batch, seed),
        micro_batch,
        micro_batches_per_step,
    )
    used = grouped if group_by_length else shuffled
    return {
        "samples": len(lengths),
        "tokens_per_step": round(used.tokens_per_step, 1),
        "padded_tokens_per_step": round(used.padded_tokens_per_step, 1),
        "padding_fraction": round(used.padding_fraction, 4),
        "packed_padding_fraction": 0.0,
        "random_order_padding_fraction": round(shuffled.padding_fraction, 4),
        "length_grouped_padding_fraction": round(grouped.padding_fraction, 4),
    }
