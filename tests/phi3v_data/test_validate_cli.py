"""`phi3v validate` through Typer's CliRunner: output, JSON report, exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_data.sample_data import (
    DEFECT_COUNTS,
    DEMO_MAX_LENGTH,
    write_defective_dataset,
    write_sample_dataset,
)
from phi3v_data.validate import CODES

runner = CliRunner()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("validate_cli")
    clean = write_sample_dataset(out / "sample")
    return clean, write_defective_dataset(clean, out / "sample_defects")


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_clean_dataset_exits_0_with_stats(datasets: tuple[Path, Path]) -> None:
    code, output = _invoke(str(datasets[0]), "--max-length", str(DEMO_MAX_LENGTH), "--workers", "1")
    assert code == 0, output
    assert "OK: 18 records in 2 files, no problems." in output
    assert "26 references, 17 files checked" in output
    assert "estimated, pass --tokenizer for exact" in output and "p50" in output


def test_defects_exit_1_with_counts_and_examples(datasets: tuple[Path, Path]) -> None:
    code, output = _invoke(
        str(datasets[1]), "--max-length", str(DEMO_MAX_LENGTH), "--workers", "1", "--examples", "1"
    )
    assert code == 1
    for name, count in DEFECT_COUNTS.items():
        if count:
            assert name in output
    assert "sample_train.jsonl:27  id=d-image-missing  conversations[0].images[0]" in output
    assert "FAILED: 41 records in 4 files, 26 errors, 5 warnings." in output


def test_json_report_to_file_and_stdout(datasets: tuple[Path, Path], tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    code, output = _invoke(
        str(datasets[1]), "--workers", "1", "--format", "json", "--output", str(report_path)
    )
    assert code == 1 and "Report:" in output
    report = orjson.loads(report_path.read_bytes())
    assert report["errors"] == 24 and report["warnings"] == 5  # no --max-length: no budget
    first = report["problems"][0]
    assert set(first) >= {"file", "line", "record_id", "field", "code", "message", "hint"}
    missing = [p for p in report["problems"] if p["code"] == "image_missing"]
    assert [(p["line"], p["record_id"]) for p in missing] == [(27, "d-image-missing")]
    code, output = _invoke(str(datasets[0]), "--workers", "1", "--format", "json")
    assert code == 0 and orjson.loads(output)["problems"] == []


def test_strict_fails_on_warnings(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    line = b'{"id": "a", "source": "s", "conversations": [{"images": [], "user": "Q", "assistant": "A"}]}\n'
    path.write_bytes(line + b"\n")
    assert _invoke(str(path))[0] == 0
    code, output = _invoke(str(path), "--strict")
    assert code == 1 and "blank_line" in output


def _record(record_id: str) -> dict:
    turn = {"images": [], "user": "Q?", "assistant": "A."}
    return {"id": record_id, "source": "s", "conversations": [turn]}


@pytest.mark.parametrize("indent", [True, False], ids=["pretty", "one-line"])
def test_json_array_file_is_one_problem(tmp_path: Path, indent: bool) -> None:
    path = tmp_path / "data.json"
    option = orjson.OPT_INDENT_2 if indent else 0
    path.write_bytes(orjson.dumps([_record("a"), _record("b")], option=option) + b"\n")
    code, output = _invoke(str(path), "--no-images")
    text = " ".join(output.split())  # rich wraps long lines
    assert code == 1
    assert f"{path}: the file is one JSON array of 2 records, not JSONL: JSONL needs one" in text
    assert f"jq -c '.[]' {path} > {tmp_path / 'data.jsonl'}" in text
    assert "json_array" in text and "bad_json" not in text
    assert ", 1 errors, 0 warnings." in text
    code, output = _invoke(str(path), "--no-images", "--format", "json")
    report = orjson.loads(output)
    assert code == 1 and report["counts_by_code"] == {"json_array": 1}
    [problem] = report["problems"]
    assert (problem["file"], problem["line"], problem["hint"]) == (
        str(path),
        None,
        CODES["json_array"].hint,
    )


def test_llava_and_sharegpt_records_name_their_converter(tmp_path: Path) -> None:
    llava = {
        "id": "1",
        "image": "a.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is it?"},
            {"from": "gpt", "value": "A cat."},
        ],
    }
    sharegpt = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    }
    path = tmp_path / "foreign.jsonl"
    path.write_bytes(orjson.dumps(llava) + b"\n" + orjson.dumps(sharegpt) + b"\n")
    code, output = _invoke(str(path), "--no-images")
    text = " ".join(output.split())
    assert code == 1 and "FAILED: 2 records in 1 file, 2 errors, 0 warnings." in text
    assert f"phi3v convert llava {path} -o OUT" in text
    assert f"phi3v convert sharegpt {path} -o OUT" in text
    assert "'The record format'" in text and "schema" not in text.split("Dataset")[0]
    report = orjson.loads(_invoke(str(path), "--no-images", "--format", "json")[1])
    assert [(p["code"], p["line"], p["record_id"]) for p in report["problems"]] == [
        ("foreign_format", 1, "1"),
        ("foreign_format", 2, None),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give at least one"),
        (["missing.jsonl"], "does not exist"),
        (["{clean}", "--num-crops", "0"], "num_crops must be between 1 and 16"),
        (["{clean}", "--num-crops", "17"], "num_crops must be between 1 and 16"),
        (["{clean}", "--tokenizer", "{clean}"], "has no tokenizer.json"),
        (["{clean}", "--no-images", "--max-length", "100"], "drop --no-images"),
        (["{clean}", "--format", "xml"], "xml"),
    ],
)
def test_usage_errors_exit_2(datasets: tuple[Path, Path], args: list[str], message: str) -> None:
    code, output = _invoke(*(a.format(clean=datasets[0]) for a in args))
    assert code == 2
    assert message in " ".join(output.split())  # rich wraps long messages


def test_list_codes_prints_the_table() -> None:
    code, output = _invoke("--list-codes")
    assert code == 0
    for name, info in CODES.items():
        assert name in output and info.severity in output
    # Hints with brackets are printed as written, not read as markup.
    assert "jq -c '.[]' IN.json > OUT.jsonl" in " ".join(output.split())


def test_validate_is_in_the_top_level_help() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "validate" in result.output
