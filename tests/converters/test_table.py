"""`phi3v convert table`: every input format, image cells, prompts, answers, splits, skips."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from converters.converter import (
    ConversionError,
    ItemResult,
    NothingConverted,
    OutputContext,
    WorkItem,
)
from converters.framework import RunSettings, run_conversion
from converters.samples.table import URL, build_table_tree
from converters.sources.table import TableConverter
from converters.table_columns import TableOptions, render_prompt
from phi3v_cli.convert import convert_app
from phi3v_data.flags import FlagError
from phi3v_data.validate import ValidateOptions, validate_paths

FILE_SKIPS = {
    "empty_answer": 1,
    "image_corrupt": 1,
    "image_missing": 1,
    "image_path_escapes": 1,
    "image_url": 1,
}


def _options(**changes: object) -> TableOptions:
    values: dict[str, object] = {
        "image_columns": ("image",),
        "question_column": "question",
        "answer_column": "answer",
        "answers_column": "answers",
    }
    values.update(changes)
    return TableOptions(**values)  # type: ignore[arg-type]


def _convert(src: Path, out: Path, workers: int = 1, **changes: object):
    converter = TableConverter(_options(**changes))
    return run_conversion(converter, src, RunSettings(out, workers=workers))


def _records(out: Path, split: str, source: str = "table") -> list[dict]:
    path = out / f"{source}_{split}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _valid(out: Path) -> bool:
    return validate_paths([out], ValidateOptions(workers=1)).ok


def _cli() -> typer.Typer:
    """`phi3v convert` on its own: `table ...` runs the command the registry's source makes."""
    return convert_app()


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "json"])
def test_file_formats_with_split_column(tmp_path: Path, kind: str) -> None:
    src = build_table_tree(tmp_path / "src", kind)
    out = tmp_path / "out"
    summary = _convert(src, out, split_column="split")
    assert list(summary.splits) == ["train", "val", "test"]
    assert summary.splits["train"].records == 3
    assert summary.splits["train"].skipped == FILE_SKIPS
    assert summary.splits["val"].records == 2 and summary.splits["test"].records == 2
    assert summary.splits["test"].inference_only and not summary.splits["train"].inference_only
    train = _records(out, "train")
    assert [r["id"] for r in train] == ["table-train-0", "table-train-1", "table-train-2"]
    first = train[0]
    assert first["source"] == "table"
    turn = first["conversations"][0]
    assert turn["user"] == "What is shown in train picture 0?"
    assert turn["assistant"] == "gradient 0"
    assert first["meta"]["answers"] == ["gradient 0", "a gradient 0"]
    assert first["meta"]["original_images"] == ["images/r0.png"]
    where = {"jsonl": "table.jsonl:1", "json": "table.json: row 0"}.get(kind, f"table.{kind}:2")
    assert first["meta"]["table_row"] == where
    assert turn["images"][0].startswith("table/") and turn["images"][0].endswith(".png")
    # A JPEG named .png is stored as .jpg; a list cell gives two images, in order.
    assert train[1]["conversations"][0]["images"][0].endswith(".jpg")
    two = train[2]
    assert len(two["conversations"][0]["images"]) == 2
    assert two["meta"]["original_images"] == ["images/r2a.png", "images/sub/r2b.png"]
    test = _records(out, "test")
    assert [r["id"] for r in test] == ["table-test-0", "table-test-1"]
    assert all(r["conversations"][0]["assistant"] == "" for r in test)
    assert all("answers" not in r["meta"] for r in test)
    # Every skipped row is named by file and line/row, with a reason.
    by_reason = {skip.reason: skip for skip in summary.skips}
    assert set(by_reason) == set(FILE_SKIPS)
    assert all(skip.item.startswith(f"table.{kind}") for skip in summary.skips)
    assert URL in by_reason["image_url"].detail
    assert "../outside.png" in by_reason["image_path_escapes"].detail
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert len(manifest["skips"]) == 5 and manifest["source"] == "table"
    assert _valid(out)


def test_csv_without_split_options_is_one_train_split(tmp_path: Path) -> None:
    src = build_table_tree(tmp_path / "src", "csv")
    summary = _convert(src, tmp_path / "out", answers_column=None)
    assert list(summary.splits) == ["train"]
    # val rows join train; the test rows' empty answers are skips in a split with answers.
    assert summary.splits["train"].records == 5
    assert summary.splits["train"].skipped["empty_answer"] == 3
    ids = [r["id"] for r in _records(tmp_path / "out", "train")]
    assert ids == [
        "table-train-0",
        "table-train-1",
        "table-train-2",
        "table-train-8",
        "table-train-9",
    ]
    assert all("answers" not in r["meta"] for r in _records(tmp_path / "out", "train"))


