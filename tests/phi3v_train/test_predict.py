"""`phi3v predict --input`: partial and total failures are reported, not hidden."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_data.records import Record, Turn


def _write(path: Path, records: list[Record]) -> Path:
    path.write_bytes(b"".join(r.to_json_line() for r in records))
    return path


def test_predict_input_with_failed_samples_exits_1_and_counts_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "images" / "red.png")
    data = _write(
        tmp_path / "questions.jsonl",
        [
            Record("ok", "t", (Turn("What colour?", "", ("red.png",)),)),
            Record("lost", "t", (Turn("What colour?", "", ("missing.png",)),)),
        ],
    )
    out = tmp_path / "answers.jsonl"
    args = ["predict", "-m", str(tiny_model_dir), "--input", str(data), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "2"], env={"COLUMNS": "1000"})
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "1 of 2 answers written" in text
    assert "1 of 2 sample(s) failed" in text and "lost" in text and "missing.png" in text
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["ok", "lost"]
    assert isinstance(lines[0]["prediction"], str) and "error" not in lines[0]
    assert lines[1]["prediction"] is None and "missing.png" in lines[1]["error"]
