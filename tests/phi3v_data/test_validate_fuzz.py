"""Fuzzing: the fast schema check agrees with jsonschema, and no input crashes the validator."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from phi3v_data.records import Record
from phi3v_data.sample_data import write_defective_dataset, write_sample_dataset
from phi3v_data.schema import fast_validator, schema_errors
from phi3v_data.validate import CODES, ValidateOptions, validate_paths

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
