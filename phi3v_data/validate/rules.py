"""The record rules: what the schema cannot express, checked on a schema-valid record.

A rule is one small function, listed with the codes it reports; it returns None when the
record passes, else its `Finding`s. Turn rules run on each turn in order
(`check(turn, t, context)`), then record rules once (`check(record, images, context)`,
with the record's number of images), so a
record's problems come turn by turn, rule by rule, then those of the record rules.

Adding a rule: write the function, append `Rule(codes, function)` to `TURN_RULES` or
`RECORD_RULES`, add each code with its severity and hint to `codes.CODES`, and plant one
instance in the sample with defects (`phi3v_data/sample_data.py`).

Every record passes through every rule, so a rule's common case (nothing found) is a few
cheap string tests; the exact and slower check runs only when those see something.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from phi3v_data.paths import lexical_path_problem
from phi3v_data.records import check_image_tags
from phi3v_data.validate.shape import RecordShape, TurnShape
from phi3v_data.validate.tokens import CHAT_TOKEN_RE

_FOREIGN_TAG_RE = re.compile(r"<image(?:_?\d+)?>", re.IGNORECASE)


class Finding(NamedTuple):
    code: str
    field: str | None
    message: str


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What the rules of one file need to know beyond the record."""

    allow_empty_assistant: bool
    max_images: int


class Rule(NamedTuple):
    codes: tuple[str, ...]  # every code `check` can report (each one in codes.CODES)
    check: Callable[..., list[Finding] | None]  # (turn, t, context) / (record, images, context)


# Turn rules: check(turn, its index, context).


def user_blank(turn: TurnShape, t: int, context: RuleContext) -> list[Finding] | None:
    if not turn.user.isspace():
        return None
    return [Finding("user_blank", f"conversations[{t}].user", "user message is only whitespace")]


def assistant_empty(turn: TurnShape, t: int, context: RuleContext) -> list[Finding] | None:
    answer = turn.assistant
    if (answer and not answer.isspace()) or context.allow_empty_assistant:
        return None
    message = "assistant answer is empty in training data"
    return [Finding("assistant_empty", f"conversations[{t}].assistant", message)]


def text_tags(turn: TurnShape, t: int, context: RuleContext) -> list[Finding] | None:
    """Chat control tokens and other formats' image tags, in the user text, then the answer."""
    user, assistant = turn.user, turn.assistant
    if "<" not in user and "<" not in assistant:
        return None
    found: list[Finding] = []
    if "<" in user:
        _text_tags(found, f"conversations[{t}].user", user)
    if "<" in assistant:
        _text_tags(found, f"conversations[{t}].assistant", assistant)
    return found or None


def _text_tags(found: list[Finding], field_path: str, text: str) -> None:
    chat = CHAT_TOKEN_RE.search(text)
    if chat:
        message = f"text contains the control token {chat.group()!r}"
        found.append(Finding("special_token_in_text", field_path, message))
    foreign = _FOREIGN_TAG_RE.search(text)
    if foreign:
        message = f"text contains {foreign.group()!r}, which Phi-3.5-vision reads as plain text"
        found.append(Finding("foreign_image_tag", field_path, message))


def image_paths(turn: TurnShape, t: int, context: RuleContext) -> list[Finding] | None:
    """Each image path relative, normalised, inside the root (`paths.lexical_path_problem`).

    First a quick screen of the turn's paths joined with '/': every problem shows there as
    a NUL, a backslash, a colon (a drive letter), a leading or trailing '/', '//' (an empty
    part or an absolute path), './' or a trailing '.' (a '.' or '..' part). Only a turn that
    fails the screen (also one with a name such as 'a:b.jpg') gets the exact check.
    """
    images = turn.images
    if not images:
        return None
    joined = "/".join(images)
    if (
        joined
        and joined[0] != "/"
        and joined[-1] not in "/."
        and "\\" not in joined
        and "\x00" not in joined
        and ":" not in joined
        and "//" not in joined
        and "./" not in joined
    ):
        return None
    found = []
    for i, rel in enumerate(images):
        problem = lexical_path_problem(rel)
        if problem is not None:
            found.append(Finding(problem.code, f"conversations[{t}].images[{i}]", problem.message))
    return found or None


# Record rules: check(record, its number of images, context), after the turn rules.


def image_tags(record: RecordShape, images: int, context: RuleContext) -> list[Finding] | None:
    """Either no <|image_k|> tags in a turn or exactly its own images' tags, in order."""
    turns = record.conversations
    for turn in turns:
        if "<|image_" in turn.user:
            break
    else:
        return None
    as_mappings: list[Any] = [{"images": turn.images, "user": turn.user} for turn in turns]
    return [
        Finding("tags_mismatch", f"conversations[{t}].user", message)
        for t, message in check_image_tags(as_mappings)
    ] or None


def too_many_images(record: RecordShape, images: int, context: RuleContext) -> list[Finding] | None:
    if images <= context.max_images:
        return None
    message = f"record has {images} images, over the limit of {context.max_images}"
    return [Finding("too_many_images", "conversations", message)]


TURN_RULES: list[Rule] = [
    Rule(("user_blank",), user_blank),
    Rule(("assistant_empty",), assistant_empty),
    Rule(("special_token_in_text", "foreign_image_tag"), text_tags),
    Rule(
        ("path_invalid", "path_absolute", "path_not_normalized", "path_escapes_root"), image_paths
    ),
]
RECORD_RULES: list[Rule] = [
    Rule(("tags_mismatch",), image_tags),
    Rule(("too_many_images",), too_many_images),
]
_TURN_CHECKS = tuple(rule.check for rule in TURN_RULES)
_RECORD_CHECKS = tuple(rule.check for rule in RECORD_RULES)


def check_record(record: RecordShape, context: RuleContext) -> tuple[list[Finding] | None, int]:
    """Every rule on a schema-valid record: its findings in order (None when it passes) and
    its number of images (counted on the way, for the record rules and the stats)."""
    findings: list[Finding] | None = None
    images = 0
    for t, turn in enumerate(record.conversations):
        images += len(turn.images)
        for check in _TURN_CHECKS:
            found = check(turn, t, context)
            if found is not None:
                findings = found if findings is None else findings + found
    for check in _RECORD_CHECKS:
        found = check(record, images, context)
        if found is not None:
            findings = found if findings is None else findings + found
    return findings, images
