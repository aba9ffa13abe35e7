"""The token layout of a sample, shared by the processor, the validator and the report.

This is the one place that decides which text is tokenized where, so training, the
validator's token budget, evaluation and prediction cannot drift apart. It reproduces the
reference recipe and the official processor:

- A prompt string is split on `<|image_k|>` tags; every text chunk, even an empty one
  between two adjacent tags, is tokenized on its own with `<s>` before it. So `<s>`
  starts the prompt and follows every image's placeholder run (`prompt_chunks`).
- A record is encoded turn by turn: the turn's prompt
  `<|user|>\\n{user with image tags}<|end|>\\n<|assistant|>\\n` (the checkpoint's chat
  template with a generation prompt), then its target
  `{assistant}<|end|>\\n<|endoftext|>`. Every later turn therefore starts with `<s>`, and
  every answer ends with `<|endoftext|>`. Only targets carry loss.

torch-free: `phi3v validate` counts tokens with it without importing the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from phi3v_data.records import IMAGE_TAG_RE, Record, tagged_user_texts

END = "<|end|>"
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a sample's token layout.

    A text chunk is tokenized on its own without special tokens, after `<s>` when `bos`;
    an image chunk (`image` = its 1-based number in the sample) becomes that image's
    placeholder run.
    """

    text: str = ""
    image: int | None = None
    bos: bool = False
    is_target: bool = False


def user_prompt(tagged_user: str) -> str:
    return f"<|user|>\n{tagged_user}{END}\n<|assistant|>\n"


def target_text(assistant: str) -> str:
    return f"{assistant}{END}\n{END_OF_TEXT}"


def prompt_chunks(prompt: str) -> list[Chunk]:
    """A prompt string with `<|image_k|>` tags, chunked as the official processor does."""
    parts = IMAGE_TAG_RE.split(prompt)  # text, number, text, number, ..., text
    chunks = [Chunk(parts[0], bos=True)]
    for number, text in zip(parts[1::2], parts[2::2], strict=True):
        chunks += [Chunk(image=int(number)), Chunk(text, bos=True)]
    return chunks


def record_chunks(
    record: Record, for_generation: bool = False, image_layout: str = "seed"
) -> list[Chunk]:
    """The chunks of `record`, turn by turn.

    With `for_generation`, the last turn's answer is left out, so the layout ends with the
    generation prompt and the model writes the answer. `image_layout` places the tags of
    turns that have none (see `tagged_user_texts`).
    """
    chunks: list[Chunk] = []
    turns = record.conversations
    tagged = tagged_user_texts(turns, image_layout)
    for index, (turn, user) in enumerate(zip(turns, tagged, strict=True)):
        chunks += prompt_chunks(user_prompt(user))
        if for_generation and index == len(turns) - 1:
            break
        chunks.append(Chunk(target_text(turn.assistant), is_target=True))
    return chunks


def render(chunks: list[Chunk]) -> str:
    """The chunks as text: tags for images, `<s>` where the tokenizer adds it."""
    return "".join(
        f"<|image_{c.image}|>" if c.image is not None else ("<s>" if c.bos else "") + c.text
        for c in chunks
    )
