"""Prompt templates: the reference recipe's wording, chosen per record without a global RNG.

A template is the whole user text with `{field}` placeholders (DocVQA `{question}`,
memes `{text}`, NLVR2 `{caption}`); image tags are added later (`tagged_user_texts`).

Choice, in order of precedence:
- `--prompt TEXT`: your own template, used for every record;
- `--prompt-index K`: always the K-th built-in template (0-based). The memes and NLVR2
  lists are those of HuggingFaceM4/the_cauldron (where the reference reads them), in its
  order, so K is the Cauldron's K-th;
- otherwise (the default) a per-record choice from `sha256(seed, record key)`, with
  `--prompt-seed` (default 0). The reference recipe draws a template at random for each
  sample; a seeded per-record draw gives the same mix of templates while staying
  identical for any worker count, order or resume.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import typer

PromptSeedOption = Annotated[
    int,
    typer.Option(
        "--prompt-seed",
        help="Seed of the per-record template (and answer) choice. The same seed gives the "
        "same choices for any --workers and after a resume.",
    ),
]
PromptIndexOption = Annotated[
    int | None,
    typer.Option(
        "--prompt-index",
        min=0,
        help="Use the K-th built-in template (0-based, as listed above; for memes and NLVR2 "
        "the K-th of HuggingFaceM4/the_cauldron's list) for every record instead of a "
        "seeded choice.",
        show_default=False,
    ),
]
PromptOption = Annotated[
    str | None,
    typer.Option(
        "--prompt",
        help="Your own user text for every record (a Python format string; see the "
        "fields above). Use \\n for a line break.",
        show_default=False,
    ),
]


@dataclass(frozen=True, slots=True)
class PromptChoice:
    """How templates are chosen; stored in the converter options (and so in the manifest)."""

    seed: int = 0
    index: int | None = None
    template: str | None = None


def seeded_index(seed: int, key: str, count: int) -> int:
    """A deterministic draw in [0, count) that depends only on `seed` and `key`."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def choose_template(templates: Sequence[str], key: str, choice: PromptChoice) -> str:
    if choice.template is not None:
        return choice.template
    if choice.index is not None:
        return templates[choice.index]
    return templates[seeded_index(choice.seed, key, len(templates))]


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def checked_choice(
    seed: int, index: int | None, template: str | None, templates: Sequence[str], fields: set[str]
) -> PromptChoice:
    """Build a `PromptChoice` from CLI values, or raise `typer.BadParameter` saying what to fix."""
    if index is not None and index >= len(templates):
        raise typer.BadParameter(
            f"there are {len(templates)} built-in templates: choose 0..{len(templates) - 1}",
            param_hint="--prompt-index",
        )
    if template is not None:
        template = template.replace("\\n", "\n")
        try:
            unknown = template_fields(template) - fields
        except ValueError as exc:
            raise typer.BadParameter(f"not a valid template: {exc}", param_hint="--prompt") from exc
        if unknown:
            raise typer.BadParameter(
                f"unknown field(s) {', '.join(sorted(unknown))}; this source offers "
                f"{', '.join('{' + name + '}' for name in sorted(fields))} (write {{{{ }}}} for a brace)",
                param_hint="--prompt",
            )
    return PromptChoice(seed=seed, index=index, template=template)


def numbered(templates: Sequence[str]) -> str:
    """The templates as a numbered list for `--help` texts."""
    return "\n\n".join(f"{i}: {text!r}" for i, text in enumerate(templates))
