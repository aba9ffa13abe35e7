"""`phi3v eval`: generate answers for a split, then score them (accuracy or ANLS).

Loading accepts a full checkpoint (official layout) or a PEFT adapter folder written by
`phi3v train --mode lora|qlora` (its base model is read from `adapter_config.json`).
Generation is batched with left padding and sharded across processes under `torchrun`;
rank 0 gathers the predictions and writes `predictions.jsonl` and `metrics.json`
atomically.

The generation limit defaults to the longest gold answer of the evaluated samples in the
model's tokens plus `ANSWER_MARGIN_TOKENS` (room for `<|end|>` and for tokenization in
context); predictions that reach the limit without a stop token are flagged `truncated`
and counted in the metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3v_train.data import Sample, UnreadableImage, gold_answers, load_images
from phi3v_train.eval_config import EvalConfig
from phi3v_train.metrics import metric_for_source, score

PREDICTIONS_NAME = "predictions.jsonl"
METRICS_NAME = "metrics.json"
ANSWER_MARGIN_TOKENS = 8
FALLBACK_MAX_NEW_TOKENS = 64  # when no evaluated sample has a gold answer


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

    from phi3v_train.modeling_phi3v import Phi3VForCausalLM
    from phi3v_train.modes import compute_dtype, is_adapter_dir
    from phi3v_train.processing_phi3v import Phi3VProcessor

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
    processor = Phi3VProcessor.from_pretrained(
        processor_dir, num_crops=num_crops, image_layout=trained_image_layout(model_dir)
    )
    return model, processor


def trained_image_layout(model_dir: Path) -> str:
    """The image-tag layout a `phi3v train` run used (its run_config.json), else the default:
    evaluation and prediction must lay out untagged images as training did."""
    from phi3v_train.train_config import RUN_CONFIG_NAME

    try:
        return str(json.loads((model_dir / RUN_CONFIG_NAME).read_text())["image_layout"])
    except (OSError, ValueError, KeyError, TypeError):
        return "seed"


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
    truncated: bool = False  # generation reached max_new_tokens without a stop token

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
        if self.truncated:
            data["truncated"] = True
        return data


@dataclass(frozen=True, slots=True)
class TokenLimit:
    """The generation limit of an eval run and where it came from."""

    max_new_tokens: int
    longest_answer_tokens: int | None = None  # None: given explicitly

    @property
    def origin(self) -> str:
        if self.longest_answer_tokens is None:
            return "--max-new-tokens"
        if self.longest_answer_tokens == 0:
            return f"no gold answers: fixed {self.max_new_tokens}"
        return f"longest gold answer ({self.longest_answer_tokens} tokens) + {ANSWER_MARGIN_TOKENS}"


def longest_answer_tokens(samples: Sequence[Sample], tokenizer) -> int:
    """Length in tokens (no special tokens) of the longest gold answer of `samples`."""
    answers = sorted({a for s in samples for a in gold_answers(s.record) if a.strip()})
    if not answers:
        return 0
    return max(len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"])


def token_limit(samples: Sequence[Sample], tokenizer, explicit: int | None = None) -> TokenLimit:
    """`explicit` when given; else the longest gold answer + `ANSWER_MARGIN_TOKENS`
    (`FALLBACK_MAX_NEW_TOKENS` when no sample has a gold answer)."""
    if explicit is not None:
        return TokenLimit(explicit)
    longest = longest_answer_tokens(samples, tokenizer)
    if longest == 0:
        return TokenLimit(FALLBACK_MAX_NEW_TOKENS, 0)
    return TokenLimit(longest + ANSWER_MARGIN_TOKENS, longest)


def hit_limit(ids: Sequence[int], max_new_tokens: int, stop_ids: set[int]) -> bool:
    """Whether one row of generated ids (padding included) stopped at the limit rather than
    at a stop token: all `max_new_tokens` steps used and the last id is not a stop token
    (a row that ended early is padded with `<|endoftext|>`, itself a stop token)."""
    return len(ids) >= max_new_tokens and int(ids[-1]) not in stop_ids


def generate_answers(
    model,
    processor,
    samples: Sequence[Sample],
    *,
    metric: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 64,
    on_batch: Callable[[int], None] | None = None,
    synced_gpus: bool = False,
) -> list[Prediction]:
    """Greedy answers for the last turn of each sample, scored against its gold answers.

    A prediction whose generation used all `max_new_tokens` steps without emitting a stop
    token (`<|end|>`, `<|endoftext|>`) has `truncated=True` (see `count_truncated`).
    `synced_gpus`: every rank keeps stepping until all ranks finish (DeepSpeed ZeRO-3,
    whose forward passes gather weights from all ranks); shards must be equally long.
    """
    import torch

    predictions: list[Prediction] = []
    device = next(model.parameters()).device
    stop_ids = set(processor.stop_token_ids)
    stop_ids.update(getattr(getattr(model, "config", None), "stop_token_ids", None) or ())
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
                    extra = {"synced_gpus": True} if synced_gpus else {}
                    output = model.generate(
                        **inputs, max_new_tokens=max_new_tokens, do_sample=False, **extra
                    )
                new_tokens = output[:, inputs["input_ids"].shape[1] :]
                for sample, ids in zip(usable, new_tokens, strict=True):
                    text = processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
                    cut = hit_limit(ids.tolist(), max_new_tokens, stop_ids)
                    predictions.append(_scored(sample, metric, text, cut))
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        model.train(was_training)
    return predictions


def _metric_of(sample: Sample, metric: str) -> str:
    return metric_for_source(sample.record.source) if metric == "auto" else metric


def _scored(sample: Sample, metric: str, text: str, truncated: bool = False) -> Prediction:
    """A scored prediction; unscored (score None) when the record has no answer (an
    inference-only split such as DocVQA test)."""
    chosen = _metric_of(sample, metric)
    golds = gold_answers(sample.record)
    value = score(chosen, text, golds) if any(g.strip() for g in golds) else None
    return Prediction(
        sample.record.id, sample.record.source, text, golds, chosen, value, truncated=truncated
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
    """Mean score per metric over scored predictions (`accuracy`, `anls`); per record
    source (`accuracy/ucf101`, `anls/docvqa`: each source's metric) and `mean`, the mean
    of the per-source values (each source counts once, whatever its size); counts of
    scored, unscored (no gold answer) and failed (unreadable image) ones."""
    by_metric: dict[str, list[float]] = {}
    by_source: dict[str, list[float]] = {}
    for prediction in predictions:
        if prediction.score is not None:
            by_metric.setdefault(prediction.metric, []).append(prediction.score)
            key = f"{prediction.metric}/{prediction.source}"
            by_source.setdefault(key, []).append(prediction.score)
    summary: dict[str, Any] = {name: sum(v) / len(v) for name, v in sorted(by_metric.items())}
    per_source = {name: sum(v) / len(v) for name, v in sorted(by_source.items())}
    summary.update(per_source)
    if per_source:
        summary["mean"] = sum(per_source.values()) / len(per_source)
    summary["scored"] = sum(len(v) for v in by_metric.values())
    summary["unscored"] = sum(1 for p in predictions if p.score is None and p.error is None)
    summary["failed"] = sum(1 for p in predictions if p.error is not None)
    return summary


def count_truncated(predictions: Sequence[Prediction]) -> int:
    """Predictions cut at the max-new-tokens limit (no stop token generated)."""
    return sum(1 for p in predictions if p.truncated)


def majority_baseline(predictions: Sequence[Prediction]) -> float | None:
    """Accuracy of always giving the most common gold answer: the chance level a model must
    beat on a classification split (None without accuracy-scored predictions)."""
    from collections import Counter

    from phi3v_train.metrics import normalize_for_accuracy

    golds = [
        normalize_for_accuracy(p.answers[0])
        for p in predictions
        if p.metric == "accuracy" and p.score is not None and p.answers
    ]
    if not golds:
        return None
    return Counter(golds).most_common(1)[0][1] / len(golds)


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


def run_evaluation(
    config: EvalConfig, on_batch: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Generate and score on this process's shard; rank 0 writes the results.

    Returns the metrics (on every rank), with `max_new_tokens` (the limit used),
    `max_new_tokens_from` (how it was chosen) and `truncated` (predictions cut at it).
    """
    import torch

    from phi3v_train.data import load_samples, split_files
    from phi3v_train.distributed import is_main_process, rank, shutdown, world_size
    from phi3v_train.modes import resolve_precision

    files = list(config.files) or split_files(config.data_dir, config.split)
    samples = load_samples(files, config.image_root)
    if config.max_samples is not None:
        samples = samples[: config.max_samples]
    if world_size() > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    try:
        model, processor = load_for_inference(
            config.model,
            base_model=config.base_model,
            dtype_name=resolve_precision(config.precision),
            attn=config.attn,
            device=device,
            num_crops=config.num_crops,
        )
        limit = token_limit(samples, processor.tokenizer, config.max_new_tokens)
        local = generate_answers(
            model,
            processor,
            shard(samples, rank(), world_size()),
            metric=config.metric,
            batch_size=config.batch_size,
            max_new_tokens=limit.max_new_tokens,
            on_batch=on_batch,
        )
        predictions = restore_order(gather_predictions(local), samples)
        baseline = majority_baseline(predictions)
        metrics = {
            **summarize(predictions),
            **({"majority_baseline": baseline} if baseline is not None else {}),
            "truncated": count_truncated(predictions),
            "max_new_tokens": limit.max_new_tokens,
            "max_new_tokens_from": limit.origin,
            "samples": len(samples),
            "model": str(config.model),
            "files": [str(f) for f in files],
            "metric_choice": config.metric,
        }
        if is_main_process():
            write_results(config.out, predictions, metrics)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()
    return metrics
