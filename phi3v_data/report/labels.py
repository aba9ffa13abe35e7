"""A record's class label (the label plot and the card's pill), read from the record alone.

One rule for every source: the label is what `meta` says it is. A converter that knows a
record's class writes it to `meta.label` (each classification source does); a record
without one has no label, so free-form answers never pass for classes and the report
needs no list of sources.
"""

from __future__ import annotations

from typing import Any

# `meta` keys that hold a record's class, in order of preference.
LABEL_KEYS = ("label", "class", "class_name", "category")
SHORT_ANSWER = 32  # characters: longer answers are free text, not a way of saying a class


def meta_label(meta: Any) -> str | None:
    """The first of `LABEL_KEYS` in `meta` holding a string, an integer or a boolean."""
    if not isinstance(meta, dict):
        return None
    for key in LABEL_KEYS:
        found = meta.get(key)
        if isinstance(found, bool):
            return str(found).lower()
        if isinstance(found, (str, int)) and str(found):
            return str(found)
    return None


def single_short_answer(value: dict[str, Any]) -> str | None:
    """The answer of a one-turn record when it is short and on one line, without its final
    period ("No." -> "No"); None otherwise."""
    turns = value.get("conversations")
    if not (isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], dict)):
        return None
    text = turns[0].get("assistant")
    if isinstance(text, str) and 0 < len(text.strip()) <= SHORT_ANSWER and "\n" not in text:
        return text.strip().rstrip(".")
    return None


def record_label(value: dict[str, Any]) -> str | None:
    """The class of a record: `meta.label` (or `class`, `class_name`, `category`), else None.

    A video's class, True/False of an image pair, 0/1 of a meme: whatever the converter
    wrote. When the record has a single short answer that says it differently ("No." for
    label 0), the label shows both, "0 · No", so the plot also reveals answers that
    disagree with their labels.
    """
    label = meta_label(value.get("meta"))
    if label is None:
        return None
    answer = single_short_answer(value)
    if answer and answer.lower() != label.lower():
        return f"{label} · {answer}"
    return label
