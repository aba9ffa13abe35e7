"""ShareGPT / OpenAI messages (LLaMA-Factory, ms-swift, content parts): records, traps, CLI."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from converters.chat import ChatOptions
from converters.chat_rows import RowProblem
from converters.framework import RunSettings, run_conversion
from converters.samples.sharegpt import build_sharegpt_tree, rows, tiny_png
from converters.sources.sharegpt import ShareGPTConverter
from phi3v_cli.app import app
from phi3v_data.validate import ValidateOptions, validate_paths


def _turn(images: list[str], user: str, assistant: str) -> dict:
    return {"images": images, "user": user, "assistant": assistant}


def _content_name(data: bytes, extension: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"by_content/{digest[:2]}/{digest}{extension}"


def _expected(root: Path) -> list[dict]:
    media = root / "media"
    outside = _content_name((media / "abs/outside.png").read_bytes(), ".png")
    first = _content_name((media / "mllm/1.jpg").read_bytes(), ".jpg")
    embedded = _content_name(tiny_png(), ".png")
    return [
        {
            "id": "train-0000000001",
            "source": "sharegpt",
            "conversations": [
                _turn(["mllm/1.jpg"], "<|image_1|>Who are they?", "Two gradients."),
                _turn([], "What are they doing?", "Nothing."),
            ],
        },
        {
            "id": "train-0000000002",
            "source": "sharegpt",
            "conversations": [_turn([outside], "Describe.", "A picture.")],
            "meta": {"system": "You are helpful."},
        },
        {
            "id": "sg-3",
            "source": "sharegpt",
            "conversations": [_turn(["mllm/2.png"], "What is it?", "A gradient.")],
            "meta": {"system": "Be brief."},
        },
        {
            "id": "parts-first",
            "source": "sharegpt",
            "conversations": [
                _turn(["mllm/1.jpg", "mllm/2.png"], "Which is brighter?", "The second.")
            ],
        },
        {
            "id": "interleaved",
            "source": "sharegpt",
            "conversations": [
                _turn([first, "mllm/2.png"], "Left: <|image_1|> Right: <|image_2|> Same?", "No.")
            ],
        },
        {
            "id": "data-url",
            "source": "sharegpt",
            "conversations": [_turn([embedded], "What is this?", "A tiny picture.")],
        },
        {
            "id": "text-only",
            "source": "sharegpt",
            "conversations": [_turn([], "Hello.", "Hi."), _turn([], "Bye.", "Goodbye.")],
        },
    ]


SKIPS = {  # row -> reason; the JSONL file also has a broken line 17
    8: "image_remote",
    9: "unknown_role",
    10: "turns_out_of_order",
    11: "image_count_mismatch",
    12: "image_missing",
    13: "image_corrupt",
    14: "unsupported_media",
    15: "special_token_in_text",
    16: "empty_answer",
}


def _convert(src: Path, image_folder: Path, out: Path, workers: int = 1) -> object:
    converter = ShareGPTConverter(ChatOptions(image_folder.resolve()))
    return run_conversion(converter, src, RunSettings(out, workers=workers))


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("container", ["json", "jsonl"])
def test_records_skips_and_validation(tmp_path: Path, container: str) -> None:
    root = tmp_path / "src"
    src = build_sharegpt_tree(root, container)
    out = tmp_path / "out"
    summary = _convert(src, root / "media", out)
    assert _records(out / "sharegpt_train.jsonl") == _expected(root)
    where = "row" if container == "json" else "line"
    expected_skips = {f"{src.name}: {where} {row}": reason for row, reason in SKIPS.items()}
    if container == "jsonl":
        expected_skips[f"{src.name}: line 17"] = "bad_line"
    assert {skip.item: skip.reason for skip in summary.skips} == expected_skips
    details = {skip.item.rsplit(" ", 1)[1]: skip.detail for skip in summary.skips}
    assert details["8"] == (
        "messages[0].content[0]: https://example.com/cat.jpg is a https:// URL: phi3v never "
        "downloads: download the image and give its local path"
    )
    assert details["9"].startswith("messages[1] is from 'function_call'")
    assert details["15"] == "messages[0] contains the chat control token '<|end|>'"
    assert validate_paths([out], ValidateOptions(workers=1)).ok


def test_any_worker_count_gives_identical_output(tmp_path: Path) -> None:
    root = tmp_path / "src"
    src = build_sharegpt_tree(root, "json")
    _convert(src, root / "media", tmp_path / "one", workers=1)
    _convert(src, root / "media", tmp_path / "two", workers=2)
    for name in ("sharegpt_train.jsonl", "manifest.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": "<image>Q"},
                    {"role": "assistant", "content": "A"},
                ],
                "images": ["http://example.com/a.png"],
            },
            None,  # refused only when the image is imported, never fetched
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"},
                ],
                "system": "other",
            },
            "bad_row",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "<image>Q"},
                    {"role": "assistant", "content": "A"},
                ],
                "image": "a.png",
                "images": ["a.png"],
            },
            "bad_row",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "<image>Q"},
                    {"role": "assistant", "content": "A"},
                ],
                "images": [{"bytes": "AAAA"}],
            },
            "bad_image_ref",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"},
                ],
                "videos": ["v.mp4"],
            },
            "unsupported_media",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image", "image": "a.png"}]},
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"},
                ]
            },
            "image_misplaced",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]},
                    {"role": "assistant", "content": "A"},
                ]
            },
            "unsupported_media",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]},
                    {"role": "assistant", "content": "A"},
                ]
            },
            "image_count_mismatch",  # a bare image part takes the row's next image: none
        ),
    ],
)
def test_row_checks(row: dict, reason: str | None) -> None:
    converter = ShareGPTConverter(ChatOptions(Path("/nonexistent")))
    if reason is None:
        parsed = converter.parse_row(row, "x")
        imported = converter.import_image(parsed.images[0], None)  # type: ignore[arg-type]
        assert imported.reason == "image_remote"
        return
    with pytest.raises(RowProblem) as problem:
        converter.parse_row(row, "x")
    assert problem.value.reason == reason


def test_the_command_validate_suggests_works(tmp_path: Path) -> None:
    root = tmp_path / "src"
    build_sharegpt_tree(root, "json")
    src = root / "media" / "rows.jsonl"  # beside the images: the default image folder
    src.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows(root)))
    report = validate_paths([src], ValidateOptions(workers=1, check_images=False))
    hints = [p.message for p in report.problems if p.code == "foreign_format"]
    assert len(hints) == len(rows(root))
    command = shlex.split(hints[0].split("convert the file: ", 1)[1])
    assert command == ["phi3v", "convert", "sharegpt", str(src), "-o", "OUT"]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*command[1:-1], str(out)])
    assert result.exit_code == 0, result.output
    assert _records(out / "sharegpt_train.jsonl") == _expected(root)
