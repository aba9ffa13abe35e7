"""Fuzzing: the fast checks agree with the exact ones, and no input crashes the validator.

The compiled schema and the typed fast path (msgspec) against `jsonschema`; a run with the
fast path against one without it; the rules' shortcuts against the rules themselves.
"""

from __future__ import annotations

import tempfile
from array import array
from pathlib import Path
from typing import Any

import fastjsonschema
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec import UNSET
from PIL import Image

from phi3v_data.jsonl import DEFAULT_MAX_LINE_BYTES
from phi3v_data.paths import lexical_path_problem
from phi3v_data.records import Record
from phi3v_data.sample_data import write_defective_dataset, write_sample_dataset
from phi3v_data.schema import fast_validator, schema_errors
from phi3v_data.validate import CODES, ValidateOptions, validate_paths
from phi3v_data.validate import ids as validate_ids
from phi3v_data.validate import run as validate_run
from phi3v_data.validate.ids import repeated_places
from phi3v_data.validate.rules import (
    RECORD_RULES,
    TURN_RULES,
    Finding,
    RuleContext,
    check_record,
    paths_look_clean,
)
from phi3v_data.validate.shape import FAST_PATH_ERRORS, RecordShape, TurnShape, decoder

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
FUZZ_FILES = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=6)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
paths = st.sampled_from(
    ["a.jpg", "b.png", "../x.jpg", "/abs.jpg", "a//b.jpg", "sub/c.jpg", "d.txt", "a\\b.jpg"]
)
texts = st.one_of(
    st.text(min_size=1, max_size=20),
    st.sampled_from(["<|image_1|>", "<|image_2|> x", "<image>", "<|end|>", " ", "Q?"]),
)
turns = st.fixed_dictionaries(
    {"images": st.lists(paths, max_size=3), "user": texts, "assistant": texts}
)
records = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["a", "b", "c", "d"]),
        "source": st.sampled_from(["s", "t"]),
        "conversations": st.lists(turns, min_size=1, max_size=3),
    },
    optional={"meta": st.dictionaries(st.text(max_size=3), json_leaf, max_size=2)},
)


@st.composite
def mutated_records(draw: st.DrawFn) -> Any:
    """A record (schema-valid or nearly) with 0-3 keys replaced, deleted or added."""
    record = draw(records)
    for _ in range(draw(st.integers(0, 3))):
        conversations = record.get("conversations")
        turn_dicts = (
            [t for t in conversations if isinstance(t, dict)]
            if isinstance(conversations, list)
            else []
        )
        targets = [record, *turn_dicts]
        target = draw(st.sampled_from(targets))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" or not target:
            target[draw(st.text(max_size=4))] = draw(json_value)
            continue
        key = draw(st.sampled_from(sorted(target)))
        if action == "replace":
            target[key] = draw(json_value)
        else:
            del target[key]
    return draw(st.one_of(st.just(record), json_value))


def _fast_says_valid(value: Any) -> bool:
    try:
        fast_validator()(value)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


@FUZZ
@given(mutated_records())
def test_fast_check_agrees_with_jsonschema(value: Any) -> None:
    errors = schema_errors(value)
    assert _fast_says_valid(value) == (errors == [])
    if not errors:  # schema-valid means the typed records read and write it unchanged
        assert Record.from_dict(value).to_dict() == value


def test_fast_check_agrees_on_every_fixture_line(tmp_path: Path) -> None:
    clean = write_sample_dataset(tmp_path / "sample")
    defects = write_defective_dataset(clean, tmp_path / "defects")
    seen = valid = 0
    for path in [*clean.glob("*.jsonl"), defects / "sample_train.jsonl"]:
        for raw in path.read_bytes().splitlines():
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            seen += 1
            valid += _fast_says_valid(value)
            assert _fast_says_valid(value) == (schema_errors(value) == [])
    assert (seen, valid) == (18 + 38, 18 + 36)