@pytest.mark.parametrize(
    ("kind", "splits", "train_skips"),
    [
        (
            "parquet",
            {"train": 2, "validation": 2, "test": 2},
            {"empty_answer": 1, "image_corrupt": 1, "image_missing": 1, "image_url": 1},
        ),
        (
            "disk",
            {"train": 3, "validation": 2, "test": 2},
            {"empty_answer": 1, "image_corrupt": 1, "image_missing": 1},
        ),
        (
            "parquet-folder",
            {"train": 3, "validation": 2, "test": 2},
            {"empty_answer": 1, "image_corrupt": 1, "image_missing": 1},
        ),
    ],
)
def test_embedded_bytes_and_hugging_face_copies(
    tmp_path: Path, kind: str, splits: dict[str, int], train_skips: dict[str, int]
) -> None:
    src = build_table_tree(tmp_path / "src", kind)
    out = tmp_path / "out"
    # A single parquet file is split by its column; Hugging Face copies keep their splits.
    split_column = "split" if kind == "parquet" else None
    summary = _convert(src, out, split_column=split_column, id_column="id")
    assert {name: s.records for name, s in summary.splits.items()} == splits
    assert summary.splits["train"].skipped == train_skips
    assert summary.splits["test"].inference_only
    train = _records(out, "train")
    assert [r["id"] for r in train][:2] == ["r0", "r1"]  # the id column as is
    assert train[1]["conversations"][0]["images"][0].endswith(".jpg")
    assert "original_images" not in train[0]["meta"]  # embedded bytes have no name
    assert train[0]["meta"]["answers"] == ["gradient 0", "a gradient 0"]
    skipped = {skip.reason: skip.item for skip in summary.skips}
    assert skipped["image_missing"].endswith(": row 2")
    # The image list column: three images per record, the single image first.
    both = tmp_path / "both"
    _convert(src, both, split_column=split_column, image_columns=("image", "pair"))
    images = _records(both, "train")[0]["conversations"][0]["images"]
    assert len(images) == 3 and images[0] == train[0]["conversations"][0]["images"][0]
    assert len(set(images)) == 3
    assert _valid(out) and _valid(both)


def test_prompt_template_meta_columns_and_split(tmp_path: Path) -> None:
    src = build_table_tree(tmp_path / "src", "jsonl")
    out = tmp_path / "out"
    options = {
        "question_column": None,
        "prompt": "Describe {topic} ({note}).\nAnswer briefly.",
        "meta_columns": ("note", "split"),
        "split": "all",
        "source": "my_pictures",
    }
    summary = _convert(src, out, **options)
    assert list(summary.splits) == ["all"]
    records = _records(out, "all", source="my_pictures")
    first = records[0]
    assert first["id"] == "my_pictures-all-0" and first["source"] == "my_pictures"
    assert first["conversations"][0]["user"] == "Describe train picture 0 (row 0).\nAnswer briefly."
    assert first["meta"]["note"] == "row 0" and first["meta"]["split"] == "train"
    assert first["conversations"][0]["images"][0].startswith("my_pictures/")
    assert _valid(out)
    assert render_prompt("{a.b!r:>6}|{x[0]}", {"a.b": "v", "x[0]": None}) == "   'v'|"


