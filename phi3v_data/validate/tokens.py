"""The token budget: text tokens of a record plus image tokens from each image's size.

Text tokens come from the chunks of `phi3v_data.prompt.record_chunks`, the layout the
processor encodes (so training and this count cannot drift apart): exact with a
tokenizer.json, otherwise estimated from bytes. Image tokens come from the image headers
through the HD-transform arithmetic of `phi3v_data.tokens`.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

from phi3v_data.prompt import record_chunks
from phi3v_data.records import Record
from phi3v_data.tokens import num_image_tokens

# The chat control tokens: text holding one breaks the prompt (`special_token_in_text`).
CHAT_TOKEN_RE = re.compile(r"<\|(?:user|assistant|system|end|endoftext|placeholder\d+)\|>|</?s>")
# Estimated text tokens = bytes / this. Calibrated against the Phi-3.5-vision tokenizer:
# 4.5 bytes/token on English prose, 3.3-4.4 on short VQA questions, 3.1 on technical
# text; 3.6 errs towards counting too many tokens, the safe side of a budget.
ESTIMATE_BYTES_PER_TOKEN = 3.6


class TokenCounter:
    """Text tokens of records: exact with a tokenizer.json, otherwise estimated from bytes.

    Counts the text chunks of `phi3v_data.prompt.record_chunks`, the layout the processor
    encodes: each tokenized on its own, plus one `<s>` where the chunk has it (image
    placeholder positions are added separately).
    """

    def __init__(self, tokenizer_dir: Path | None, image_layout: str = "seed"):
        self.tokenizer = None
        self.image_layout = image_layout
        if tokenizer_dir is not None:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))

    def text_tokens(self, records: list[Record]) -> list[int]:
        texts_per_record, bos_per_record = [], []
        for record in records:
            chunks = [c for c in record_chunks(record, False, self.image_layout) if c.image is None]
            texts_per_record.append([c.text for c in chunks if c.text])
            bos_per_record.append(sum(c.bos for c in chunks))
        if self.tokenizer is None:
            lengths = (sum(estimate_tokens(t) for t in texts) for texts in texts_per_record)
            return [bos + n for bos, n in zip(bos_per_record, lengths, strict=True)]
        flat = [text for texts in texts_per_record for text in texts]
        encoded = iter(
            len(encoding.ids)
            for encoding in self.tokenizer.encode_batch(flat, add_special_tokens=False)
        )
        return [
            bos + sum(next(encoded) for _ in texts)
            for bos, texts in zip(bos_per_record, texts_per_record, strict=True)
        ]


def estimate_tokens(text: str) -> int:
    """Control tokens count 1; a newline 2 (the tokenizer writes it as a byte token, after a
    control token also a separate space); the rest by bytes."""
    specials = len(CHAT_TOKEN_RE.findall(text))
    rest = CHAT_TOKEN_RE.sub("", text) if specials else text
    newlines = rest.count("\n")
    size = len(rest) if rest.isascii() else len(rest.encode("utf-8"))
    return specials + 2 * newlines + math.ceil((size - newlines) / ESTIMATE_BYTES_PER_TOKEN)


@functools.lru_cache(maxsize=4096)
def image_tokens(width: int, height: int, num_crops: int) -> int:
    return num_image_tokens(width, height, num_crops)
