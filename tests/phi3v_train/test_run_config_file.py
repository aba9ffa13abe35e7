"""`phi3v train --config FILE`: YAML settings under the command line; run_config.json is one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from train_fixtures import losses, write_colour_dataset
from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_train.run_file import RunFileError, config_from, merge_settings
from phi3v_train.run_report import read_train_log
from phi3v_train.train_config import TrainConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=2)


def _train_context(*args: str) -> typer.Context:
    """The `phi3v train` context for `args`, parsed but not run."""
    group = typer.main.get_command(app)
    command = group.get_command(None, "train")  # type: ignore[attr-defined]
    return command.make_context("train", list(args))


def _values(tmp_path: Path, text: str, *args: str) -> dict:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return merge_settings(_train_context("--config", str(path), *args), path)


def test_file_values_apply_where_no_flag_was_given(tmp_path: Path) -> None:
    text = (
        "model: m\noutput-dir: o\ndata_dir: [a, b]\nlr: 1e-4\nseed: 7\npacking: true\n"
        "lora_targets: [qkv_proj, o_proj]\nmix: {a: 2, b: 1}\nadam_beta2: 0.99\n"
    )
    values = _values(tmp_path, text, "--seed", "42", "-o", "elsewhere")
    config = config_from(values)
    assert config.seed == 42  # given on the command line, even though it is the default
    assert config.output_dir == Path("elsewhere")
    assert config.data_dir == (Path("a"), Path("b"))
    assert config.learning_rate == 1e-4  # YAML reads 1e-4 as a string; it is a float here
    assert config.packing is True
    assert config.lora_targets == ("qkv_proj", "o_proj")
    assert config.mix == "a=2,b=1"
    assert config.adam_beta2 == 0.99  # a setting with no flag
    assert config.model == Path("m")
    assert config.epochs == 1.0 and config.max_steps is None  # untouched defaults


def test_unknown_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    with pytest.raises(
        RunFileError, match="unknown key 'learning_rat'; did you mean 'learning_rate'"
    ):
        _values(tmp_path, "learning_rat: 0.1\n")
    with pytest.raises(
        RunFileError, match="unknown key 'per-device-batch'; did you mean 'per-device-batch-size'"
    ):
        _values(tmp_path, "per-device-batch: 2\n")
    with pytest.raises(RunFileError, match="set the same thing"):
        _values(tmp_path, "lr: 0.1\nlearning-rate: 0.2\n")


def test_a_bad_file_is_a_usage_error(colour_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(f"data-dir: {colour_dir}\nbatch-size: lots\nmodell: x\n")
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2
    assert "unknown key 'modell'; did you mean 'model'" in " ".join(result.output.split())
    path.write_text(f"data-dir: {colour_dir}\nbatch-size: lots\n")
    result = runner.invoke(app, ["train", "--config", str(path), "-m", "m", "-o", "o"])
    assert result.exit_code == 2
    assert "--batch-size: 'lots' is not a valid value" in result.output
    result = runner.invoke(app, ["train", "--config", str(path), "-o", "o", "--batch-size", "4"])
    assert result.exit_code == 2 and "--model/-m is required" in result.output
    path.write_text("data-dir: [no/such/folder]\n")
    result = runner.invoke(app, ["train", "--config", str(path), "-m", "m", "-o", "o"])
    assert result.exit_code == 2 and "no/such/folder: no such folder" in result.output


def test_run_config_json_repeats_the_run(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run.yaml"
    run.write_text(
        f"data-dir: [{colour_dir}]\nmodel: {tiny_model_dir}\noutput_dir: {tmp_path / 'unused'}\n"
        "num-crops: 1\nbatch-size: 4\nper-device-batch-size: 2\nlr: 2e-3\nsave-steps: 2\n"
        "report-to: none\nlora-rank: 8\nmax-steps: 5\n"
    )
    first = tmp_path / "first"
    result = runner.invoke(
        app, ["train", "--config", str(run), "--max-steps", "2", "-o", str(first)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((first / "run_config.json").read_text())
    assert (saved["max_steps"], saved["learning_rate"], saved["output_dir"]) == (
        2,
        2e-3,
        str(first),
    )
    assert TrainConfig.from_dict(saved).data_dir == (colour_dir,)

    again = tmp_path / "again"
    result = runner.invoke(
        app, ["train", "--config", str(first / "run_config.json"), "-o", str(again)]
    )
    assert result.exit_code == 0, result.output
    repeated = json.loads((again / "run_config.json").read_text())
    assert {**repeated, "output_dir": None} == {**saved, "output_dir": None}
    expected = losses(read_train_log(first))
    assert len(expected) == 2 and losses(read_train_log(again)) == expected
