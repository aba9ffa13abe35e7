"""LLaVA files (JSON array and JSONL): records, image tags, traps, parallel output, the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from converters.chat import ChatOptions
from converters.chat_rows import RowProblem, user_text
from converters.framework import RunSettings, run_conversion
from converters.samples.llava import build_llava_tree
from converters.sources.llava import LlavaConverter
from phi3v_cli.app import app
from phi3v_data.records import Turn, tagged_user_texts
from phi3v_data.validate import ValidateOptions, validate_paths


def _turn(images: list[str], user: str, assistant: str) -> dict:
    return {"images": images, "user": user, "assistant": assistant}


EXPECTED = [
    {
        "id": "single",
        "source": "llava",
        "conversations": [
            _turn(["coco/000001.jpg"], "What is in the picture?", "A gradient."),
            _turn([], "Which colours?", "Red and green."),
        ],
    },
    {
        "id": "pair",
        "source": "llava",
        "conversations": [
            _turn(
                ["coco/000001.jpg", "coco/000002.png"],
                "<|image_1|>\n<|image_2|>\nAre the two pictures the same?",
                "No.",
            )
        ],
    },
    {
        "id": "adjacent",
        "source": "llava",
        "conversations": [
            _turn(["coco/000002.png", "docs/page.png"], "Compare them.", "The second is a page.")
        ],
    },
    {
        "id": "trailing",
        "source": "llava",
        "conversations": [
            _turn(["coco/000003.jpg"], "What colour dominates?\n<|image_1|>", "Blue.")
        ],
    },
    {
        "id": "5",
        "source": "llava",
        "conversations": [_turn([], "Tell me a joke.", "Why did the pixel blush? It saw RGB.")],
    },
    {
        "id": "later-image",
        "source": "llava",
        "conversations": [
            _turn([], "Hello.", "Hi."),
            _turn(["docs/page.png"], "What is the title?", "Report."),
        ],
        "meta": {"data_source": "docvqa", "system": "You read documents."},
    },
    {
        "id": "train-0000000007",
        "source": "llava",
        "conversations": [_turn(["coco/000001.jpg"], "Describe it.", "Colours.")],
    },
]
SKIPS = {  # row -> reason; the JSONL file also has a broken line 17
    8: "turns_out_of_order",
    9: "image_count_mismatch",
    10: "image_count_mismatch",
    11: "image_missing",
    12: "image_corrupt",
    13: "duplicate_id",
    14: "image_misplaced",
    15: "turns_out_of_order",
    16: "wrong_format",
}


def _convert(src: Path, out: Path, workers: int = 1, **options) -> object:
    folder = options.pop("image_folder", src.parent)
    converter = LlavaConverter(ChatOptions(folder.resolve(), **options))
    return run_conversion(converter, src, RunSettings(out, workers=workers))


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("container", ["json", "jsonl"])
def test_records_skips_and_validation(tmp_path: Path, container: str) -> None:
    src = build_llava_tree(tmp_path / "src", container)
    out = tmp_path / "out"
    summary = _convert(src, out)
    assert _records(out / "llava_train.jsonl") == EXPECTED
    where = "row" if container == "json" else "line"
    expected_skips = {f"{src.name}: {where} {row}": reason for row, reason in SKIPS.items()}
    if container == "jsonl":
        expected_skips[f"{src.name}: line 17"] = "bad_line"
    assert {skip.item: skip.reason for skip in summary.skips} == expected_skips
    details = {skip.item.rsplit(" ", 1)[1]: skip.detail for skip in summary.skips}
    assert details["9"].endswith("have 2 <image> placeholder(s) but the row lists 1 image(s)")
    assert details["10"].endswith("have 1 <image> placeholder(s) but the row lists 2 image(s)")
    assert details["16"].endswith("convert this file with phi3v convert sharegpt")
    assert details["11"].startswith("image: ") and details["11"].endswith(
        "coco/missing.jpg does not exist"
    )
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert len(manifest["skips"]) == len(expected_skips)
    assert sorted(p.relative_to(out / "images").as_posix() for p in out.rglob("images/**/*.*")) == [
        "coco/000001.jpg",
        "coco/000002.png",
        "coco/000003.jpg",  # a JPEG in a .png file
        "docs/page.png",
    ]
    assert validate_paths([out], ValidateOptions(workers=1)).ok


def test_any_worker_count_gives_identical_output(tmp_path: Path) -> None:
    src = build_llava_tree(tmp_path / "src", "jsonl")
    _convert(src, tmp_path / "one", workers=1)
    _convert(src, tmp_path / "two", workers=2)
    for name in ("llava_train.jsonl", "manifest.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_image_folder_and_split(tmp_path: Path) -> None:
    src = build_llava_tree(tmp_path / "imgs", "json")
    moved = tmp_path / "annotations" / "val.json"
    moved.parent.mkdir()
    src.rename(moved)
    out = tmp_path / "out"
    _convert(moved, out, image_folder=tmp_path / "imgs", split="val")
    assert _records(out / "llava_val.jsonl")[0]["conversations"][0]["images"] == ["coco/000001.jpg"]
    assert _records(out / "llava_val.jsonl")[-1]["id"] == "val-0000000007"


@pytest.mark.parametrize(
    ("texts", "users"),
    [
        (["<image>\nQ"], ["Q"]),  # LLaVA's usual layout: tag-free, the default layout agrees
        (["<image><image>\nQ"], ["Q"]),
        (["<image>Q"], ["<|image_1|>Q"]),  # no newline: the tag stays
        (["<image>\n<image>\nQ"], ["<|image_1|>\n<|image_2|>\nQ"]),  # per line: tags stay
        (["Q\n<image>"], ["Q\n<|image_1|>"]),
        (["<image>\n"], ["<|image_1|>\n"]),  # nothing after the newline: the tag stays
        (["<image>\n\nQ"], ["\nQ"]),
        (["<image>\nQ1", "<image>\nQ2"], ["Q1", "Q2"]),
        (["<image>\nQ1", "See <image>."], ["Q1", "See <|image_2|>."]),
        (["Q1", "<image> and <image>"], ["Q1", "<|image_1|> and <|image_2|>"]),
    ],
)
def test_training_text_is_the_files_text(texts: list[str], users: list[str]) -> None:
    images = [f"p{i}.png" for i in range(sum(t.count("<image>") for t in texts))]
    conversations = []
    for text in texts:
        conversations += [{"from": "human", "value": text}, {"from": "gpt", "value": "A."}]
    converter = LlavaConverter(ChatOptions(Path("/nonexistent")))
    row = converter.parse_row({"image": images, "conversations": conversations}, "x")
    assert [user_text(turn.user) for turn in row.turns] == users
    # Under the default layout the prompt is the file's text, <image> k -> <|image_k|>.
    turns, k = [], 0
    for turn in row.turns:
        count = sum(1 for s in turn.user if not isinstance(s, str))
        turns.append(Turn(user_text(turn.user), "A.", tuple(images[k : k + count])))
        k += count
    numbers = iter(range(1, len(images) + 1))
    expected = [re.sub("<image>", lambda _: f"<|image_{next(numbers)}|>", t) for t in texts]
    assert list(tagged_user_texts(turns)) == expected


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"conversations": [{"from": "human", "value": "Q"}]}, "turns_out_of_order"),
        (
            {"conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]},
            "turns_out_of_order",
        ),
        (
            {
                "conversations": [
                    {"from": "human", "value": "Q"},
                    {"from": "gpt", "value": "A"},
                    {"from": "system", "value": "S"},
                ]
            },
            "turns_out_of_order",
        ),
        (
            {"image": "a.png", "conversations": [{"from": "human", "value": "Q"}]},
            "turns_out_of_order",
        ),
        (
            {
                "image": "a.png",
                "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
            },
            "image_count_mismatch",
        ),
        (
            {
                "conversations": [
                    {"from": "human", "value": "Q <|image_1|>"},
                    {"from": "gpt", "value": "A"},
                ]
            },
            "image_tag_in_text",
        ),
        (
            {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A</s>"}]},
            "special_token_in_text",
        ),
        (
            {"conversations": [{"from": "human", "value": " "}, {"from": "gpt", "value": "A"}]},
            "empty_question",
        ),
        ({"conversations": [{"from": "bot", "value": "Q"}]}, "unknown_role"),
        ({"conversations": []}, "bad_row"),
        ({"id": 1.5, "conversations": [{"from": "human", "value": "Q"}]}, "bad_row"),
        (["not", "an", "object"], "bad_row"),
        (
            {
                "conversations": [
                    {"from": "human", "value": [{"type": "text", "text": "Q"}]},
                    {"from": "gpt", "value": "A"},
                ]
            },
            "wrong_format",
        ),
    ],
)
def test_bad_rows_are_refused_with_the_reason(row: object, reason: str) -> None:
    converter = LlavaConverter(ChatOptions(Path("/nonexistent")))
    with pytest.raises(RowProblem) as problem:
        converter.parse_row(row, "x")
    assert problem.value.reason == reason


def test_the_command_validate_suggests_works(tmp_path: Path) -> None:
    src = build_llava_tree(tmp_path / "src", "jsonl")
    report = validate_paths([src], ValidateOptions(workers=1, check_images=False))
    hints = [p.message for p in report.problems if p.code == "foreign_format"]
    assert hints
    command = shlex.split(hints[0].split("convert the file: ", 1)[1])
    assert command == ["phi3v", "convert", "llava", str(src), "-o", "OUT"]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*command[1:-1], str(out)])
    assert result.exit_code == 0, result.output
    assert _records(out / "llava_train.jsonl") == EXPECTED
    array = build_llava_tree(tmp_path / "array", "json")  # a JSON array file works too
    again = CliRunner().invoke(app, ["convert", "llava", str(array), "-o", str(tmp_path / "o2")])
    assert again.exit_code == 0, again.output
    assert _records(tmp_path / "o2" / "llava_train.jsonl") == EXPECTED


def test_cli_refuses_a_folder_and_a_bad_split(tmp_path: Path) -> None:
    src = build_llava_tree(tmp_path / "src", "json")
    folder = CliRunner().invoke(
        app, ["convert", "llava", str(src.parent), "-o", str(tmp_path / "o")]
    )
    assert folder.exit_code == 2 and "is a folder" in " ".join(folder.output.split())
    split = CliRunner().invoke(
        app, ["convert", "llava", str(src), "-o", str(tmp_path / "o"), "--split", "a/b"]
    )
    assert split.exit_code == 2
