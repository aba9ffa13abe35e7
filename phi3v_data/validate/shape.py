"""The typed fast path: one msgspec decode parses a line and checks the record schema.

`RecordShape` and `TurnShape` mirror `schemas/conversation.schema.json`: the same required
keys, no unknown keys at the top level or in a turn, `id`, `user` and every image path
non-empty, at least one turn, `meta` any JSON object. A line the decoder accepts is a
schema-valid record with the values `orjson` would read. A line it refuses takes the slow
path (`orjson`, the compiled schema, then `jsonschema` for the explanation), which alone
decides: the decoder may refuse a few valid lines the slow path then accepts (a `meta`
nested deeper than msgspec reads, a key given twice with a bad first value), never the
other way round. `tests/phi3v_data/test_validate_fuzz.py` compares both paths.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

from phi3v_data.jsonl import raw_lines
from phi3v_data.records import Record, Turn
from phi3v_data.schema import is_valid

NonEmpty = Annotated[str, Meta(min_length=1)]

# Any decoding or schema error (msgspec.ValidationError is a DecodeError), or nesting
# deeper than msgspec reads (orjson reads up to 1024 levels).
FAST_PATH_ERRORS = (msgspec.DecodeError, RecursionError)


class TurnShape(Struct, forbid_unknown_fields=True, gc=False):
    images: list[NonEmpty]
    user: NonEmpty
    assistant: str


class RecordShape(Struct, forbid_unknown_fields=True, gc=False):
    id: NonEmpty
    source: str
    conversations: Annotated[list[TurnShape], Meta(min_length=1)]
    meta: dict[str, Any] | UnsetType = UNSET


@functools.cache
def decoder() -> msgspec.json.Decoder[RecordShape]:
    """Decodes a line (bytes) to a `RecordShape`; raises `FAST_PATH_ERRORS` otherwise."""
    return msgspec.json.Decoder(RecordShape)


def shape_from_value(value: Mapping[str, Any]) -> RecordShape:
    """The shape of a value the schema already accepted (a line the decoder refused)."""
    turns = [
        TurnShape(list(turn["images"]), turn["user"], turn["assistant"])
        for turn in value["conversations"]
    ]
    return RecordShape(value["id"], value["source"], turns, value.get("meta", UNSET))


def to_record(shape: RecordShape, with_meta: bool = False) -> Record:
    """The typed record the prompt layout reads (`meta` only `with_meta`: it holds no tokens)."""
    turns = tuple(Turn(t.user, t.assistant, tuple(t.images)) for t in shape.conversations)
    meta = shape.meta if with_meta and shape.meta is not UNSET else None
    return Record(shape.id, shape.source, turns, meta)


def read_records(path: Path) -> Iterator[tuple[int, Record | None]]:
    """(line number, record) for every non-blank line of `path`, read as `phi3v validate`
    reads it: the typed decode, and for a line it refuses, JSON and the schema. The record
    is None for a line that is not a valid record (bad UTF-8 or JSON, too long, the
    schema). The one reader of records for training, eval and predict."""
    decode = decoder().decode
    with path.open("rb") as stream:
        for lineno, raw in enumerate(raw_lines(stream), start=1):
            if raw is None:
                yield lineno, None
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                shape = decode(raw)
            except FAST_PATH_ERRORS:
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    yield lineno, None
                    continue
                if not is_valid(value):
                    yield lineno, None
                    continue
                shape = shape_from_value(value)
            yield lineno, to_record(shape, with_meta=True)
