"""Chat-format rows (LLaVA, ShareGPT, OpenAI messages): reading a file's rows and mapping a
row's messages to turns, with its images numbered in conversation order.

The rules (which roles, where image tags go, what is skipped and why) are those listed
in `converters/chat.py`; a row that breaks one raises `RowProblem` with the skip reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from converters.converter import ConversionError
from phi3v_data.jsonl import iter_jsonl
from phi3v_data.records import IMAGE_TAG_RE, image_tag

IMAGE_TOKEN = "<image>"
SYSTEM = "system"
# The chat control tokens `phi3v validate` refuses in text (they would break the prompt).
CONTROL_TOKEN_RE = re.compile(r"<\|(?:user|assistant|system|end|endoftext|placeholder\d+)\|>|</?s>")


class ImageRef(NamedTuple):
    """An image as the row names it: `text` (path or URL) and `where` it was found."""

    text: str
    where: str


class Placeholder(NamedTuple):
    """An image's place in a user message: `image` is its 0-based number in the row."""

    kind: str  # "token" (an <image> in text) or "part" (an image content part)
    image: int


Segment = str | Placeholder


@dataclass(frozen=True)
class ChatTurn:
    user: tuple[Segment, ...]
    assistant: str


@dataclass(frozen=True)
class ChatRow:
    """A checked row: its turns, its images in conversation order, its meta."""

    id: str
    turns: tuple[ChatTurn, ...]
    images: tuple[ImageRef, ...]
    meta: dict[str, Any] | None


class RowProblem(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class PendingImage(NamedTuple):
    """An image placeholder before numbering: `ref` None takes the row's next image."""

    kind: str
    ref: ImageRef | None


def read_rows(path: Path) -> Iterator[tuple[str, int, Any, str | None]]:
    """(where, row number, value, error) for each row of a JSON array or JSONL file.

    A JSON array that does not parse stops the conversion (`ConversionError` with line
    and column); a bad JSONL line is one row with an `error`.
    """
    with path.open("rb") as stream:
        head = stream.read(4096)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if head.lstrip().startswith(b"["):
        data = path.read_bytes()
        try:
            rows = orjson.loads(data[3:] if data.startswith(b"\xef\xbb\xbf") else data)
        except orjson.JSONDecodeError as exc:
            raise ConversionError(
                f"{path}:{exc.lineno}:{exc.colno}: the file starts like a JSON array but is "
                f"not valid JSON ({exc.msg}); fix it, or write one row per line (JSONL)"
            ) from None
        if not isinstance(rows, list):
            raise ConversionError(f"{path}: expected a JSON array of rows or JSONL")
        for number, value in enumerate(rows, start=1):
            yield f"{path.name}: row {number}", number, value, None
        return
    for line in iter_jsonl(path):
        if line.blank:
            continue
        error = line.error[1] if line.error is not None else None
        yield f"{path.name}: line {line.lineno}", line.lineno, line.value, error


def user_text(segments: tuple[Segment, ...]) -> str:
    """A user message with `<|image_k|>` tags, or tag-free when the default layout gives it.

    See the module notes: all image tokens first, adjacent, then one newline (or all image
    parts before the text) make a tag-free turn; anything else keeps the tags in place.
    """
    lead = 0
    while lead < len(segments) and isinstance(segments[lead], Placeholder):
        lead += 1
    rest = segments[lead:]
    if lead and all(isinstance(segment, str) for segment in rest):
        kinds = {segment.kind for segment in segments[:lead] if isinstance(segment, Placeholder)}
        text = "".join(str(segment) for segment in rest)
        if kinds == {"token"} and text.startswith("\n") and len(text) > 1:
            return text[1:]
        if kinds == {"part"} and text:
            return text
    return "".join(
        segment if isinstance(segment, str) else image_tag(segment.image + 1)
        for segment in segments
    )


def checked_row_id(value: Any, default_id: str) -> str:
    if value is None or value == "":
        return default_id
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RowProblem("bad_row", f"'id' must be a string or an integer, got {value!r}")
    return str(value)


def messages_key(value: dict[str, Any]) -> str:
    keys = [key for key in ("conversations", "messages") if key in value]
    if len(keys) != 1:
        what = "both 'conversations' and 'messages'" if keys else "no 'conversations' or 'messages'"
        raise RowProblem("bad_row", f"the row has {what}")
    key = keys[0]
    if not isinstance(value[key], list) or not value[key]:
        raise RowProblem("bad_row", f"{key!r} must be a non-empty list of messages")
    return key


def listed_images(value: dict[str, Any]) -> list[ImageRef]:
    keys = [key for key in ("image", "images") if value.get(key) not in (None, "", [])]
    if len(keys) > 1:
        raise RowProblem("bad_row", "the row has both 'image' and 'images'")
    if not keys:
        return []
    key = keys[0]
    raw = value[key]
    entries = raw if isinstance(raw, list) else [raw]
    refs = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]" if isinstance(raw, list) else key
        if isinstance(entry, dict):
            entry = entry.get("path") or entry.get("url")
        if not isinstance(entry, str) or not entry:
            raise RowProblem("bad_image_ref", f"{where} is {entries[i]!r:.80}: expected a path")
        refs.append(ImageRef(entry, where))
    return refs


