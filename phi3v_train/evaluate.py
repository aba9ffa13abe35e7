"""`phi3v eval`: generate answers for a split, then score them (accuracy or ANLS).

Loading accepts a full checkpoint (official layout) or a PEFT adapter folder written by
`phi3v train --mode lora|qlora` (its base model is read from `adapter_config.json`).
Generation is batched with left padding and sharded across processes under `torchrun`;
rank 0 gathers the predictions and writes `predictions.jsonl` and `metrics.json`
atomically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3v_train.data import Sample, UnreadableImage, gold_answers, load_images
from phi3v_train.metrics import metric_for_source, score

logger = logging.getLogger(__name__)

PREDICTIONS_NAME = "predictions.jsonl"
METRICS_NAME = "metrics.json"


class ModelLoadError(ValueError):
    """A `--model` folder that is neither a checkpoint nor an adapter over a reachable base."""


def load_for_inference(
    model_dir: Path,
    *,
    base_model: Path | None = None,
    dtype_name: str = "fp32",
    attn: str = "sdpa",
    device: str = "cpu",
    num_crops: int | None = None,
):
    """(model in eval mode, processor) from a checkpoint or an adapter folder."""
    import torch

    from phi3v_train.modeling import Phi3VForCausalLM
    from phi3v_train.modes import compute_dtype, is_adapter_dir
    from phi3v_train.processing import Phi3VProcessor

    dtype = compute_dtype(dtype_name)
    if is_adapter_dir(model_dir):
        from peft import PeftModel

        base = base_model or adapter_base(model_dir)
        model = Phi3VForCausalLM.from_pretrained(base, dtype=dtype, attn_implementation=attn)
        model = PeftModel.from_pretrained(model, str(model_dir))
        processor_dir = model_dir if (model_dir / "tokenizer.json").is_file() else base
    elif (model_dir / "config.json").is_file():
        model = Phi3VForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
        processor_dir = model_dir
    else:
        raise ModelLoadError(
            f"{model_dir}: no config.json (a checkpoint) and no adapter_config.json (a LoRA "
            "adapter); pass the output folder of `phi3v train` or `phi3v init-model`"
        )
    model.to(torch.device(device))
    model.eval()
    return model, Phi3VProcessor.from_pretrained(processor_dir, num_crops=num_crops)


def adapter_base(adapter_dir: Path) -> Path:
    """The base checkpoint a PEFT adapter was trained on."""
    data = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = data.get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").is_file():
        raise ModelLoadError(
            f"{adapter_dir}: the adapter's base model {base!r} is not a local checkpoint "
            "folder; pass --base-model DIR"
        )
    return Path(base)


@dataclass(frozen=True, slots=True)
class Prediction:
    id: str
    source: str
    prediction: str | None
    answers: list[str]
    metric: str
    score: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "source": self.source,
            "prediction": self.prediction,
            "answers": self.answers,
            "metric": self.metric,
            "score": self.score,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def generate_answers(
    model,
    processor,
    samples: Sequence[Sample],
    *,
    metric: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> list[Prediction]:
    """Greedy answers for the last turn of each sample, scored against its gold answers."""
    import torch

    predictions: list[Prediction] = []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            encoded, usable = [], []
            for sample in chunk:
                try:
                    images = load_images(sample)
                except UnreadableImage as exc:
                    predictions.append(_failed(sample, metric, str(exc)))
                    continue
                encoded.append(processor.encode(sample.record, images, for_generation=True))
                usable.append(sample)
            if encoded:
                batch = processor.collate(encoded, padding_side="left")
                inputs = {
                    k: v.to(device) for k, v in batch.items() if v is not None and k != "labels"
                }
                with torch.no_grad():
                    output = model.generate(
                        **inputs, max_new_tokens=max_new_tokens, do_sample=False
                    )
                new_tokens = output[:, inputs["input_ids"].shape[1] :]
                for sample, ids in zip(usable, new_tokens, strict=True):
                    text = processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
                    predictions.append(_scored(sample, metric, text))
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        model.train(was_training)
    return predictions


def _metric_of(sample: Sample, metric: str) -> str:
    return metric_for_source(sample.record.source) if metric == "auto" else metric


def _scored(sample: Sample, metric: str, text: str) -> Prediction:
    chosen = _metric_of(sample, metric)
    golds = gold_answers(sample.record)
    return Prediction(
        sample.record.id, sample.record.source, text, golds, chosen, score(chosen, text, golds)
    )


def _failed(sample: Sample, metric: str, error: str) -> Prediction:
    chosen = _metric_of(sample, metric)
    return Prediction(
        sample.record.id,
        sample.record.source,
        None,
        gold_answers(sample.record),
        chosen,
        None,
        error,
    )


def summarize(predictions: Sequence[Prediction]) -> dict[str, Any]:
    """Mean score per metric over scored predictions; counts of scored and failed ones."""
    by_metric: dict[str, list[float]] = {}
    for prediction in predictions:
        if prediction.score is not None:
            by_metric.setdefault(prediction.metric, []).append(prediction.score)
    summary: dict[str, Any] = {name: sum(v) / len(v) for name, v in sorted(by_metric.items())}
    summary["scored"] = sum(len(v) for v in by_metric.values())
    summary["failed"] = sum(1 for p in predictions if p.score is None)
    return summary


def gather_predictions(local: list[Prediction]) -> list[Prediction]:
    """All ranks' predictions on every rank (identity without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    gathered: list[list[Prediction] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return [prediction for part in gathered for prediction in (part or [])]


def shard(samples: Sequence[Sample], rank: int, world: int) -> list[Sample]:
    """Every `world`-th sample from `rank`: balanced shards, original order restorable."""
    return list(samples[rank::world])


def restore_order(predictions: list[Prediction], samples: Sequence[Sample]) -> list[Prediction]:
    """Sort gathered predictions back into data order (ids may repeat: keep each once)."""
    order: dict[str, int] = {}
    for index, sample in enumerate(samples):
        order.setdefault(sample.record.id, index)
    return sorted(predictions, key=lambda p: order.get(p.id, len(order)))


def write_results(
    out_dir: Path, predictions: Sequence[Prediction], metrics: dict[str, Any]
) -> None:
    from phi3v_data.jsonl import atomic_write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in predictions)
    atomic_write_bytes(out_dir / PREDICTIONS_NAME, lines.encode())
    atomic_write_bytes(out_dir / METRICS_NAME, (json.dumps(metrics, indent=2) + "\n").encode())
