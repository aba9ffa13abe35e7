"""Several data sets in one run: `-d A -d B --mix`, the seeded per-step mix, its resume, and
the per-source eval metrics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from train_fixtures import FAST_CLI_ARGS, fast_config, losses, write_colour_dataset
from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_train.evaluate import Prediction, summarize
from phi3v_train.mixing import (
    DataPart,
    MixError,
    MixSampler,
    apportion,
    interleave_by_source,
    mixed_indices,
    part_weights,
)
from phi3v_train.run_report import read_train_log
from phi3v_train.train import run_training

PARTS = [DataPart("colour-folder", (), "colours", 20), DataPart("docs", (), "docvqa", 60)]
SIZES = [part.size for part in PARTS]


def _part_of(index: int) -> int:
    return 0 if index < SIZES[0] else 1


def test_mix_keys_are_sources_or_names_and_mistakes_are_named() -> None:
    assert part_weights(PARTS, "colours=0.7,docs=0.3") == pytest.approx([0.7, 0.3])
    assert part_weights(PARTS, "colour-folder=1,docvqa=3") == pytest.approx([0.25, 0.75])
    assert part_weights(PARTS, None) == pytest.approx([0.25, 0.75])  # by size
    with pytest.raises(MixError, match="did you mean 'docvqa'"):
        part_weights(PARTS, "colours=1,docvq=1")
    with pytest.raises(MixError, match="no weight to docs"):
        part_weights(PARTS, "colours=1")
    with pytest.raises(MixError, match="must be positive"):
        part_weights(PARTS, "colours=0,docs=1")
    with pytest.raises(MixError, match="KEY=WEIGHT"):
        part_weights(PARTS, "colours")
    assert apportion(10, [0.25, 0.75]) == [3, 7] or apportion(10, [0.25, 0.75]) == [2, 8]
    assert sum(apportion(7, [0.3, 0.3, 0.4])) == 7


def test_each_step_holds_each_data_set_by_its_weight() -> None:
    weights = part_weights(PARTS, "colours=0.7,docs=0.3")
    step = 8
    totals: Counter[int] = Counter()
    for epoch in range(5):
        order = mixed_indices(SIZES, weights, step, seed=1, epoch=epoch)
        assert len(order) == sum(SIZES)
        for start in range(0, len(order) - step + 1, step):
            count = sum(1 for i in order[start : start + step] if _part_of(i) == 0)
            assert abs(count - 0.7 * step) <= 2, (epoch, start, count)
        totals.update(_part_of(i) for i in order)
    assert totals[0] / sum(totals.values()) == pytest.approx(0.7, abs=0.01)
    # The over-weighted small set repeats, every sample about equally often.
    seen = Counter(i for e in range(5) for i in mixed_indices(SIZES, weights, step, 1, e))
    small = [seen[i] for i in range(SIZES[0])]
    assert max(small) - min(small) <= 1


def test_the_order_is_a_pure_function_of_seed_and_epoch() -> None:
    weights = part_weights(PARTS, "colours=0.5,docs=0.5")
    order = mixed_indices(SIZES, weights, 8, seed=3, epoch=0)
    assert order == mixed_indices(SIZES, weights, 8, seed=3, epoch=0)
    assert order != mixed_indices(SIZES, weights, 8, seed=4, epoch=0)
    assert order != mixed_indices(SIZES, weights, 8, seed=3, epoch=1)
    sampler = MixSampler(SIZES, weights, 8, seed=3)
    sampler.set_epoch(2)  # what the trainer does at each epoch, a resumed one too
    assert list(sampler) == mixed_indices(SIZES, weights, 8, 3, 2)
    assert len(sampler) == 80
    # By size: each sample once per epoch.
    assert sorted(mixed_indices(SIZES, part_weights(PARTS, None), 8, 3, 0)) == list(range(80))


def test_length_grouping_stays_within_each_step() -> None:
    weights = part_weights(PARTS, "colours=0.7,docs=0.3")
    lengths = [((i * 37) % 101) + 1 for i in range(80)]
    plain = mixed_indices(SIZES, weights, 8, seed=5)
    grouped = mixed_indices(SIZES, weights, 8, seed=5, lengths=lengths, micro_batch=2)
    for start in range(0, 80, 8):
        assert sorted(plain[start : start + 8]) == sorted(grouped[start : start + 8])
        for micro in range(start, start + 8, 2):  # micro-batches of similar length
            pair = [lengths[i] for i in grouped[micro : micro + 2]]
            step_lengths = sorted(lengths[i] for i in grouped[start : start + 8])
            ranks = sorted(step_lengths.index(n) for n in pair)
            assert ranks[1] - ranks[0] <= 1 or pair[0] == pair[1]


def test_summary_has_a_metric_per_source_and_their_mean() -> None:
    predictions = [
        Prediction("a", "colours", "Red.", ["Red."], "accuracy", 1.0),
        Prediction("b", "colours", "Red.", ["Blue."], "accuracy", 0.0),
        Prediction("c", "ucf101", "x", ["x"], "accuracy", 1.0),
        Prediction("d", "docvqa", "abc", ["abd"], "anls", 0.5),
    ]
    summary = summarize(predictions)
    assert summary["accuracy"] == pytest.approx(2 / 3)  # the existing keys stay
    assert summary["anls"] == 0.5
    assert summary["accuracy/colours"] == 0.5
    assert summary["accuracy/ucf101"] == 1.0
    assert summary["anls/docvqa"] == 0.5
    assert summary["mean"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert summary["scored"] == 4


def test_eval_samples_take_turns_by_source() -> None:
    class _S:
        def __init__(self, source: str, i: int) -> None:
            self.record = type("R", (), {"source": source})()
            self.i = i

    samples = [_S("a", i) for i in range(3)] + [_S("b", i) for i in range(2)]
    picked = interleave_by_source(samples)
    assert [(s.record.source, s.i) for s in picked] == [
        ("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2),
    ]  # fmt: skip


# -- training on two data sets --------------------------------------------------------


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("two")
    colours = write_colour_dataset(root / "colours", train=8, val=2)
    docs = write_colour_dataset(root / "docs", train=4, val=2, source="docvqa")
    return colours, docs


class _Stop(Exception):
    pass


class _StopAtStep:
    """Stops training with an exception at `step` (after earlier checkpoints are written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise _Stop


def test_two_data_sets_train_with_per_source_metrics_and_resume_the_mix(
    tiny_model_dir: Path, two_sets: tuple[Path, Path], tmp_path: Path
) -> None:
    """12 samples, batch 4: 3 steps an epoch, so the 6 steps cross an epoch boundary."""
    colours, docs = two_sets
    settings = {
        "data_dir": (colours, docs),
        "mix": "colours=0.5,docvqa=0.5",
        "max_steps": 6,
        "eval_steps": 3,
        "eval_split": "val",
        "eval_max_samples": 4,
        "max_new_tokens": 2,
    }
    reference = run_training(fast_config(tiny_model_dir, colours, tmp_path / "ref", **settings))
    expected = losses(reference.log)
    assert len(expected) == 6
    evals = [e for e in reference.log if "eval_loss" in e]
    assert [e["step"] for e in evals] == [3, 6]
    for key in ("eval_accuracy/colours", "eval_anls/docvqa", "eval_mean", "eval_accuracy"):
        assert key in evals[0], evals[0]
    mean = (evals[0]["eval_accuracy/colours"] + evals[0]["eval_anls/docvqa"]) / 2
    assert evals[0]["eval_mean"] == pytest.approx(mean)
    summary = json.loads((tmp_path / "ref" / "train_summary.json").read_text())
    rows = {row["name"]: row for row in summary["datasets"]}
    assert rows["colours"]["samples"] == 8 and rows["docs"]["share"] == 0.5

    out = tmp_path / "stopped"
    with pytest.raises(_Stop):
        run_training(
            fast_config(tiny_model_dir, colours, out, **settings),  # type: ignore[arg-type]
            callbacks=[_StopAtStep(5)],
        )
    assert (out / "checkpoint-4" / "COMPLETE").is_file()
    assert not (out / "train_summary.json").exists()
    resumed = run_training(
        fast_config(tiny_model_dir, colours, out, resume="auto", **settings)  # type: ignore[arg-type]
    )
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-4")
    log = read_train_log(out)
    assert [e["step"] for e in log if "loss" in e] == list(range(1, 7))
    assert losses(log) == expected  # CPU training is deterministic: bit for bit


def test_preflight_shows_each_data_set_and_its_share(
    tiny_model_dir: Path, two_sets: tuple[Path, Path], tmp_path: Path
) -> None:
    colours, docs = two_sets
    common = ["train", "-d", str(colours), "-d", str(docs), "-m", str(tiny_model_dir)]
    result = CliRunner().invoke(
        app, [*common, "-o", str(tmp_path / "bad"), "--mix", "colours=1,docvq=1"]
    )
    assert result.exit_code == 2
    assert "did you mean 'docvqa'" in " ".join(result.output.split())
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [*common, "-o", str(out), *FAST_CLI_ARGS, "--max-steps", "1", "--mix", "docs=3,colours=1"],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "8 samples: 25.0% of each step's samples" in text, text
    assert "4 samples: 75.0% of each step's samples" in text
    saved = json.loads((out / "run_config.json").read_text())
    assert saved["data_dir"] == [str(colours), str(docs)]
    assert saved["mix"] == "docs=3,colours=1"
