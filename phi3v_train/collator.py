"""Batching: right-padded (or packed) training batches and the `--max-length` policy.

The processor pads and builds attention masks (`processor.collate`); `--packing` puts a
micro-batch's samples into one row instead (`phi3v_train.packing.pack`). This module adds
the policy for samples longer than `--max-length`: the text is cut at the limit only
when the cut leaves every image placeholder whole and keeps at least one target token
(`truncate`), otherwise the sample is dropped; `--truncation drop` always drops.
"""

from __future__ import annotations

from typing import Any


def fit_to_max_length(
    encoded: dict[str, Any], max_length: int, image_token_id: int, policy: str = "truncate"
) -> tuple[dict[str, Any] | None, str]:
    """(sample, outcome) with outcome `fits`, `truncated` or `dropped_too_long`.

    A cut may never pass through an image's placeholder run: the model needs all of an
    image's positions to place its features.
    """
    input_ids = encoded["input_ids"]
    if len(input_ids) <= max_length:
        return encoded, "fits"
    if policy == "drop":
        return None, "dropped_too_long"
    # Any placeholder at or after the cut means an image would lose positions (a cut
    # through a run, or a whole image beyond it): the model could not place its features.
    image_after_cut = bool((input_ids[max_length:] == image_token_id).any())
    has_target = bool((encoded["labels"][:max_length] != -100).any())
    if image_after_cut or not has_target:
        return None, "dropped_too_long"
    cut = dict(encoded)
    cut["input_ids"] = input_ids[:max_length]
    cut["labels"] = encoded["labels"][:max_length]
    return cut, "truncated"


class TrainCollator:
    """`DataLoader` collate function: encoded samples -> right-padded batch, or with
    `packing` one row of the concatenated samples with per-sample position ids."""

    def __init__(self, processor: Any, padding_side: str = "right", packing: bool = False) -> None:
        self.processor = processor
        self.padding_side = padding_side
        self.packing = packing

    def __call__(self, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        if self.packing:
            from phi3v_train.packing import pack

            batch = pack(encoded)
        else:
            batch = self.processor.collate(encoded, padding_side=self.padding_side)
        # The model takes no `None` tensors through DDP/DeepSpeed wrappers gracefully.
        return {key: value for key, value in batch.items() if value is not None}
