"""`phi3v train` from the command line: refusals, pre-flight validation, eval during training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from train_fixtures import FAST_CLI_ARGS, write_colour_dataset
from typer.testing import CliRunner

from phi3v_cli.app import app

runner = CliRunner()


def _train(model: Path, data: Path, out: Path, *extra: str):
    args = ["train", "-d", str(data), "-m", str(model), "-o", str(out), *FAST_CLI_ARGS, *extra]
    result = runner.invoke(app, args, env={"COLUMNS": "1000"})
    return result, " ".join(result.output.split())


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


def test_flash_attention_with_fp16_is_refused(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    result, text = _train(
        tiny_model_dir, colour_dir, tmp_path / "o", "--fp16", "--attn", "flash_attention_2"
    )
    assert result.exit_code == 2
    assert "--attn flash_attention_2 with --fp16 is refused" in text and "Use --bf16" in text


def test_batch_size_must_divide(tiny_model_dir: Path, colour_dir: Path, tmp_path: Path) -> None:
    result, text = _train(tiny_model_dir, colour_dir, tmp_path / "o", "--batch-size", "5")
    assert result.exit_code == 2
    assert "--batch-size 5 is not a multiple of --per-device-batch-size 2" in text


def test_preflight_refuses_bad_data_and_skip_validation_trains_around_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = write_colour_dataset(tmp_path / "data", train=8, val=4)
    (data / "images" / "train" / "green_1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result, text = _train(tiny_model_dir, data, tmp_path / "refused", "--max-steps", "2")
    assert result.exit_code == 2
    assert "nothing was trained" in text and "colours_train.jsonl:2" in text
    assert not (tmp_path / "refused" / "checkpoint-2").exists()

    out = tmp_path / "run"
    result, text = _train(
        tiny_model_dir,
        data,
        out,
        "--max-steps",
        "4",
        "--skip-validation",
        "--eval-steps",
        "2",
        "--eval-max-samples",
        "2",
        "--max-new-tokens",
        "3",
    )
    assert result.exit_code == 0, result.output
    skipped = [json.loads(x) for x in (out / "skipped_samples.jsonl").read_text().splitlines()]
    assert {x["id"] for x in skipped} == {"train-0001"}
    assert {x["reason"] for x in skipped} == {"unreadable_image"}
    assert "unreadable_image" in text
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [e for e in log if "eval_loss" in e]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(0.0 <= e["eval_accuracy"] <= 1.0 for e in evals)
    shutil.rmtree(out)


def test_samples_over_max_length_are_dropped_and_counted(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    # At num_crops 1 an image takes 313 positions: 200 tokens hold only the text-only
    # samples; the validator's token budget finds the others before training starts.
    out = tmp_path / "o"
    result, text = _train(
        tiny_model_dir, colour_dir, out, "--max-length", "200", "--max-steps", "1"
    )
    assert result.exit_code == 0, result.output
    assert "6 sample(s): truncated where no image is cut, else dropped" in text
    skipped = [json.loads(x) for x in (out / "skipped_samples.jsonl").read_text().splitlines()]
    assert skipped and {x["reason"] for x in skipped} == {"dropped_too_long"}
    assert all(x["id"] not in ("train-0003", "train-0007") for x in skipped)  # text-only


def test_a_data_folder_or_hub_id_as_model_is_a_one_line_error_and_writes_nothing(
    colour_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result, text = _train(colour_dir, colour_dir, out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        f"--model {colour_dir}: not a checkpoint folder (no config.json or tokenizer.json)" in text
    )
    result, text = _train(Path("microsoft/Phi-3.5-vision-instruct"), colour_dir, out)
    assert result.exit_code == 2
    assert "phi3v never downloads at run time" in text
    assert "hf download microsoft/Phi-3.5-vision-instruct --local-dir" in text
    assert not out.exists()


def test_usage_errors_come_before_torch_is_imported(colour_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys; from typer.testing import CliRunner; from phi3v_cli.app import app;"
        f" r = CliRunner().invoke(app, ['train', '-d', {str(colour_dir)!r}, '-m',"
        f" {str(colour_dir)!r}, '-o', {str(tmp_path / 'o')!r}]);"
        " print(r.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr


def test_console_in_a_pipe_prints_plain_progress_lines_and_no_config_dump(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result, _ = _train(tiny_model_dir, colour_dir, out, "--max-steps", "4", "--eval-steps", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    steps = [line.split()[1] for line in lines if line.startswith("step ")]
    assert steps == ["1/4", "2/4", "3/4", "4/4"]  # 4 // 20 -> every step
    step_line = next(line for line in lines if line.startswith("step 2/4"))
    assert all(part in step_line for part in ("loss ", "lr ", "samples/s", "ETA "))
    evals = [line for line in lines if line.startswith("eval at step")]
    assert [line.split()[3] for line in evals] == ["2:", "4:"]
    assert "eval_loss" in evals[0] and "eval_accuracy" in evals[0]
    assert '"lora_targets"' not in result.output  # the settings are in run_config.json
    assert str(out / "run_config.json") in " ".join(result.output.split())
    assert "Setting accelerator to CPU" not in result.output


def test_ctrl_c_says_where_the_run_stands_and_how_to_resume(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import time

    from train_fixtures import cli_command, cli_env

    out = tmp_path / "run"
    command = cli_command(
        "train", "-d", colour_dir, "-m", tiny_model_dir, "-o", out, *FAST_CLI_ARGS,
        "--max-steps", "10000", "--save-steps", "2",
    )  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env()
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoint-2" / "COMPLETE").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]
    text = " ".join(output.split())
    assert "stopped at step" in text and "rerun the same command with --resume auto" in text
    assert "Traceback" not in output
    steps = sorted(int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/COMPLETE"))
    assert steps and f"checkpoint-{steps[-1]} is complete" in text


def test_jsonl_files_train_with_eval_files(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(colour_dir / "images", plain / "images")
    shutil.copy(colour_dir / "colours_train.jsonl", plain / "train.jsonl")
    shutil.copy(colour_dir / "colours_val.jsonl", plain / "val.jsonl")
    out = tmp_path / "run"
    common = ["train", str(plain / "train.jsonl"), "-m", str(tiny_model_dir), "-o", str(out)]
    result = runner.invoke(app, [*common, "--eval-split", "val", "--eval-steps", "2"])
    assert result.exit_code == 2
    assert "--eval-split needs --data-dir; with JSONL files pass --eval-files" in " ".join(
        result.output.split()
    )
    args = [*common, *FAST_CLI_ARGS, "--max-steps", "2", "--eval-steps", "2"]
    result = runner.invoke(app, [*args, "--eval-files", str(plain / "val.jsonl")])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "eval_loss" in e] == [2]
    # A folder of train.jsonl / val.jsonl is a data dir too, as for validate and report.
    result, _ = _train(tiny_model_dir, plain, tmp_path / "run2", "--max-steps", "1")
    assert result.exit_code == 0, result.output
