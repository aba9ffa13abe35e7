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
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from phi3v_data.records import Record, Turn

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


def to_record(shape: RecordShape) -> Record:
    """The typed record the prompt layout reads (`meta` left out: it holds no tokens)."""
    turns = tuple(Turn(t.user, t.assistant, tuple(t.images)) for t in shape.conversations)
    return Record(shape.id, shape.source, turns)
