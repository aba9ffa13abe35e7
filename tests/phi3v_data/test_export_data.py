"""`phi3v export-data`: converted folders -> LLaVA / ShareGPT files, and back again."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from converters.chat import ChatOptions
from converters.framework import RunSettings, run_conversion
from converters.samples.llava import build_llava_tree
from converters.samples.still_images import image_bytes, write
from converters.sources.llava import LlavaConverter
from converters.sources.sharegpt import ShareGPTConverter
from phi3v_cli.app import COMMAND_ORDER, app
from phi3v_data.export_data import ExportError, NothingExported, export_data
from phi3v_data.validate import ValidateOptions, validate_paths

CONVERTERS = {"llava": LlavaConverter, "sharegpt": ShareGPTConverter}
runner = CliRunner()


def _turn(images: list[str], user: str, assistant: str) -> dict:
    return {"images": images, "user": user, "assistant": assistant}


RECORDS = [
    {
        "id": "two-free",
        "source": "mine",
        "conversations": [_turn(["a.png", "sub/b.jpg"], "What differs?", "Colour.")],
        "meta": {"system": "Answer briefly.", "answers": ["Colour.", "The colour."]},
    },
    {
        "id": "tagged",
        "source": "mine",
        "conversations": [
            _turn(["a.png", "sub/b.jpg"], "Compare <|image_1|> and <|image_2|>.", "Alike.")
        ],
    },
    {
        "id": "later",
        "source": "mine",
        "conversations": [
            _turn([], "Hello.", "Hi."),
            _turn(["sub/b.jpg"], "What is it?", "A gradient."),
            _turn(["a.png"], "And <|image_2|>?", "Another."),
        ],
    },
    {"id": "text", "source": "mine", "conversations": [_turn([], "Say hi.", "Hi.")]},
]
LLAVA_ROWS = [
    {
        "id": "two-free",
        "image": ["a.png", "sub/b.jpg"],
        "conversations": [
            {"from": "system", "value": "Answer briefly."},
            {"from": "human", "value": "<image><image>\nWhat differs?"},
            {"from": "gpt", "value": "Colour."},
        ],
    },
    {
        "id": "tagged",
        "image": ["a.png", "sub/b.jpg"],
        "conversations": [
            {"from": "human", "value": "Compare <image> and <image>."},
            {"from": "gpt", "value": "Alike."},
        ],
    },
    {
        "id": "later",
        "image": ["sub/b.jpg", "a.png"],
        "conversations": [
            {"from": "human", "value": "Hello."},
            {"from": "gpt", "value": "Hi."},
            {"from": "human", "value": "<image>\nWhat is it?"},
            {"from": "gpt", "value": "A gradient."},
            {"from": "human", "value": "And <image>?"},
            {"from": "gpt", "value": "Another."},
        ],
    },
    {
        "id": "text",
        "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}],
    },
]
SHAREGPT_ROWS = [
    {
        "id": "two-free",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "<image><image>\nWhat differs?"},
            {"role": "assistant", "content": "Colour."},
        ],
        "images": ["a.png", "sub/b.jpg"],
    },
    {
        "id": "tagged",
        "messages": [
            {"role": "user", "content": "Compare <image> and <image>."},
            {"role": "assistant", "content": "Alike."},
        ],
        "images": ["a.png", "sub/b.jpg"],
    },
    {
        "id": "later",
        "messages": [
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "<image>\nWhat is it?"},
            {"role": "assistant", "content": "A gradient."},
            {"role": "user", "content": "And <image>?"},
            {"role": "assistant", "content": "Another."},
        ],
        "images": ["sub/b.jpg", "a.png"],
    },
    {
        "id": "text",
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi."},
        ],
        "images": [],
    },
]
EXPECTED_ROWS = {"llava": LLAVA_ROWS, "sharegpt": SHAREGPT_ROWS}


def _dataset(root: Path, extra: list[dict] | None = None) -> Path:
    """A hand-made folder: train.jsonl and images/ (no manifest)."""
    write(root / "images/a.png", image_bytes(30, 20, "PNG", 1))
    write(root / "images/sub/b.jpg", image_bytes(20, 30, "JPEG", 2))
    lines = [orjson.dumps(record) + b"\n" for record in RECORDS + (extra or [])]
    write(root / "train.jsonl", b"".join(lines))
    return root


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _rows(path: Path) -> list[dict]:
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        return [orjson.loads(line) for line in data.splitlines()]
    return orjson.loads(data)


def _comparable(record: dict) -> dict:
    """What a round trip keeps: all but the source and meta other than meta.system."""
    kept = {key: value for key, value in record.items() if key not in ("source", "meta")}
    system = (record.get("meta") or {}).get("system")
    if system is not None:
        kept["meta"] = {"system": system}
    return kept


def _convert_back(fmt: str, file: Path, image_folder: Path, out: Path) -> Path:
    converter = CONVERTERS[fmt](ChatOptions(image_folder.resolve()))
    run_conversion(converter, file, RunSettings(out))
    return out / f"{fmt}_train.jsonl"


@pytest.mark.parametrize("fmt", ["llava", "sharegpt"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_rows_exactly_and_the_round_trip(tmp_path: Path, fmt: str, suffix: str) -> None:
    folder = _dataset(tmp_path / "ds")
    output = tmp_path / f"export{suffix}"
    summary = export_data(folder, fmt, output)
    assert (summary.records, summary.turns, summary.images) == (4, 6, 6)
    assert summary.meta_left_out == 1 and not summary.skipped
    assert _rows(output) == EXPECTED_ROWS[fmt]
    data = output.read_bytes()
    if suffix == ".json":  # one JSON array, a row per line
        assert data.startswith(b"[\n{") and data.endswith(b"}\n]\n")
        assert len(data.splitlines()) == 4 + 2
    else:
        assert len(data.splitlines()) == 4
    back = _convert_back(fmt, output, folder / "images", tmp_path / "back")
    assert [_comparable(r) for r in _records(back)] == [_comparable(r) for r in RECORDS]
    assert {r["source"] for r in _records(back)} == {fmt}


@pytest.mark.parametrize("fmt", ["llava", "sharegpt"])
def test_converted_llava_folder_round_trips(tmp_path: Path, fmt: str) -> None:
    src = build_llava_tree(tmp_path / "src", "json")
    out = tmp_path / "out"
    run_conversion(LlavaConverter(ChatOptions(src.parent.resolve())), src, RunSettings(out))
    exported = tmp_path / f"{fmt}.json"
    export_data(out, fmt, exported)
    back = _convert_back(fmt, exported, out / "images", tmp_path / "back")
    assert [_comparable(r) for r in _records(back)] == [
        _comparable(r) for r in _records(out / "llava_train.jsonl")
    ]
    assert validate_paths([back.parent], ValidateOptions(workers=1)).ok


def test_image_root_and_per_line_layout(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds")
    output = tmp_path / "per-line.json"
    summary = export_data(folder, "llava", output, image_root=tmp_path, image_layout="per-line")
    assert summary.image_root == tmp_path
    first = _rows(output)[0]
    assert first["image"] == ["ds/images/a.png", "ds/images/sub/b.jpg"]
    assert first["conversations"][1]["value"] == "<image>\n<image>\nWhat differs?"
    back = _convert_back("llava", output, tmp_path, tmp_path / "back")
    assert _records(back)[0]["conversations"][0] == _turn(
        ["ds/images/a.png", "ds/images/sub/b.jpg"],
        "<|image_1|>\n<|image_2|>\nWhat differs?",
        "Colour.",
    )


def test_unexportable_records_are_skipped_with_the_reason(tmp_path: Path) -> None:
    bad = [
        {
            "id": "literal",
            "source": "mine",
            "conversations": [_turn([], "What is <image>?", "A tag.")],
        },
        {
            "id": "wrong-tags",
            "source": "mine",
            "conversations": [_turn(["a.png"], "<|image_2|>", "A.")],
        },
        {"id": "no-turns", "source": "mine", "conversations": []},
    ]
    folder = _dataset(tmp_path / "ds", bad)
    with (folder / "train.jsonl").open("ab") as stream:
        stream.write(b"{not json\n")
    summary = export_data(folder, "sharegpt", tmp_path / "out.json")
    assert summary.records == 4
    reasons = {where.rsplit(":", 1)[1]: why for where, why in summary.skipped}
    assert set(reasons) == {"5", "6", "7", "8"}
    assert "contains '<image>'" in reasons["5"]
    assert reasons["6"].startswith("turn 1: tags <|image_2|> do not match")
    assert "not a valid phi3v record" in reasons["7"]
    assert "invalid JSON" in reasons["8"]


def test_refusals(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds")
    output = tmp_path / "x.json"
    export_data(folder, "llava", output)
    with pytest.raises(ExportError, match="exists: use --overwrite"):
        export_data(folder, "llava", output)
    export_data(folder, "llava", output, overwrite=True)
    with pytest.raises(ExportError, match=r"\*\.jsonl file inside"):
        export_data(folder, "sharegpt", folder / "sharegpt.jsonl")
    write(folder / "val.jsonl", orjson.dumps(RECORDS[3]) + b"\n")
    with pytest.raises(ExportError, match=r"several splits \(train, val\): choose one"):
        export_data(folder, "llava", tmp_path / "y.json")
    with pytest.raises(ExportError, match="no split 'test'"):
        export_data(folder, "llava", tmp_path / "y.json", split="test")
    assert _rows(export_data(folder, "llava", tmp_path / "y.json", split="val").output) == [
        LLAVA_ROWS[3]
    ]
    empty = tmp_path / "empty"
    write(empty / "train.jsonl", b'{"id": "x"}\n')
    with pytest.raises(NothingExported):
        export_data(empty, "llava", tmp_path / "z.json")
    assert not (tmp_path / "z.json").exists()


def test_cli(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds")
    output = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["export-data", str(folder), "-f", "sharegpt", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert _rows(output) == SHAREGPT_ROWS
    text = " ".join(result.output.split())
    assert "wrote 4 records (6 turns, 6 images)" in text
    assert f"phi3v convert sharegpt {output} -o OUT --image-folder {folder / 'images'}" in text
    # The exported file is what `phi3v validate` sends back to the converter.
    report = validate_paths([output], ValidateOptions(workers=1, check_images=False))
    assert {p.code for p in report.problems} == {"foreign_format"}
    assert all("phi3v convert sharegpt" in p.message for p in report.problems)
    again = runner.invoke(app, ["export-data", str(folder), "-f", "llava", "-o", str(output)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad_format = runner.invoke(app, ["export-data", str(folder), "-f", "csv", "-o", str(output)])
    assert bad_format.exit_code == 2
    empty = tmp_path / "empty"
    write(empty / "train.jsonl", b'{"id": "x"}\n')
    nothing = runner.invoke(
        app, ["export-data", str(empty), "-f", "llava", "-o", str(tmp_path / "n.json")]
    )
    assert nothing.exit_code == 1
    assert COMMAND_ORDER.index("export-data") == COMMAND_ORDER.index("report") + 1
    listing = runner.invoke(app, ["--help"]).output
    assert listing.index("report") < listing.index("export-data") < listing.index("init-model")