def parse_parts(parts: list[Any], where: str) -> list[str | PendingImage]:
    pieces: list[str | PendingImage] = []
    for i, part in enumerate(parts):
        part_where = f"{where}.content[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise RowProblem("bad_row", f"{part_where}: 'text' must be a string")
            pieces += split_tokens(text)
        elif kind in ("image", "image_url"):
            pieces.append(PendingImage("part", _part_ref(part, kind, part_where)))
        elif kind in ("video", "video_url", "audio", "audio_url", "input_audio"):
            raise RowProblem("unsupported_media", f"{part_where} is {kind!r}: only images are")
        else:
            raise RowProblem("bad_row", f"{part_where}: unknown content part {part!r:.80}")
    return pieces


def _part_ref(part: dict[str, Any], kind: str, where: str) -> ImageRef | None:
    if kind == "image_url":
        value = part.get("image_url")
        if isinstance(value, dict):
            value = value.get("url")
    else:
        value = next((part[k] for k in ("image", "path", "url") if part.get(k)), None)
        if isinstance(value, dict):
            value = value.get("path") or value.get("url")
    if value is None:
        return None  # a placeholder for the row's next image (Hugging Face chat style)
    if not isinstance(value, str) or not value:
        raise RowProblem("bad_image_ref", f"{where}: {value!r:.80} is not a path or URL")
    return ImageRef(value, where)


def split_tokens(text: str) -> list[str | PendingImage]:
    pieces: list[str | PendingImage] = []
    for i, chunk in enumerate(text.split(IMAGE_TOKEN)):
        if i:
            pieces.append(PendingImage("token", None))
        if chunk:
            pieces.append(chunk)
    return pieces


def text_only(pieces: list[str | PendingImage], where: str, what: str) -> str:
    if any(isinstance(piece, PendingImage) for piece in pieces):
        raise RowProblem("image_misplaced", f"{where}: {what} has an image; only user messages may")
    return "".join(str(piece) for piece in pieces)


def check_text(text: str, where: str) -> None:
    control = CONTROL_TOKEN_RE.search(text)
    if control:
        raise RowProblem(
            "special_token_in_text", f"{where} contains the chat control token {control.group()!r}"
        )
    tag = IMAGE_TAG_RE.search(text)
    if tag:
        raise RowProblem(
            "image_tag_in_text",
            f"{where} contains {tag.group()!r}: write images as <image> in this format",
        )


def pair_turns(
    messages: list[tuple[str, list[str | PendingImage]]], key: str, offset: int
) -> list[tuple[list[str | PendingImage], str]]:
    """(user pieces, answer) per turn: roles must alternate user, assistant, user, ..."""
    if not messages:
        raise RowProblem("bad_row", f"{key!r} has no user or assistant message")
    turns = []
    for i, (role, pieces) in enumerate(messages):
        where = f"{key}[{i + offset}]"
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            what = {
                SYSTEM: "a system message after the first",
                "user": "a user message",
                "assistant": "an assistant message",
            }[role]
            wanted = "a user message" if expected == "user" else "an answer"
            raise RowProblem(
                "turns_out_of_order",
                f"{where} is {what} where {wanted} belongs (messages must "
                "alternate human/user, gpt/assistant, starting with the user)",
            )
        if role == "user":
            for piece in pieces:
                if isinstance(piece, str):
                    check_text(piece, where)
            turns.append((pieces, where))
            continue
        user = turns[-1][0]
        answer = text_only(pieces, where, "an answer")
        check_text(answer, where)
        if not answer.strip():
            raise RowProblem("empty_answer", f"{where}: the answer is empty")
        turns[-1] = (user, answer)
    if len(messages) % 2:
        raise RowProblem(
            "turns_out_of_order",
            f"{key}[{len(messages) - 1 + offset}]: the conversation ends with a user message "
            "that has no answer",
        )
    return turns


def number_images(
    turns: list[tuple[list[str | PendingImage], str]], row_images: list[ImageRef], key: str
) -> tuple[list[ImageRef], list[ChatTurn]]:
    """Number the images in conversation order; `<image>` tokens take the row's list in order."""
    tokens = sum(
        1
        for pieces, _ in turns
        for piece in pieces
        if isinstance(piece, PendingImage) and piece.ref is None
    )
    if tokens != len(row_images):
        raise RowProblem(
            "image_count_mismatch",
            f"the user messages have {tokens} <image> placeholder(s) but the row lists "
            f"{len(row_images)} image(s)",
        )
    queue = iter(row_images)
    images: list[ImageRef] = []
    numbered: list[ChatTurn] = []
    for t, (pieces, answer) in enumerate(turns):
        segments: list[Segment] = []
        for piece in pieces:
            if isinstance(piece, PendingImage):
                images.append(piece.ref if piece.ref is not None else next(queue))
                segments.append(Placeholder(piece.kind, len(images) - 1))
            elif segments and isinstance(segments[-1], str):
                segments[-1] += piece
            else:
                segments.append(piece)
        if (
            not any(isinstance(s, Placeholder) for s in segments)
            and not "".join(str(s) for s in segments).strip()
        ):
            raise RowProblem("empty_question", f"{key}: user message {t + 1} is empty")
        numbered.append(ChatTurn(tuple(segments), answer))
    return images, numbered
