"""From annotation rows to a plan, for sources with one record per row and a yes/no label.

Shared by Hateful Memes and NLVR2: ids must be unique (a repeated id is skipped as
`duplicate_id`, the first one wins), labels are parsed strictly (`bad_label`), and a
split where no row has a label (a test file) becomes an `inference_only` split whose
records have empty answers; in a labelled split, a row without one is `no_label`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from converters.converter import Plan, Skip, WorkItem

# Values meaning "no label here" (HF copies of test splits use -1).
_UNLABELLED = (None, -1, "", "-1")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


@dataclass(frozen=True)
class Row:
    """One usable annotation row: where it is, its original id, its label, its payload."""

    where: str
    id: str
    label: bool | None
    payload: Any


class BadLabel(ValueError):
    pass


def parse_label(value: Any, names: Sequence[str] | None = None) -> bool | None:
    """A yes/no label from 0/1, true/false (any case, bool or string) or a ClassLabel index.

    Returns None for "no label" (missing, null, -1); raises `BadLabel` for anything else.
    """
    if isinstance(value, bool):
        return value
    if value in _UNLABELLED:
        return None
    # A ClassLabel whose names say yes/no ("False", "True") is read by name; any other
    # names ("not-hateful", "hateful") keep the index, 1 meaning yes.
    if (
        names is not None
        and isinstance(value, int)
        and 0 <= value < len(names)
        and names[value].strip().lower() in _TRUE | _FALSE
    ):
        value = names[value]
    if isinstance(value, int | str):
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise BadLabel(f"label {value!r} is not one of 0/1, True/False")


def yes_no(label: bool | None) -> str:
    """The reference recipe's answers; an empty answer for an unlabelled (inference) row."""
    if label is None:
        return ""
    return "Yes." if label else "No."


def plan_rows(splits: Mapping[str, Iterable[Row | Skip]]) -> Plan:
    """One work item per row, in file order; duplicates and label problems become skips."""
    items: dict[str, list[WorkItem]] = {}
    skips: list[Skip] = []
    inference_only: set[str] = set()
    for split, entries in splits.items():
        rows: list[Row] = []
        seen: set[str] = set()
        for entry in entries:
            if isinstance(entry, Skip):
                skips.append(entry)
            elif entry.id in seen:
                skips.append(
                    Skip(split, entry.where, "duplicate_id", f"id {entry.id} appears again")
                )
            else:
                seen.add(entry.id)
                rows.append(entry)
        labelled = any(row.label is not None for row in rows)
        if not labelled:
            inference_only.add(split)
        kept = []
        for row in rows:
            if labelled and row.label is None:
                skips.append(Skip(split, row.where, "no_label", "no label in a labelled split"))
            else:
                kept.append(row)
        items[split] = [WorkItem(split, i, row.where, row) for i, row in enumerate(kept)]
    return Plan(splits=items, skips=skips, inference_only=frozenset(inference_only))
