"""The text layout of a training sample, shared by the processor and the validator.

A record becomes, per turn, a prompt segment
`<|user|>\\n{user with image tags}<|end|>\\n<|assistant|>\\n` (the checkpoint's chat
template with a generation prompt) and a target segment `{assistant}<|end|>\\n`; the
last target also ends with `<|endoftext|>`, as the reference recipe trains it. Only
target segments carry loss. The tokenizer adds `<s>` once at the start.
"""

from __future__ import annotations

from dataclasses import dataclass

from phi3v_data.records import Record, tagged_user_texts

END = "<|end|>"
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    is_target: bool


def user_prompt(tagged_user: str) -> str:
    return f"<|user|>\n{tagged_user}{END}\n<|assistant|>\n"


def build_segments(record: Record, for_generation: bool = False) -> list[Segment]:
    """Prompt and target segments of `record`.

    With `for_generation`, the last turn's answer is left out, so the text ends with the
    generation prompt and the model writes the answer.
    """
    segments: list[Segment] = []
    turns = record.conversations
    for index, (turn, tagged) in enumerate(zip(turns, tagged_user_texts(turns), strict=True)):
        segments.append(Segment(user_prompt(tagged), is_target=False))
        last = index == len(turns) - 1
        if last and for_generation:
            break
        target = turn.assistant + END + "\n" + (END_OF_TEXT if last else "")
        segments.append(Segment(target, is_target=True))
    return segments
