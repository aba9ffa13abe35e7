"""`phi3v validate` through Typer's CliRunner: output, JSON report, exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from phi3v_data.cli import app
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


def test_validate_is_in_the_top_level_help() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "validate" in result.output