def test_path_safety_absolute_paths_and_image_dir(tmp_path: Path) -> None:
    src = build_table_tree(tmp_path / "src", "csv")
    images = src.parent / "images"
    outside = src.parent / "outside.png"  # outside --image-dir
    outside.write_bytes((images / "r0.png").read_bytes())
    (images / "link.png").symlink_to(outside)
    table = tmp_path / "other" / "val.csv"
    table.parent.mkdir()
    rows = [
        "id,image,question,answer",
        f"a1,{images / 'r0.png'},Absolute?,yes",
        "a2,../outside.png,Outside?,yes",
        "a3,./sub/../r0.png,Relative to --image-dir?,yes",
        "a4,link.png,Symlink out?,yes",
    ]
    table.write_text("\n".join(rows) + "\n")
    base = {"answers_column": None, "id_column": "id", "image_dir": str(images)}
    strict = _convert(table, tmp_path / "strict", **base)
    assert {skip.item: skip.reason for skip in strict.skips} == {
        "val.csv:2": "image_path_absolute",
        "val.csv:3": "image_path_escapes",
        "val.csv:5": "image_path_escapes",
    }
    assert list(strict.splits) == ["val"]  # the file's name is a split name
    assert [r["id"] for r in _records(tmp_path / "strict", "val")] == ["a3"]
    loose = tmp_path / "loose"
    summary = _convert(table, loose, **base, allow_absolute_paths=True)
    assert summary.skips == [] and summary.splits["val"].records == 4
    assert _valid(loose)
    # Without --image-dir, paths are relative to the table's folder.
    with pytest.raises(NothingConverted) as plain:
        _convert(table, tmp_path / "plain", answers_column=None, id_column="id")
    skips = {skip.item: skip for skip in plain.value.summary.skips}
    assert skips["val.csv:4"].reason == "image_missing"
    assert str(table.parent) in skips["val.csv:4"].detail


def test_several_inputs_go_in_order_and_share_images(tmp_path: Path) -> None:
    first = build_table_tree(tmp_path / "a", "csv")
    second = build_table_tree(tmp_path / "b", "csv")
    out = tmp_path / "out"
    summary = _convert(first, out, split_column="split", inputs=(str(first), str(second)))
    assert summary.splits["train"].records == 6
    ids = [r["id"] for r in _records(out, "train")]
    assert ids == [f"table-train-{i}" for i in (0, 1, 2, 8, 9, 10)]
    rows = [r["meta"]["table_row"] for r in _records(out, "train")]
    assert rows[0] == "a/table.csv:2" and rows[3] == "b/table.csv:2"  # same names: folders
    single = tmp_path / "single"
    _convert(first, single, split_column="split")
    count = len([p for p in (out / "images").rglob("*") if p.is_file()])
    assert count == len([p for p in (single / "images").rglob("*") if p.is_file()])
    with pytest.raises(ConversionError, match="given twice"):
        _convert(first, tmp_path / "twice", inputs=(str(first), str(first)))


def test_bad_rows_ids_and_answers_are_skipped_with_reasons(tmp_path: Path) -> None:
    build_table_tree(tmp_path, "csv")
    table = tmp_path / "rows.jsonl"
    lines = [
        {"id": "a", "image": "images/r0.png", "question": "Q?", "answer": "A", "answers": "[1, 2]"},
        {"id": "a", "image": "images/r0.png", "question": "Q?", "answer": "A"},
        {"id": None, "image": "images/r0.png", "question": "Q?", "answer": "A"},
        {"id": "b", "image": "images/r0.png", "question": " ", "answer": "A"},
        {"id": "c", "image": "images/r0.png", "question": "Q?", "answer": {"x": 1}},
        {"id": "d", "image": "images/r0.png", "question": "Q?", "answer": "A", "answers": "a|b"},
        {"id": "e", "image": [], "question": "Q?", "answer": "A"},
        {"id": "f", "image": 7, "question": "Q?", "answer": "A"},
        {"id": "g", "image": "images/r0.png", "question": "Q?", "answer": 3, "split": "no way"},
    ]
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines) + b"{broken\n[1]\n\n"
    table.write_bytes(body)
    out = tmp_path / "out"
    summary = _convert(table, out, id_column="id")
    reasons = {skip.item: skip.reason for skip in summary.skips}
    assert reasons == {
        "rows.jsonl:2": "duplicate_id",
        "rows.jsonl:3": "bad_id",
        "rows.jsonl:4": "empty_question",
        "rows.jsonl:5": "bad_answer",
        "rows.jsonl:6": "bad_answers",
        "rows.jsonl:7": "image_missing",
        "rows.jsonl:8": "bad_image_cell",
        "rows.jsonl:10": "bad_line",
        "rows.jsonl:11": "bad_row",
    }
    records = _records(out, "train")
    assert [r["id"] for r in records] == ["a", "g"]
    assert records[0]["meta"]["answers"] == ["1", "2"]
    assert records[1]["conversations"][0]["assistant"] == "3"
    # No row has a usable split: nothing is written, and each row says why.
    with pytest.raises(NothingConverted) as nothing:
        _convert(table, tmp_path / "split", id_column="id", split_column="split")
    skips = {skip.item: skip.reason for skip in nothing.value.summary.skips}
    assert skips["rows.jsonl:9"] == "bad_split" and skips["rows.jsonl:10"] == "bad_line"
    assert nothing.value.summary.splits == {}
    # A CSV row with the wrong number of fields is named by its line.
    (tmp_path / "short.csv").write_text("image,question,answer\nimages/r0.png,Q?\n")
    with pytest.raises(NothingConverted) as short:
        _convert(tmp_path / "short.csv", tmp_path / "short", answers_column=None)
    assert [(s.item, s.reason) for s in short.value.summary.skips] == [("short.csv:2", "bad_row")]


