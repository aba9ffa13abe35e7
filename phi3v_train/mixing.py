"""Several training data sets in one run (`phi3v train -d A -d B`, `--mix A=0.7,B=0.3`).

Each `-d` folder (its training split) and each positional JSONL file is one *part*. Its
`--mix` key is its record source (the folder's manifest `source`, or the one source of its
records) or its name (the folder's or the file's name without `.jsonl`). Weights need not
add up to 1; without `--mix` each part weighs its size, so every sample is seen once an
epoch. An epoch is as many samples as all parts hold together: a part weighted above its
size repeats its samples (in a fresh order each pass), one weighted below it sees only
some of them each epoch (the next epoch continues where it stopped).

The order (`mixed_indices`) is a pure function of (sizes, weights, step size, seed,
epoch): every rank draws the same one and a resumed run continues it exactly.

- Each optimizer step (`--batch-size` consecutive indices, as the DataLoader and the
  process sharding cut them) holds each part's share of the step up to rounding: the
  part of each position comes from systematic sampling (part k's m-th sample sits at
  (m + u_k) / count_k of the epoch, u_k a seeded offset), so any run of positions holds
  each part's share within one or two samples.
- Within a step the samples are shuffled, or with `--group-by-length` sorted by length
  into micro-batches whose order is shuffled: length grouping never moves a sample to
  another step, so it cannot undo the mix. `--packing` only changes the batch layout.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MixError(ValueError):
    """A `--mix` that does not fit the run's data; the message says what would."""


@dataclass(frozen=True)
class DataPart:
    """One training data set of a run: a folder's split or one JSONL file."""

    name: str  # the folder's name, or the file's name without .jsonl
    files: tuple[Path, ...]
    source: str | None = None  # the one record source of its samples, if only one
    size: int = 0

    def mix_keys(self) -> list[str]:
        return [self.name] + ([self.source] if self.source and self.source != self.name else [])


def parse_mix(text: str) -> dict[str, float]:
    """`"A=0.7,B=0.3"` -> {"A": 0.7, "B": 0.3}.

    Raises:
        MixError: not `KEY=WEIGHT` pairs, a repeated key, a weight that is not positive.
    """
    weights: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not key or not math.isfinite(weight):
            raise MixError(f"--mix {text!r}: write KEY=WEIGHT pairs, e.g. docvqa=0.7,ucf101=0.3")
        if weight <= 0:
            raise MixError(f"--mix: the weight of {key!r} must be positive (drop its -d instead)")
        if key in weights:
            raise MixError(f"--mix: {key!r} is given twice")
        weights[key] = weight
    if not weights:
        raise MixError("--mix is empty: write KEY=WEIGHT pairs, e.g. docvqa=0.7,ucf101=0.3")
    return weights


def part_weights(parts: Sequence[DataPart], mix: str | None) -> list[float]:
    """Each part's share of the samples (summing to 1): by `--mix`, else by size.

    Raises:
        MixError: a key that names no part (with the closest one), an ambiguous source,
            a part without a weight.
    """
    if not mix:
        total = sum(part.size for part in parts)
        return [part.size / total for part in parts]
    weights = parse_mix(mix)
    owners: dict[str, list[int]] = {}
    for index, part in enumerate(parts):
        for key in part.mix_keys():
            owners.setdefault(key, []).append(index)
    chosen: dict[int, float] = {}
    for key, weight in weights.items():
        matches = owners.get(key, [])
        if not matches:
            close = difflib.get_close_matches(key, list(owners), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise MixError(
                f"--mix: {key!r} is not one of this run's data sets "
                f"({', '.join(sorted(owners))}){hint}"
            )
        if len(matches) > 1:
            names = ", ".join(parts[i].name for i in matches)
            raise MixError(
                f"--mix: {key!r} is the source of several data sets ({names}): use their names"
            )
        if matches[0] in chosen:
            raise MixError(f"--mix: {parts[matches[0]].name!r} is weighted twice")
        chosen[matches[0]] = weight
    missing = [part.name for index, part in enumerate(parts) if index not in chosen]
    if missing:
        raise MixError(f"--mix gives no weight to {', '.join(missing)}: weight every data set")
    total = sum(chosen.values())
    return [chosen[index] / total for index in range(len(parts))]


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split by `weights` into whole numbers (largest remainders), summing to it."""
    exact = [total * w for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _generator(*numbers: int):
    import torch

    seed = 0
    for number in numbers:
        seed = (seed * 1_000_003 + number) % (2**62)
    return torch.Generator().manual_seed(seed)


def mixed_indices(
    sizes: Sequence[int],
    weights: Sequence[float],
    step_size: int,
    seed: int,
    epoch: int = 0,
    lengths: Sequence[int] | None = None,
    micro_batch: int = 1,
) -> list[int]:
    """One epoch's order over the concatenated parts (see the module docstring).

    `sizes`: samples per part (indices run over the parts in order); `weights`: shares
    summing to 1; `step_size`: samples per optimizer step; `lengths`: token length per
    sample, given for length-grouped micro-batches of `micro_batch` within each step.
    """
    import torch

    if step_size < 1 or micro_batch < 1:
        raise ValueError("step_size and micro_batch must be at least 1")
    total = sum(sizes)
    counts = apportion(total, weights)
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]
    generator = _generator(seed, epoch)
    shifts = torch.rand(len(sizes), generator=generator, dtype=torch.float64).tolist()
    slots = sorted(
        ((m + shifts[k]) / counts[k], k) for k in range(len(sizes)) for m in range(counts[k])
    )
    # Each part's stream continues across epochs: pass `cycle` is a fresh seeded order.
    drawn = [epoch * count for count in counts]
    orders: dict[tuple[int, int], list[int]] = {}
    sequence = []
    for _, k in slots:
        cycle, within = divmod(drawn[k], sizes[k])
        if (k, cycle) not in orders:
            orders[(k, cycle)] = torch.randperm(
                sizes[k], generator=_generator(seed, k, cycle)
            ).tolist()
        sequence.append(offsets[k] + orders[(k, cycle)][within])
        drawn[k] += 1
    result: list[int] = []
    for start in range(0, len(sequence), step_size):
        step = sequence[start : start + step_size]
        if lengths is None:
            result += [step[i] for i in torch.randperm(len(step), generator=generator).tolist()]
            continue
        step.sort(key=lambda i: -lengths[i])
        chunks = [step[i : i + micro_batch] for i in range(0, len(step), micro_batch)]
        short = chunks.pop() if len(chunks[-1]) < micro_batch else None
        for index in torch.randperm(len(chunks), generator=generator).tolist():
            result += chunks[index]
        if short is not None:
            result += short
    return result


class MixSampler:
    """`mixed_indices` as a sampler, a function of the seed and the epoch (`set_epoch`).

    A plain iterable with a length (what the DataLoader takes), so that this module loads
    without torch (the command layer checks `--mix` before torch is imported).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        step_size: int,
        seed: int,
        lengths: Sequence[int] | None = None,
        micro_batch: int = 1,
    ) -> None:
        self.sizes = list(sizes)
        self.weights = list(weights)
        self.step_size = step_size
        self.seed = seed
        self.lengths = list(lengths) if lengths is not None else None
        self.micro_batch = micro_batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.sizes)

    def __iter__(self) -> Iterator[int]:
        return iter(
            mixed_indices(
                self.sizes,
                self.weights,
                self.step_size,
                self.seed,
                self.epoch,
                self.lengths,
                self.micro_batch,
            )
        )