def _validate_bytes(data: bytes, check_images: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images" / "sub").mkdir(parents=True)
        Image.new("RGB", (8, 6)).save(root / "images" / "a.jpg")
        (root / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
        path = root / "d.jsonl"
        path.write_bytes(data)
        report = validate_paths([path], ValidateOptions(check_images=check_images, workers=1))
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        line_problems = {p.line for p in report.problems if p.code in _LINE_CODES}
        # Every line is either a record or a line-level problem, never lost; or the whole
        # file is one JSON array, reported once.
        assert (
            report.stats.records + len(line_problems) == len(lines)
            or (not lines and report.counts_by_code() == {"file_empty": 1})
            or "json_array" in report.counts_by_code()
        )
        assert all(p.code in CODES and p.file == str(path) for p in report.problems)


_LINE_CODES = {"bad_json", "bad_utf8", "blank_line", "line_too_long"}


@FUZZ_FILES
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    _validate_bytes(data, check_images=True)


@FUZZ_FILES
@given(st.lists(mutated_records(), min_size=1, max_size=6), st.booleans())
def test_mutated_records_never_crash(values: list[Any], check_images: bool) -> None:
    _validate_bytes(b"".join(orjson.dumps(v) + b"\n" for v in values), check_images)


# The typed fast path (validate/shape.py) against the schema, and the run with and without it.


def _fast_decode(raw: bytes) -> RecordShape | None:
    try:
        return decoder().decode(raw)
    except FAST_PATH_ERRORS:
        return None


def _same_record(shape: RecordShape, value: dict[str, Any]) -> bool:
    turns = [
        {"images": turn.images, "user": turn.user, "assistant": turn.assistant}
        for turn in shape.conversations
    ]
    meta = value.get("meta", UNSET)
    return (shape.id, shape.source, turns, shape.meta) == (
        value["id"],
        value["source"],
        value["conversations"],
        meta,
    )


@FUZZ
@given(mutated_records())
def test_fast_path_accepts_exactly_the_schema_valid_records(value: Any) -> None:
    raw = orjson.dumps(value)
    shape = _fast_decode(raw)
    assert (shape is not None) == (schema_errors(value) == []) == _fast_says_valid(value)
    if shape is not None:
        assert _same_record(shape, value)


@st.composite
def edited_lines(draw: st.DrawFn) -> bytes:
    """A record's JSON with a few bytes inserted, deleted or replaced, or a key given twice."""
    raw = orjson.dumps(draw(records))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(
            st.sampled_from(
                [
                    b" ",
                    b"\\",
                    b'"',
                    b",",
                    b"{",
                    b"}",
                    b"]",
                    b"\\u0000",
                    b"\\ud800",
                    b"\xff",
                    b"\xc3\xa9",
                    b"1e400",
                    b"\r",
                    b"\t",
                    b"\x00",
                    b"\xef\xbb\xbf",
                ]
            )
        )
        if edit == "insert":
            raw = raw[:at] + piece + raw[at:]
        elif edit == "delete":
            raw = raw[:at] + raw[at + 1 :]
        elif edit == "replace":
            raw = raw[:at] + piece + raw[at + len(piece) :]
        else:  # a key given twice: JSON readers keep the last
            key = draw(st.sampled_from([b'"id":"dup",', b'"id":5,', b'"meta":{},', b'"meta":1,']))
            raw = b"{" + key + raw[1:]
    return raw


@FUZZ
@given(edited_lines())
def test_fast_path_never_accepts_a_line_the_slow_path_refuses(raw: bytes) -> None:
    shape = _fast_decode(raw)
    if shape is None:
        return  # the slow path decides alone
    value = orjson.loads(raw)  # JSON for orjson too
    assert _fast_says_valid(value) and schema_errors(value) == []
    assert _same_record(shape, value)


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    """Lines of every kind: records (valid or not), edited lines, blank lines, bad bytes."""
    special = st.sampled_from(
        [b"", b"  \t", b"{bad json", b'{"id": "\xff"}', b"[1, 2]", b'"text"', b"\xef\xbb\xbf{}"]
    )
    lines = draw(
        st.lists(
            st.one_of(mutated_records().map(orjson.dumps), edited_lines(), special), max_size=8
        )
    )
    data = b"\n".join(lines) + draw(st.sampled_from([b"", b"\n"]))
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    return data


def _without_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refuses:
        def decode(self, raw: bytes) -> None:
            raise msgspec.DecodeError("fast path off")

    monkeypatch.setattr(validate_run, "decoder", Refuses)


@FUZZ_FILES
@given(jsonl_files(), st.booleans(), st.sampled_from([DEFAULT_MAX_LINE_BYTES, 60]))
def test_the_fast_path_changes_no_finding(data: bytes, check_images: bool, max_line: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as monkeypatch:
        root = Path(tmp)
        (root / "images").mkdir()
        Image.new("RGB", (8, 6)).save(root / "images" / "a.jpg")
        path = root / "d.jsonl"
        path.write_bytes(data)
        options = ValidateOptions(check_images=check_images, workers=1, max_line_bytes=max_line)
        fast = validate_paths([path], options).to_json()
        _without_fast_path(monkeypatch)
        assert validate_paths([path], options).to_json() == fast


# The rules' shortcuts: the path screen and plain records.

path_parts = st.sampled_from(
    ["a", "b.jpg", "", ".", "..", ".a", "a.", "a..b", "C:", "a\\b", "\x00"]
)
path_texts = st.one_of(
    st.text(alphabet="ab/.\\:\x00", max_size=8),
    st.lists(path_parts, min_size=1, max_size=4).map("/".join),
)


@FUZZ
@given(st.lists(path_texts, min_size=1, max_size=4))
def test_path_screen_passes_only_paths_the_exact_check_passes(images: list[str]) -> None:
    if paths_look_clean(images):
        assert all(lexical_path_problem(rel) is None for rel in images)


rule_texts = st.one_of(
    st.text(alphabet="a <>|_1sim/\n", max_size=12),
    st.sampled_from(["", " ", "<|image_1|>", "<|image_2|>", "<|end|>", "<image>", "<s>", "x"]),
)
rule_turns = st.builds(
    TurnShape, st.lists(path_texts.filter(bool), max_size=3), rule_texts.filter(bool), rule_texts
)
rule_records = st.builds(
    RecordShape, st.just("r"), st.just("s"), st.lists(rule_turns, min_size=1, max_size=3)
)


@FUZZ
@given(rule_records, st.booleans(), st.integers(0, 4))
def test_plain_records_skip_only_rules_that_find_nothing_there(
    record: RecordShape, allow_empty: bool, max_images: int
) -> None:
    """`check_record` skips the rules marked quiet_when_plain on plain records: the same
    findings as every rule on every record."""
    context = RuleContext(allow_empty, max_images)
    everything: list[Finding] = []
    for t, turn in enumerate(record.conversations):
        for rule in TURN_RULES:
            everything += rule.check(turn, t, context) or []
    images = sum(len(turn.images) for turn in record.conversations)
    for rule in RECORD_RULES:
        everything += rule.check(record, images, context) or []
    assert check_record(record, context) == (everything or None, images)


def test_every_rule_code_is_a_known_code() -> None:
    for rule in [*TURN_RULES, *RECORD_RULES]:
        assert rule.codes and set(rule.codes) <= set(CODES), rule


@FUZZ_FILES
@given(st.lists(st.integers(-5, 5), max_size=40), st.sampled_from([1, 2, 1 << 20]))
def test_repeated_places_finds_every_repeated_hash(hashes: list[int], bitmap_bytes: int) -> None:
    places = list(range(100, 100 + len(hashes)))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(validate_ids, "_MAX_BITMAP_BYTES", bitmap_bytes)  # 1-2: collisions
        found = repeated_places(array("q", hashes), array("q", places))
    assert found == [p for h, p in zip(hashes, places, strict=True) if hashes.count(h) > 1]
