"""`read_records`: the one reader of records (validate's typed path, schema for the rest)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from phi3v_data.records import Record
from phi3v_data.validate.shape import read_records


def _line(**overrides: object) -> str:
    value: dict[str, object] = {
        "id": "a",
        "source": "s",
        "conversations": [{"images": ["x.jpg"], "user": "<|image_1|>\nq", "assistant": "y"}],
    }
    value.update(overrides)
    return json.dumps(value)


def test_reads_valid_lines_as_the_schema_does_and_marks_the_rest(tmp_path: Path) -> None:
    deep: object = 1
    for _ in range(600):  # deeper than msgspec decodes: only the slow path reads it
        deep = [deep]
    lines = [
        _line(),
        _line(id="b", meta={"answers": ["y", "z"], "n": 3}),
        "",
        "{not json",
        _line(id=""),  # the schema wants a non-empty id
        _line(id="c", extra=1),  # no unknown keys at the top level
        _line(id="d", meta={"deep": deep}),
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")

    found = list(read_records(path))

    assert [lineno for lineno, _ in found] == [1, 2, 4, 5, 6, 7]
    by_line = dict(found)
    assert by_line[4] is None and by_line[5] is None and by_line[6] is None
    for lineno in (1, 2, 7):
        expected = Record.from_dict(orjson.loads(lines[lineno - 1]))
        assert by_line[lineno] == expected
    assert by_line[2].meta == {"answers": ["y", "z"], "n": 3}
