"""`phi3v eval`, `phi3v predict`, `phi3v export` on a tiny LoRA run (CPU)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from train_fixtures import cli_command, cli_env, fast_config, write_colour_dataset
from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_train.data import load_samples
from phi3v_train.metrics import score
from phi3v_train.train import run_training

runner = CliRunner()


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, colour_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "run"
    run_training(fast_config(tiny_model_dir, colour_dir, out, mode="lora", max_steps=4))
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_writes_predictions_and_the_metric(
    lora_run: Path, colour_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = _invoke(
        "eval",
        "-m",
        lora_run,
        "-d",
        colour_dir,
        "--split",
        "val",
        "-o",
        out,
        "--max-new-tokens",
        "4",
        "--batch-size",
        "3",
    )
    assert result.exit_code == 0, result.output
    predictions = _read_jsonl(out / "predictions.jsonl")
    metrics = json.loads((out / "metrics.json").read_text())
    assert [p["id"] for p in predictions] == ["val-0000", "val-0001", "val-0002", "val-0003"]
    assert {p["metric"] for p in predictions} == {"accuracy"}
    for p in predictions:
        assert p["score"] == score("accuracy", p["prediction"], p["answers"])
    assert metrics["accuracy"] == pytest.approx(sum(p["score"] for p in predictions) / 4)
    assert (metrics["scored"], metrics["failed"], metrics["samples"]) == (4, 0, 4)
    # An explicit --max-new-tokens wins over the gold-answer default (15 for this split).
    assert (metrics["max_new_tokens"], metrics["max_new_tokens_from"]) == (4, "--max-new-tokens")


def test_metric_auto_is_anls_for_docvqa(lora_run: Path, tmp_path: Path) -> None:
    data = write_colour_dataset(tmp_path / "docs", train=1, val=3, source="docvqa")
    out = tmp_path / "eval"
    result = _invoke("eval", "-m", lora_run, "-d", data, "-o", out, "--max-new-tokens", "3")
    assert result.exit_code == 0, result.output
    predictions = _read_jsonl(out / "predictions.jsonl")
    assert {p["metric"] for p in predictions} == {"anls"}
    metrics = json.loads((out / "metrics.json").read_text())
    expected = sum(score("anls", p["prediction"], p["answers"]) for p in predictions) / 3
    assert "accuracy" not in metrics and metrics["anls"] == pytest.approx(expected)


def test_predict_prompt_matches_eval(lora_run: Path, colour_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert (
        _invoke(
            "eval",
            "-m",
            lora_run,
            "-d",
            colour_dir,
            "-o",
            out,
            "--max-new-tokens",
            "5",
            "--batch-size",
            "1",
            "--max-samples",
            "1",
        ).exit_code
        == 0
    )
    expected = _read_jsonl(out / "predictions.jsonl")[0]["prediction"]
    image = colour_dir / "images" / "val" / "red_0.jpg"
    question = "What colour is this picture? Answer with one word."
    result = _invoke(
        "predict", "-m", lora_run, "--image", image, "--prompt", question, "--max-new-tokens", "5"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == expected


def test_predict_over_a_jsonl_file(lora_run: Path, colour_dir: Path, tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    result = _invoke(
        "predict",
        "-m",
        lora_run,
        "--input",
        colour_dir / "colours_val.jsonl",
        "-o",
        answers,
        "--max-new-tokens",
        "3",
    )
    assert result.exit_code == 0, result.output
    lines = _read_jsonl(answers)
    assert [x["id"] for x in lines] == ["val-0000", "val-0001", "val-0002", "val-0003"]
    assert all(isinstance(x["prediction"], str) for x in lines)


def test_export_merges_lora_into_an_official_checkpoint(
    lora_run: Path, tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from phi3v_train.data import load_images
    from phi3v_train.evaluate import load_for_inference

    refused = _invoke("export", "-m", lora_run, "-o", tmp_path / "x")
    assert refused.exit_code == 2 and "pass --merge-lora" in " ".join(refused.output.split())
    merged = tmp_path / "merged"
    result = _invoke("export", "-m", lora_run, "--merge-lora", "-o", merged)
    assert result.exit_code == 0, result.output
    assert set(load_file(merged / "model.safetensors")) == set(
        load_file(tiny_model_dir / "model.safetensors")
    )
    assert (merged / "tokenizer.json").is_file() and (merged / "preprocessor_config.json").is_file()
    # The base's dtype (the tiny base is fp32), said once; weights readable like every file.
    assert "(fp32 weights," in " ".join(result.output.split())
    assert (merged / "model.safetensors").stat().st_mode & 0o777 == 0o644

    sample = load_samples([colour_dir / "colours_val.jsonl"])[0]
    adapter_model, processor = load_for_inference(lora_run)
    merged_model, _ = load_for_inference(merged)
    batch = processor.collate([processor.encode(sample.record, load_images(sample))])
    inputs = {k: v for k, v in batch.items() if v is not None and k != "labels"}
    with torch.no_grad():
        expected = adapter_model(**inputs).logits
        actual = merged_model(**inputs).logits
    assert torch.allclose(actual, expected, atol=1e-4)


def test_eval_refuses_a_folder_that_is_not_a_model(colour_dir: Path, tmp_path: Path) -> None:
    result = _invoke("eval", "-m", tmp_path, "-d", colour_dir)
    assert result.exit_code == 2
    assert "no config.json (a checkpoint)" in " ".join(result.output.split())


@pytest.mark.slow
def test_eval_shards_across_processes(lora_run: Path, colour_dir: Path, tmp_path: Path) -> None:
    # Rank 1's shard is samples 1 and 3, and sample 3 is text-only: one rank generates
    # without an image while the other has one.
    val = load_samples([colour_dir / "colours_val.jsonl"])
    assert val[1].record.images and not val[3].record.images
    args = ("eval", "-m", lora_run, "-d", colour_dir, "--max-new-tokens", "4", "--batch-size", "1")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert _invoke(*args, "-o", single).exit_code == 0
    command = cli_command(*args, "-o", sharded, processes=2)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=cli_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert _read_jsonl(sharded / "predictions.jsonl") == _read_jsonl(single / "predictions.jsonl")


def test_unanswered_and_unreadable_samples_are_counted_not_scored(
    lora_run: Path, colour_dir: Path, tmp_path: Path
) -> None:
    from phi3v_data.records import Record, Turn

    images = colour_dir / "images"
    records = [
        Record("no-answer", "colours", (Turn("What colour?", "", ("val/red_0.jpg",)),)),
        Record("lost-image", "colours", (Turn("What colour?", "Red.", ("val/missing.jpg",)),)),
        Record("answered", "colours", (Turn("What colour?", "Green.", ("val/green_1.png",)),)),
    ]
    data = tmp_path / "inference.jsonl"
    data.write_bytes(b"".join(r.to_json_line() for r in records))
    out = tmp_path / "eval"
    result = _invoke(
        "eval", "-m", lora_run, data, "--image-root", images, "-o", out, "--max-new-tokens", "3"
    )
    assert result.exit_code == 0, result.output
    by_id = {p["id"]: p for p in _read_jsonl(out / "predictions.jsonl")}
    assert by_id["no-answer"]["score"] is None and isinstance(by_id["no-answer"]["prediction"], str)
    assert (
        by_id["lost-image"]["prediction"] is None and "missing.jpg" in by_id["lost-image"]["error"]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["scored"], metrics["unscored"], metrics["failed"]) == (1, 1, 1)
    assert metrics["accuracy"] == by_id["answered"]["score"]


def test_max_new_tokens_default_is_the_longest_gold_answer_plus_a_margin(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    from phi3v_data.records import Record, Turn
    from phi3v_train.data import Sample
    from phi3v_train.evaluate import TokenLimit, token_limit
    from phi3v_train.processing_phi3v import Phi3VProcessor

    tokenizer = Phi3VProcessor.from_pretrained(tiny_model_dir).tokenizer
    # The tiny tokenizer spells words nearly letter by letter: "Green." is the longest
    # answer of the val split (Red., Green., Blue., Hello.).
    assert tokenizer("Green.", add_special_tokens=False)["input_ids"] == [
        298, 74, 291, 279, 279, 288, 260,
    ]  # fmt: skip
    val = load_samples([colour_dir / "colours_val.jsonl"])
    assert {s.record.conversations[-1].assistant for s in val} == {
        "Red.", "Green.", "Blue.", "Hello.",
    }  # fmt: skip
    assert token_limit(val, tokenizer) == TokenLimit(15, 7)  # 7 + 8
    assert token_limit(val, tokenizer).origin == "longest gold answer (7 tokens) + 8"
    assert token_limit(val, tokenizer, 3) == TokenLimit(3)  # explicit wins
    # meta.answers (every gold answer) counts, not only the turn's answer.
    assert len(tokenizer("Greener.", add_special_tokens=False)["input_ids"]) == 8
    meta = Record(
        "q", "docvqa", (Turn("Date?", "Red.", ("a.png",)),), {"answers": ["Red.", "Greener."]}
    )
    assert token_limit([*val, Sample(meta, tmp_path, "meta:1")], tokenizer) == TokenLimit(16, 8)
    unanswered = [Sample(Record("u", "docvqa", (Turn("Date?", ""),)), tmp_path, "u:1")]
    assert token_limit(unanswered, tokenizer) == TokenLimit(64, 0)

    out = tmp_path / "eval"
    result = _invoke("eval", "-m", tiny_model_dir, "-d", colour_dir, "-o", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["max_new_tokens"] == 15
    assert metrics["max_new_tokens_from"] == "longest gold answer (7 tokens) + 8"
    assert "max new tokens: 15 (longest gold answer (7 tokens) + 8)" in " ".join(
        result.output.split()
    )


def test_hit_limit_reads_the_generated_ids() -> None:
    from phi3v_train.evaluate import hit_limit

    stop = {501, 498}  # <|end|>, <|endoftext|>
    assert hit_limit([298, 85], 2, stop)
    assert not hit_limit([298, 501], 2, stop)  # ended exactly at the limit
    assert not hit_limit([298], 2, stop)  # the whole batch ended early
    assert not hit_limit([501, 498, 498], 3, stop)  # ended at once, padded


def test_predictions_cut_at_the_limit_are_counted_and_warned(
    lora_run: Path, colour_dir: Path, tmp_path: Path
) -> None:
    from phi3v_train.data import load_images
    from phi3v_train.evaluate import load_for_inference

    # Independently: which samples' first generated token is not a stop token?
    model, processor = load_for_inference(lora_run)
    val = load_samples([colour_dir / "colours_val.jsonl"])
    cut = 0
    for sample in val:
        batch = processor.collate(
            [processor.encode(sample.record, load_images(sample), for_generation=True)]
        )
        inputs = {k: v for k, v in batch.items() if v is not None and k != "labels"}
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=1, do_sample=False)
        cut += int(output[0, -1]) not in processor.stop_token_ids
    assert cut > 0  # the trained model starts an answer rather than ending at once

    out = tmp_path / "eval"
    args = ("eval", "-m", lora_run, "-d", colour_dir, "-o", out, "--batch-size", "1")
    result = _invoke(*args, "--max-new-tokens", "1")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scored"] == 4 and metrics["truncated"] == cut
    assert sum(bool(p.get("truncated")) for p in _read_jsonl(out / "predictions.jsonl")) == cut
    assert (
        f"warning: {cut} of 4 predictions stopped at the max-new-tokens limit (1) without an "
        "end token" in " ".join(result.output.split())
    )


def test_majority_baseline_is_the_share_of_the_commonest_gold_answer() -> None:
    from phi3v_train.evaluate import Prediction, majority_baseline

    def prediction(gold: str, metric: str = "accuracy", scored: bool = True) -> Prediction:
        return Prediction("i", "s", "x", [gold], metric, 1.0 if scored else None)

    answers = ["Red.", "red", "Blue.", "Green.", "Red"]  # normalised: red x3
    assert majority_baseline([prediction(a) for a in answers]) == 3 / 5
    assert majority_baseline([prediction("x", metric="anls")]) is None
    assert majority_baseline([prediction("a", scored=False)]) is None


def test_eval_prints_chance_beside_accuracy_and_a_spread_of_predictions(
    lora_run: Path, colour_dir: Path, tmp_path: Path
) -> None:
    result = _invoke("eval", "-m", lora_run, "-d", colour_dir, "-o", tmp_path, "--show", "2")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # colours val: red, green, blue scored by accuracy, plus a text-only "Hello."
    assert metrics["majority_baseline"] == 0.25
    text = " ".join(result.output.split())
    assert "(chance: 0.2500, always the commonest)" in text
    assert "2 of 4 predictions" in text and "val-0000" in text and "val-0002" in text


def test_eval_uses_the_image_layout_the_run_trained_with(tmp_path: Path) -> None:
    from phi3v_train.evaluate import trained_image_layout

    assert trained_image_layout(tmp_path) == "seed"  # not a run folder: the default
    (tmp_path / "run_config.json").write_text(json.dumps({"image_layout": "per-line"}))
    assert trained_image_layout(tmp_path) == "per-line"


def test_export_keeps_the_dtype_of_the_run_base(tmp_path: Path) -> None:
    from phi3v_train.export import checkpoint_dtype, trained_from

    base, run = tmp_path / "base", tmp_path / "run"
    base.mkdir()
    run.mkdir()
    (base / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    (run / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
    (run / "run_config.json").write_text(json.dumps({"model": str(base)}))
    assert checkpoint_dtype(trained_from(run, run)) == "bf16"  # the release's, not fp32
    assert checkpoint_dtype(trained_from(base, base)) == "bf16"
    assert checkpoint_dtype(tmp_path) == "fp32"  # nothing recorded
