"""The record rules: what the schema cannot express, checked on a schema-valid record.

A rule is one small function, listed with the codes it reports; it returns None when the
record passes, else its `Finding`s. Turn rules run on each turn in order
(`check(turn, t, context)`), then record rules once (`check(record, images, context)`,
with the record's number of images), so a record's problems come turn by turn, rule by
rule, then those of the record rules.

Adding a rule: write the function, append `Rule(codes, function)` to `TURN_RULES` or
`RECORD_RULES`, add each code with its severity and hint to `codes.CODES`, and plant one
instance in the sample with defects (`phi3v_data/sample_data.py`).

Speed: every record meets every rule, yet most records are plain: every turn's user text
and answer are neither blank nor hold a '<', its image paths pass the quick screen of
`paths_look_clean`, and the record has at most `max_images` images. A
plain record skips the rules marked `quiet_when_plain`, which promise to find nothing
there (tests/phi3v_data/test_validate_fuzz.py holds each marked rule to it). A rule is
unmarked by default and then runs on every record: a new rule needs nothing else.
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
    quiet_when_plain: bool = False  # finds nothing in a plain record, which then skips it


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
    """Each image path relative, normalised, inside the root (`paths.lexical_path_problem`);
    only a turn whose paths fail the quick screen is checked path by path."""
    images = turn.images
    if not images or paths_look_clean(images):
        return None
    found = []
    for i, rel in enumerate(images):
        problem = lexical_path_problem(rel)
        if problem is not None:
            found.append(Finding(problem.code, f"conversations[{t}].images[{i}]", problem.message))
    return found or None


def paths_look_clean(images: list[str]) -> bool:
    """A quick screen: True only when `lexical_path_problem` passes every path.

    Joined with '/', each problem shows as a NUL, a backslash, a colon (a drive letter), a
    leading '/', a trailing '/' or '.', or a '/' or '.' next to another (an empty, '.' or
    '..' part; an absolute path). False also for some good names ('a:b.jpg', '.cache/a.jpg').
    """
    joined = "/".join(images)
    return bool(
        joined  # (the schema already refuses empty paths)
        and joined[0] != "/"
        and joined[-1] not in "/."
        and "\\" not in joined
        and "\x00" not in joined
        and ":" not in joined
        and "//" not in joined.replace(".", "/")
    )


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
    Rule(("user_blank",), user_blank, quiet_when_plain=True),
    Rule(("assistant_empty",), assistant_empty, quiet_when_plain=True),
    Rule(("special_token_in_text", "foreign_image_tag"), text_tags, quiet_when_plain=True),
    Rule(
        ("path_invalid", "path_absolute", "path_not_normalized", "path_escapes_root"),
        image_paths,
        quiet_when_plain=True,
    ),
]
RECORD_RULES: list[Rule] = [
    Rule(("tags_mismatch",), image_tags, quiet_when_plain=True),
    Rule(("too_many_images",), too_many_images, quiet_when_plain=True),
]


def _checks(rules: list[Rule], plain: bool) -> tuple[Callable[..., list[Finding] | None], ...]:
    return tuple(rule.check for rule in rules if not (plain and rule.quiet_when_plain))


_CHECKS = {  # plain record -> (turn checks, record checks)
    plain: (_checks(TURN_RULES, plain), _checks(RECORD_RULES, plain)) for plain in (False, True)
}
_PLAIN_MEETS_RULES = _CHECKS[True] != ((), ())  # some rule runs on plain records too


def check_record(record: RecordShape, context: RuleContext) -> tuple[list[Finding] | None, int]:
    """Every rule on a schema-valid record: its findings in order (None when it passes) and
    its number of images (counted on the way, for the record rules and the stats)."""
    images = 0
    plain = True  # (see the module's docstring)
    for turn in record.conversations:
        paths = turn.images
        images += len(paths)
        if plain:
            user, answer = turn.user, turn.assistant
            plain = not (
                user.isspace()
                or not answer
                or answer.isspace()
                or "<" in user
                or "<" in answer
                or (paths and not paths_look_clean(paths))
            )
    plain = plain and images <= context.max_images
    if plain and not _PLAIN_MEETS_RULES:
        return None, images
    turn_checks, record_checks = _CHECKS[plain]
    findings: list[Finding] | None = None
    if turn_checks:
        for t, turn in enumerate(record.conversations):
            for check in turn_checks:
                found = check(turn, t, context)
                if found is not None:
                    findings = found if findings is None else findings + found
    for check in record_checks:
        found = check(record, images, context)
        if found is not None:
            findings = found if findings is None else findings + found
    return findings, images