def mix_report(
    parts: Sequence[DataPart], weights: Sequence[float], step_size: int
) -> list[dict[str, Any]]:
    """Per part: samples, share of each step's samples, samples per step, epochs' worth
    of its own data seen per run epoch (for the pre-flight summary and the summary file)."""
    total = sum(part.size for part in parts)
    rows = []
    for part, weight in zip(parts, weights, strict=True):
        rows.append(
            {
                "name": part.name,
                "source": part.source,
                "samples": part.size,
                "share": round(weight, 4),
                "per_step": round(weight * step_size, 2),
                "passes_per_epoch": round(weight * total / part.size, 3) if part.size else 0.0,
            }
        )
    return rows


# -- the run's data sets ---------------------------------------------------------------


def plan_parts(
    data_dirs: Sequence[Path], split: str, train_files: Sequence[Path]
) -> list[DataPart]:
    """The run's data sets, before loading: each folder's `split`, then each JSONL file."""
    from phi3v_train.data import split_files

    planned: list[DataPart] = []
    for folder in data_dirs:
        planned.append(DataPart(folder.resolve().name, tuple(split_files(folder, split))))
    for path in train_files:
        planned.append(DataPart(path.name.removesuffix(".jsonl"), (path,)))
    seen: dict[str, int] = {}
    named = []
    for part in planned:  # two folders of one name: data, data-2
        seen[part.name] = seen.get(part.name, 0) + 1
        name = part.name if seen[part.name] == 1 else f"{part.name}-{seen[part.name]}"
        named.append(DataPart(name, part.files))
    return named


def load_parts(planned: Sequence[DataPart], image_root: Path | None) -> tuple[list, list[DataPart]]:
    """(all samples, parts in order) with each part's size and single record source."""
    from phi3v_train.data import load_samples

    samples: list = []
    parts = []
    for part in planned:
        loaded = load_samples(part.files, image_root)
        sources = {sample.record.source for sample in loaded}
        source = next(iter(sources)) if len(sources) == 1 else None
        parts.append(DataPart(part.name, part.files, source, len(loaded)))
        samples += loaded
    return samples, parts


def eval_data_files(
    data_dirs: Sequence[Path], eval_split: str | None, eval_files: Sequence[Path]
) -> list[Path]:
    """`--eval-files`, else `--eval-split` of each folder that has it (of the one folder,
    which must have it; of several, at least one must)."""
    from phi3v_train.data import DataError, has_split, split_files

    if eval_files:
        return list(eval_files)
    if eval_split is None or not data_dirs:
        return []
    if len(data_dirs) == 1:
        return split_files(data_dirs[0], eval_split)
    having = [folder for folder in data_dirs if has_split(folder, eval_split)]
    if not having:
        names = ", ".join(str(folder) for folder in data_dirs)
        raise DataError(f"--eval-split {eval_split}: none of {names} has this split")
    return [path for folder in having for path in split_files(folder, eval_split)]


def interleave_by_source(samples: Sequence[Any]) -> list[Any]:
    """Samples taken in turn from each record source (each source keeps its order): the
    first N cover every source evenly (`--eval-max-samples`)."""
    groups: dict[str, list[Any]] = {}
    for sample in samples:
        groups.setdefault(sample.record.source, []).append(sample)
    result: list[Any] = []
    for index in range(max((len(g) for g in groups.values()), default=0)):
        result += [group[index] for group in groups.values() if index < len(group)]
    return result
