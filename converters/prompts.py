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

from phi3v_data.flags import FlagError, flag


def line_breaks(text: str) -> str:
    """A template as typed on the command line: `\\n` is a line break."""
    return text.replace("\\n", "\n")


@dataclass(frozen=True, slots=True)
class PromptChoice:
    """How templates are chosen; stored in the converter options (and so in the manifest).

    Its fields are the `--prompt-seed`, `--prompt-index` and `--prompt` flags of the
    sources whose options hold one; `checked` tells whether they fit a source's templates.
    """

    seed: int = flag(
        0,
        "--prompt-seed",
        help="Seed of the per-record template (and answer) choice. The same seed gives the "
        "same choices for any --workers and after a resume.",
    )
    index: int | None = flag(
        None,
        "--prompt-index",
        min=0,
        help="Use the K-th built-in template (0-based, as listed above; for memes and NLVR2 "
        "the K-th of HuggingFaceM4/the_cauldron's list) for every record instead of a "
        "seeded choice.",
        show_default=False,
    )
    template: str | None = flag(
        None,
        "--prompt",
        help="Your own user text for every record (a Python format string; see the "
        "fields above). Use \\n for a line break.",
        show_default=False,
        parse=line_breaks,
    )

    def checked(self, templates: Sequence[str], fields: set[str]) -> PromptChoice:
        """This choice, or a `FlagError` saying what to fix: an index past `templates`, a
        template that does not parse or names a field other than `fields`."""
        if self.index is not None and self.index >= len(templates):
            raise FlagError(
                "--prompt-index",
                f"there are {len(templates)} built-in templates: choose 0..{len(templates) - 1}",
            )
        if self.template is not None:
            try:
                unknown = template_fields(self.template) - fields
            except ValueError as exc:
                raise FlagError("--prompt", f"not a valid template: {exc}") from exc
            if unknown:
                raise FlagError(
                    "--prompt",
                    f"unknown field(s) {', '.join(sorted(unknown))}; this source offers "
                    f"{', '.join('{' + name + '}' for name in sorted(fields))} (write {{{{ }}}} "
                    "for a brace)",
                )
        return self


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


def numbered(templates: Sequence[str]) -> str:
    """The templates as a numbered list for `--help` texts."""
    return "\n\n".join(f"{i}: {text!r}" for i, text in enumerate(templates))
