"""Record types vs schema, tag rules, token arithmetic, JSONL reading, atomic writes, paths."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import pytest

from phi3v_data.jsonl import atomic_write, iter_jsonl
from phi3v_data.paths import PathProblem, lexical_path_problem, resolve_image_path
from phi3v_data.prompt import prompt_chunks, record_chunks, render
from phi3v_data.records import Record, Turn, check_image_tags, tagged_user_texts
from phi3v_data.schema import is_valid, load_schema, schema_errors
from phi3v_data.tokens import hd_padded_size, num_image_tokens


def _record(**overrides: object) -> dict:
    base = {
        "id": "train-0000000001",
        "source": "ucf101",
        "conversations": [{"images": ["a.jpg"], "user": "What?", "assistant": "This."}],
    }
    base.update(overrides)
    return base


def test_dataclasses_mirror_schema() -> None:
    schema = load_schema()
    record_fields = {f.name: f for f in dataclasses.fields(Record)}
    assert set(record_fields) == set(schema["properties"])
    required = {n for n, f in record_fields.items() if f.default is dataclasses.MISSING}
    assert required == set(schema["required"])
    turn_schema = schema["$defs"]["turn"]
    assert {f.name for f in dataclasses.fields(Turn)} == set(turn_schema["properties"])
    assert set(turn_schema["required"]) == {"images", "user", "assistant"}
    hints = typing.get_type_hints(Record)
    assert hints["id"] is str and hints["source"] is str
    assert schema["additionalProperties"] is False and turn_schema["additionalProperties"] is False


def test_record_round_trip_is_schema_valid() -> None:
    record = Record(
        id="x-1",
        source="nlvr2",
        conversations=(Turn(user="Same?", assistant="Yes.", images=("l.png", "r.png")),),
        meta={"label": "True"},
    )
    data = record.to_dict()
    assert is_valid(data)
    assert Record.from_dict(data) == record
    assert list(data) == ["id", "source", "conversations", "meta"]
    assert record.to_json_line().endswith(b"\n")


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        ({"id": ""}, "id"),
        ({"conversations": []}, "conversations"),
        ({"extra": 1}, "(record)"),
        (
            {"conversations": [{"images": [], "user": "", "assistant": "a"}]},
            "conversations[0].user",
        ),
        (
            {"conversations": [{"images": [3], "user": "u", "assistant": "a"}]},
            "conversations[0].images[0]",
        ),
        ({"conversations": [{"user": "u", "assistant": "a"}]}, "conversations[0]"),
        ({"meta": []}, "meta"),
    ],
)
def test_schema_rejects_with_field_path(mutation: dict, field: str) -> None:
    data = _record(**mutation)
    assert not is_valid(data)
    assert field in [path for path, _ in schema_errors(data)]


def test_tag_rule() -> None:
    turns = [
        {"images": ["a", "b"], "user": "<|image_1|> and <|image_2|>?", "assistant": ""},
        {"images": ["c"], "user": "no tags", "assistant": ""},
        {"images": ["d"], "user": "<|image_4|> ok", "assistant": ""},
    ]
    assert check_image_tags(turns) == []
    turns[2]["user"] = "<|image_1|> wrong"
    assert [index for index, _ in check_image_tags(turns)] == [2]
    assert check_image_tags([{"images": [], "user": "<|image_1|>", "assistant": ""}])
    assert check_image_tags(
        [{"images": ["a", "b"], "user": "<|image_2|><|image_1|>", "assistant": ""}]
    )


def test_untagged_turns_get_images_first_in_the_seed_layout_or_one_per_line() -> None:
    turns = (
        Turn("one", "", ("a", "b")),
        Turn("two <|image_3|>", "", ("c",)),
        Turn("three", "", ()),
        Turn("four", "", ("d",)),
    )
    assert list(tagged_user_texts(turns)) == [
        "<|image_1|><|image_2|>\none",
        "two <|image_3|>",
        "three",
        "<|image_4|>\nfour",
    ]
    assert next(iter(tagged_user_texts(turns, "per-line"))) == "<|image_1|>\n<|image_2|>\none"
    with pytest.raises(ValueError, match="seed, per-line"):
        list(tagged_user_texts(turns, "grid"))


def test_prompt_chunks_put_bos_before_every_text_chunk_even_an_empty_one() -> None:
    chunks = prompt_chunks("<|user|>\n<|image_1|><|image_2|>\nQ<|end|>\n<|assistant|>\n")
    assert [(c.text, c.image, c.bos) for c in chunks] == [
        ("<|user|>\n", None, True),
        ("", 1, False),
        ("", None, True),  # between two adjacent tags: the official processor's [1]
        ("", 2, False),
        ("\nQ<|end|>\n<|assistant|>\n", None, True),
    ]


def test_every_turn_is_encoded_on_its_own_and_every_answer_ends_with_endoftext() -> None:
    record = Record("r", "s", (Turn("Q1", "A1", ("a",)), Turn("Q2", "A2")))
    chunks = record_chunks(record)
    assert render(chunks) == (
        "<s><|user|>\n<|image_1|><s>\nQ1<|end|>\n<|assistant|>\n"
        "A1<|end|>\n<|endoftext|>"
        "<s><|user|>\nQ2<|end|>\n<|assistant|>\n"
        "A2<|end|>\n<|endoftext|>"
    )
    assert [c.text for c in chunks if c.is_target] == [
        "A1<|end|>\n<|endoftext|>",
        "A2<|end|>\n<|endoftext|>",
    ]
    generation = record_chunks(record, for_generation=True)
    assert render(generation).endswith("<s><|user|>\nQ2<|end|>\n<|assistant|>\n")
    assert not generation[-1].is_target


@pytest.mark.parametrize(
    ("size", "num_crops", "tokens"),
    [((500, 500), 4, 757), ((500, 500), 16, 2509), ((2000, 1000), 16, 2353), ((336, 336), 1, 313)],
)
def test_documented_token_counts(size: tuple[int, int], num_crops: int, tokens: int) -> None:
    assert num_image_tokens(*size, num_crops) == tokens


def test_portrait_is_transposed_landscape() -> None:
    assert hd_padded_size(1000, 2000, 16) == (1680, 1008)
    assert hd_padded_size(2000, 1000, 16) == (1008, 1680)
    assert hd_padded_size(10000, 1, 16)[0] == 336  # degenerate panorama keeps one row


def test_jsonl_reader_reports_each_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"a": 1}\r\n'
        b"\n"
        b'{"a": \n'
        b'{"a": "\xff\xfe"}\n' + b'{"big": "' + b"x" * 200 + b'"}\n' + b'{"last": true}'
    )
    lines = list(iter_jsonl(path, max_line_bytes=100))
    assert [line.lineno for line in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[0].value == {"a": 1}
    assert lines[1].blank
    assert lines[2].error[0] == "bad_json"
    assert lines[3].error[0] == "bad_utf8"
    assert lines[4].error[0] == "line_too_long"
    assert lines[5].value == {"last": True}


def test_atomic_write_leaves_old_file_on_crash(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as stream:
        stream.write("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]
    with atomic_write(path, "w") as stream:
        stream.write("new\n")
    assert path.read_text() == "new\n"


@pytest.mark.parametrize(
    ("rel", "code"),
    [
        ("", "path_empty"),
        ("/etc/passwd", "path_absolute"),
        ("C:/x.png", "path_absolute"),
        ("a/../../x.png", "path_escapes_root"),
        ("a//b.png", "path_not_normalized"),
        ("./a.png", "path_not_normalized"),
        ("a\\b.png", "path_not_normalized"),
    ],
)
def test_lexical_path_rules(rel: str, code: str) -> None:
    problem = lexical_path_problem(rel)
    assert problem is not None and problem.code == code


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    (root / "ok.png").write_bytes(b"x")
    (root / "inner.png").symlink_to(root / "ok.png")
    escaped = resolve_image_path(root, "link.png")
    assert isinstance(escaped, PathProblem) and escaped.code == "path_escapes_root"
    assert resolve_image_path(root, "inner.png") == (root / "ok.png").resolve()
    assert lexical_path_problem("sub/dir/frame.0.jpg") is None
