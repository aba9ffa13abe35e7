"""`Phi3VProcessor`: records or prompt strings and images -> model inputs, and batches.

The token layout is `phi3v_data.prompt`'s (the official processor's and the reference
recipe's): `<s>` before every text chunk, so also after every image's placeholder run;
each turn encoded on its own, every answer ending `<|end|>\n<|endoftext|>`. Each image tag
`<|image_k|>` becomes `num_image_tokens(image k)` copies of the `<|image|>` token (id
32044; the official processor writes `-k`, which the model treats the same way). Labels
are the target tokens and -100 elsewhere.

`encode(record, images)` (training, validation, eval, predict) and `processor(text=...,
images=...)` (the official processor's call, for code written against it) go through the
same `encode_chunks`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from transformers import BatchFeature, PreTrainedTokenizerFast

from phi3v_data.prompt import Chunk, prompt_chunks, record_chunks, render
from phi3v_data.records import IMAGE_LAYOUTS, Record
from phi3v_data.tokens import check_num_crops, num_image_tokens_for_padded
from phi3v_train.image_processing_phi3v import CLIP_MEAN, CLIP_STD, HDImageTransform

IGNORE_INDEX = -100
IMAGE_TOKEN = "<|image|>"
PREPROCESSOR_CONFIG = "preprocessor_config.json"


class ProcessorError(ValueError):
    """A record that cannot become model inputs (tags, image count)."""


class Phi3VProcessor:
    """Tokenizer + HD image transform of Phi-3.5-vision.

    Build with `Phi3VProcessor.from_pretrained(checkpoint_dir, num_crops=None)`.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast,
        num_crops: int = 4,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        tokens_per_crop: int = 144,
        image_layout: str = "seed",
    ) -> None:
        check_num_crops(num_crops)
        if image_layout not in IMAGE_LAYOUTS:
            raise ValueError(f"image_layout must be one of {IMAGE_LAYOUTS}, got {image_layout!r}")
        self.image_layout = image_layout
        if tokens_per_crop != 144:
            raise ValueError(f"num_img_tokens must be 144 (12x12 per crop), got {tokens_per_crop}")
        self.tokenizer = tokenizer
        self.num_crops = num_crops
        self.image_transform = HDImageTransform(num_crops, tuple(image_mean), tuple(image_std))
        self.image_token_id = self._token_id(IMAGE_TOKEN)
        self.end_token_id = self._token_id("<|end|>")
        self.pad_token_id = self._token_id("<|endoftext|>")
        self.stop_token_ids = [self.end_token_id, self.pad_token_id]
        self.bos_token_id = self._token_id("<s>")

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token} token: not a Phi-3.5-vision tokenizer")
        return token_id

    @classmethod
    def from_pretrained(
        cls, path: str | Path, num_crops: int | None = None, image_layout: str = "seed"
    ) -> Phi3VProcessor:
        """Load tokenizer.json/tokenizer_config.json and preprocessor_config.json of a
        checkpoint directory (no remote code). `num_crops` overrides the file's value."""
        path = Path(path)
        if not (path / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{path} has no tokenizer.json: not a checkpoint directory")
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        settings: dict[str, Any] = {}
        if (path / PREPROCESSOR_CONFIG).is_file():
            settings = json.loads((path / PREPROCESSOR_CONFIG).read_text())
        return cls(
            tokenizer,
            num_crops=num_crops if num_crops is not None else int(settings.get("num_crops", 4)),
            image_mean=settings.get("image_mean", CLIP_MEAN),
            image_std=settings.get("image_std", CLIP_STD),
            tokens_per_crop=int(settings.get("num_img_tokens", 144)),
            image_layout=image_layout,
        )

    def save_pretrained(self, path: str | Path) -> None:
        """Write the tokenizer files and preprocessor_config.json (with this num_crops)."""
        from phi3v_train.init_model import preprocessor_config, write_json

        path = Path(path)
        self.tokenizer.save_pretrained(str(path))
        config = preprocessor_config(self.num_crops)
        config["image_mean"] = self.image_transform.mean.flatten().tolist()
        config["image_std"] = self.image_transform.std.flatten().tolist()
        write_json(path / PREPROCESSOR_CONFIG, config)

    # -- one sample --------------------------------------------------------------------

    def prompt_text(self, record: Record, for_generation: bool = False) -> str:
        """The sample's text with image tags and `<s>` where the tokenizer adds it."""
        return render(record_chunks(record, for_generation, self.image_layout))

    def process_images(
        self, images: Sequence[Image.Image]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(images, crops+1, 3, 336, 336) pixel values and (images, 2) padded sizes."""
        if not images:
            return None, None
        pixels, sizes = zip(*(self.image_transform(image) for image in images), strict=True)
        return torch.stack(pixels), torch.tensor(sizes, dtype=torch.long)

    def encode(
        self, record: Record, images: Sequence[Image.Image], for_generation: bool = False
    ) -> dict[str, torch.Tensor | None]:
        """Model inputs of one record.

        Args:
            record: the sample; image k of the conversation is `images[k-1]`.
            images: the decoded images of `record.images`, in order.
            for_generation: leave out the last answer and end with the generation prompt.

        Returns:
            input_ids (L,), labels (L,) with -100 outside targets, pixel_values
            (n_images, crops+1, 3, 336, 336) or None, image_sizes (n_images, 2) or None.

        Raises:
            ProcessorError: image count differs from the record's, or tags are not 1..n.
        """
        if len(images) != len(record.images):
            raise ProcessorError(
                f"record {record.id!r}: {len(record.images)} image paths but {len(images)} images given"
            )
        chunks = record_chunks(record, for_generation, self.image_layout)
        return self.encode_chunks(chunks, images, f"record {record.id!r}")

    def encode_chunks(
        self, chunks: Sequence[Chunk], images: Sequence[Image.Image], where: str = "prompt"
    ) -> dict[str, torch.Tensor | None]:
        """Model inputs of a chunked sample (see `phi3v_data.prompt`); `where` names it in
        errors."""
        numbers = [chunk.image for chunk in chunks if chunk.image is not None]
        expected = list(range(1, len(images) + 1))
        if numbers != expected:
            raise ProcessorError(
                f"{where}: image tags {numbers} must be exactly {expected} for"
                f" {len(images)} image(s), each once, in order (run `phi3v validate` to find"
                " such records)"
            )
        pixel_values, image_sizes = self.process_images(images)
        sizes = image_sizes.tolist() if image_sizes is not None else []
        counts = [num_image_tokens_for_padded(h, w) for h, w in sizes]
        texts = [chunk.text for chunk in chunks if chunk.image is None and chunk.text]
        encoded = iter(
            self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        )
        input_ids: list[int] = []
        labels: list[int] = []
        for chunk in chunks:
            if chunk.image is not None:
                ids = [self.image_token_id] * counts[chunk.image - 1]
            else:
                ids = [self.bos_token_id] if chunk.bos else []
                ids += next(encoded) if chunk.text else []
            input_ids.extend(ids)
            labels.extend(ids if chunk.is_target else [IGNORE_INDEX] * len(ids))
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "pixel_values": pixel_values,
            "image_sizes": image_sizes,
        }

    def __call__(
        self,
        text: str | Sequence[str],
        images: Image.Image | Sequence[Image.Image] | None = None,
        return_tensors: str | None = "pt",
        padding_side: Literal["right", "left"] | None = None,
    ) -> BatchFeature:
        """The official processor's call: prompt string(s) with `<|image_k|>` tags -> inputs.

        Args:
            text: one prompt, e.g. from `processor.tokenizer.apply_chat_template(messages,
                tokenize=False, add_generation_prompt=True)`, or a list of prompts.
            images: the images of the prompt(s), in order: each prompt's tags are
                numbered from 1 and it takes the next that many images.
            return_tensors: "pt" (the only kind; None means "pt" too).
            padding_side: for a list of prompts; default the tokenizer's.

        Returns:
            input_ids and attention_mask (prompts, L); with images also pixel_values
            (images, crops+1, 3, 336, 336) and image_sizes (images, 2).
        """
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}")
        prompts = [text] if isinstance(text, str) else list(text)
        pool = [images] if isinstance(images, Image.Image) else list(images or [])
        encoded, used = [], 0
        for index, prompt in enumerate(prompts):
            chunks = prompt_chunks(prompt)
            count = sum(chunk.image is not None for chunk in chunks)
            where = "prompt" if isinstance(text, str) else f"prompt {index}"
            encoded.append(self.encode_chunks(chunks, pool[used : used + count], where))
            used += count
        if used != len(pool):
            raise ProcessorError(f"{len(pool)} images given but the prompts have {used} image tags")
        batch = self.collate(encoded, padding_side or self.tokenizer.padding_side)
        del batch["labels"]
        return BatchFeature({k: v for k, v in batch.items() if v is not None})

    # -- batches -----------------------------------------------------------------------

    def collate(
        self,
        encoded: Sequence[dict[str, torch.Tensor | None]],
        padding_side: Literal["right", "left"] = "right",
    ) -> dict[str, torch.Tensor | None]:
        """Pad a list of `encode` outputs into a batch.

        Right padding is for training, left padding for generation. Images of all samples
        are concatenated in sample order, which is the order of their placeholders in the
        flattened batch; text-only samples contribute none.
        """
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if not encoded:
            raise ValueError("collate needs at least one sample")
        length = max(sample["input_ids"].shape[0] for sample in encoded)
        batch = len(encoded)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for row, sample in enumerate(encoded):
            size = sample["input_ids"].shape[0]
            span = slice(0, size) if padding_side == "right" else slice(length - size, length)
            input_ids[row, span] = sample["input_ids"]
            attention_mask[row, span] = 1
            if sample.get("labels") is not None:
                labels[row, span] = sample["labels"]
        pixels = [s["pixel_values"] for s in encoded if s.get("pixel_values") is not None]
        sizes = [s["image_sizes"] for s in encoded if s.get("image_sizes") is not None]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values": torch.cat(pixels) if pixels else None,
            "image_sizes": torch.cat(sizes) if sizes else None,
        }

    # -- text out ----------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        ids = [i for i in ids if i != self.image_token_id]
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(
        self, sequences: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True
    ) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in sequences]