def test_missing_columns_and_bad_options_are_clear_errors(tmp_path: Path) -> None:
    src = build_table_tree(tmp_path / "src", "csv")
    with pytest.raises(ConversionError) as error:
        _convert(src, tmp_path / "o1", answer_column="label", id_column="key")
    message = str(error.value)
    assert "'label' (--answer-column)" in message and "'key' (--id-column)" in message
    assert "Columns found: 'id', 'image', 'question', 'answer', 'answers'" in message
    with pytest.raises(ConversionError, match=r"'page' \(--image-column\)"):
        _convert(
            build_table_tree(tmp_path / "pq", "parquet"), tmp_path / "o2", image_columns=("page",)
        )
    with pytest.raises(FlagError, match="--question-column COL or --prompt"):
        _options(prompt="{question}")
    with pytest.raises(FlagError, match="meta key 'answers'"):
        _options(meta_columns=("answers",))
    with pytest.raises(FlagError, match="not both"):
        _options(split="a", split_column="split")
    assert not (tmp_path / "o1").exists()


def test_cli_prompt_unknown_column_and_workers_give_identical_output(tmp_path: Path) -> None:
    src = build_table_tree(tmp_path / "src", "csv", extra=40)
    runner = CliRunner()
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        args = [
            "table",
            str(src),
            "-o",
            str(out),
            "--image-column",
            "image",
            "--prompt",
            "What is {topic}?\\nAnswer briefly.",
            "--answer-column",
            "answer",
            "--answers-column",
            "answers",
            "--split-column",
            "split",
            "--no-validate",
            "-j",
            workers,
        ]
        result = runner.invoke(_cli(), args)
        assert result.exit_code == 0, result.output
        outputs.append(out)
    one, two = outputs
    for name in ("table_train.jsonl", "table_val.jsonl", "table_test.jsonl"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    train = _records(one, "train")
    assert len(train) == 43
    assert train[0]["conversations"][0]["user"] == "What is train picture 0?\nAnswer briefly."
    images = sorted(p.relative_to(one) for p in (one / "images").rglob("*") if p.is_file())
    assert images == sorted(p.relative_to(two) for p in (two / "images").rglob("*") if p.is_file())
    unknown = runner.invoke(
        _cli(),
        [
            *("table", str(src), "-o", str(tmp_path / "bad"), "--image-column", "image"),
            *("--prompt", "{nope}", "--answer-column", "answer"),
        ],
    )
    text = unknown.output.replace("\n", " ")
    assert unknown.exit_code == 2 and "'nope' (--prompt)" in text and "Columns found" in text
    missing = runner.invoke(_cli(), ["table", str(src), "-o", str(tmp_path / "b2")])
    assert missing.exit_code == 2 and "--image-column" in missing.output


class Interrupting(TableConverter):
    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        if item.split == "train" and item.index == 20:
            raise KeyboardInterrupt
        return super().process(item, output)


def test_interrupted_run_resumes_to_the_same_output(tmp_path: Path) -> None:
    src = build_table_tree(tmp_path / "src", "parquet", extra=30)
    options = _options(split_column="split")
    out, clean = tmp_path / "out", tmp_path / "clean"
    with pytest.raises(KeyboardInterrupt):
        run_conversion(Interrupting(options), src, RunSettings(out))
    assert not (out / "manifest.json").exists()
    resumed = run_conversion(TableConverter(options), src, RunSettings(out, workers=2))
    assert resumed.resumed_shards == 1
    run_conversion(TableConverter(options), src, RunSettings(clean))
    for name in ("table_train.jsonl", "table_validation.jsonl", "table_test.jsonl"):
        assert (out / name).read_bytes() == (clean / name).read_bytes()
