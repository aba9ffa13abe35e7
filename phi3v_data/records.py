"""Typed records mirroring `schemas/conversation.schema.json`.

The JSON Schema file is the single source of truth; these dataclasses are the typed view
that converters build and the trainer reads. `tests/phi3v_data/test_records.py` proves
that both agree on required fields, optional fields and types.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

# `<|image_k|>`: k is the 1-based image number across the whole conversation.
IMAGE_TAG_RE = re.compile(r"<\|image_(\d+)\|>")


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message with its images and the assistant's answer."""

    user: str
    assistant: str
    images: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"images": list(self.images), "user": self.user, "assistant": self.assistant}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        return cls(user=data["user"], assistant=data["assistant"], images=tuple(data["images"]))


@dataclass(frozen=True, slots=True)
class Record:
    """One training or evaluation sample: an id, its source and one or more turns."""

    id: str
    source: str
    conversations: tuple[Turn, ...]
    meta: dict[str, Any] | None = field(default=None, compare=True)

    @property
    def images(self) -> list[str]:
        """All image paths of the conversation in order (image k is `images[k-1]`)."""
        return [path for turn in self.conversations for path in turn.images]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "conversations": [turn.to_dict() for turn in self.conversations],
        }
        if self.meta is not None:
            data["meta"] = self.meta
        return data

    def to_json_line(self) -> bytes:
        """Compact, deterministic JSON (keys in schema order) plus a newline."""
        return orjson.dumps(self.to_dict()) + b"\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Build from an already schema-valid mapping (see `phi3v_data.schema`)."""
        return cls(
            id=data["id"],
            source=data["source"],
            conversations=tuple(Turn.from_dict(turn) for turn in data["conversations"]),
            meta=data.get("meta"),
        )


def image_tag(number: int) -> str:
    return f"<|image_{number}|>"


IMAGE_LAYOUTS = ("seed", "per-line")
IMAGE_LAYOUT_HELP = (
    "Where a turn's images go when its text has no <|image_k|> tags: 'seed' (the reference"
    " recipe: all tags, then a newline, then the text) or 'per-line' (one tag per line, as"
    " in the model card's examples)."
)


def tagged_user_texts(turns: tuple[Turn, ...] | list[Turn], layout: str = "seed") -> Iterator[str]:
    """Each turn's user text with explicit image tags.

    The rule (enforced by `phi3v validate`): a turn's user text either has no tags, in
    which case its images are put first; or it has exactly the tags of its own images,
    numbered across the conversation, each once, in increasing order. This function
    assumes valid input and only adds the missing tags, laid out as `layout` says:
    `seed` (the reference recipe's training scripts): all tags, nothing between them, then
    a newline (`"<|image_1|><|image_2|>\\n" + user`); `per-line` (the model card's
    examples): one tag per line (`"<|image_1|>\\n<|image_2|>\\n" + user`).
    """
    if layout not in IMAGE_LAYOUTS:
        raise ValueError(f"image layout must be one of {', '.join(IMAGE_LAYOUTS)}, got {layout!r}")
    between = "" if layout == "seed" else "\n"
    next_number = 1
    for turn in turns:
        count = len(turn.images)
        if count and not IMAGE_TAG_RE.search(turn.user):
            tags = between.join(image_tag(next_number + i) for i in range(count))
            yield tags + "\n" + turn.user
        else:
            yield turn.user
        next_number += count


def check_image_tags(turns: list[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """Check the tag rule on raw turns; return (turn index, message) for each violation."""
    problems: list[tuple[int, str]] = []
    next_number = 1
    for index, turn in enumerate(turns):
        count = len(turn["images"])
        found = [int(m.group(1)) for m in IMAGE_TAG_RE.finditer(turn["user"])]
        expected = list(range(next_number, next_number + count))
        if found and found != expected:
            want = ", ".join(image_tag(n) for n in expected) or "no tags (the turn has no images)"
            have = ", ".join(image_tag(n) for n in found)
            problems.append(
                (index, f"tags {have} do not match this turn's images: expected {want}")
            )
        next_number += count
    return problems
