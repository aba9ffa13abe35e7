"""TrainConfig checks, batch arithmetic, DeepSpeed configs, warm-up cap, checkpoint bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phi3v_train.checkpoints import (
    COMPLETE_MARKER,
    newest_complete_checkpoint,
    remove_incomplete_checkpoints,
    rotate_checkpoints,
    truncate_train_log,
)
from phi3v_train.distributed import deepspeed_config, gradient_accumulation_steps
from phi3v_train.modes import lora_targets
from phi3v_train.train_config import ConfigError, TrainConfig, warmup_steps_for


def _config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {"model": Path("m"), "output_dir": Path("o"), "data_dir": Path("d")}
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_defaults_are_the_reference_recipe(tiny_model_dir: Path) -> None:
    config = _config(model=tiny_model_dir)
    assert (config.adam_beta1, config.adam_beta2, config.adam_epsilon) == (0.9, 0.95, 1e-7)
    assert (config.weight_decay, config.max_grad_norm, config.batch_size) == (0.01, 1.0, 64)
    assert (config.lora_rank, config.effective_lora_alpha, config.lora_dropout) == (64, 128, 0.0)
    assert config.gradient_checkpointing
    assert config.problems() == []


def test_problems_are_collected_not_first_only() -> None:
    config = _config(attn="flash_attention_2", precision="fp16", mode="bogus", batch_size=0)
    problems = config.problems()
    assert any("flash_attention_2 with --fp16 is refused" in p for p in problems)
    assert any("--mode 'bogus'" in p for p in problems)
    assert any("--batch-size must be at least 1" in p for p in problems)
    with pytest.raises(ConfigError, match="--fp16 is refused"):
        config.check()
    assert any(
        "qlora with --deepspeed" in p for p in _config(mode="qlora", deepspeed="zero2").problems()
    )
    assert any("no training data" in p for p in _config(data_dir=None).problems())


def test_round_trip_through_json(tmp_path: Path) -> None:
    config = _config(mode="lora", lora_targets=("qkv_proj",), train_files=(Path("a.jsonl"),))
    config.save(tmp_path / "run_config.json")
    loaded = TrainConfig.from_dict(json.loads((tmp_path / "run_config.json").read_text()))
    assert loaded == config


@pytest.mark.parametrize(
    ("batch", "per_device", "processes", "steps"),
    [(64, 1, 1, 64), (64, 4, 8, 2), (64, 8, 8, 1), (6, 3, 2, 1)],
)
def test_gradient_accumulation(batch: int, per_device: int, processes: int, steps: int) -> None:
    assert gradient_accumulation_steps(batch, per_device, processes) == steps


def test_gradient_accumulation_error_suggests_fixes() -> None:
    with pytest.raises(
        ConfigError, match=r"--batch-size 60 is not a multiple of .* = 8; use --batch-size 56 or 64"
    ):
        gradient_accumulation_steps(60, 4, 2)


def test_warmup_is_capped_for_short_runs() -> None:
    assert warmup_steps_for(_config(), 1000) == 50
    assert warmup_steps_for(_config(), 40) == 4
    assert warmup_steps_for(_config(warmup_steps=7), 40) == 7


def test_deepspeed_zero2_is_the_reference_setting(tmp_path: Path) -> None:
    config = deepspeed_config("zero2", "bf16")
    zero = config["zero_optimization"]
    assert zero["stage"] == 2 and zero["overlap_comm"] and zero["contiguous_gradients"]
    assert zero["allgather_bucket_size"] == zero["reduce_bucket_size"] == 5e8
    assert config["bf16"]["enabled"] and not config["fp16"]["enabled"]
    # The Trainer's own AdamW and schedule are used (no fused DeepSpeed optimizer to compile).
    assert "optimizer" not in config and "scheduler" not in config
    assert deepspeed_config("zero3", "fp16")["zero_optimization"]["stage"] == 3
    custom = tmp_path / "ds.json"
    custom.write_text('{"zero_optimization": {"stage": 1}}')
    assert deepspeed_config(str(custom), "fp32") == {"zero_optimization": {"stage": 1}}
    with pytest.raises(ConfigError, match="not 'zero2', 'zero3' or an existing JSON"):
        deepspeed_config("zero9", "fp32")


def test_lora_targets_follow_the_reference() -> None:
    language = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert lora_targets(_config(mode="lora", freeze_vision=True)) == language
    with_vision = lora_targets(_config(mode="lora"))
    assert with_vision[:4] == language
    assert set(with_vision[4:]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "fc1",
        "fc2",
        "img_projection.0",
        "img_projection.2",
    }


def _checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text("{}")
    if complete:
        (path / COMPLETE_MARKER).write_text(str(step))
    return path


def test_checkpoint_bookkeeping_only_trusts_complete_ones(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, True)
    _checkpoint(tmp_path, 4, True)
    _checkpoint(tmp_path, 10, True)
    half_written = _checkpoint(tmp_path, 12, False)
    assert newest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    # Rotation keeps the newest complete ones and never touches an incomplete one.
    rotate_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-10",
        "checkpoint-12",
        "checkpoint-4",
    ]
    assert remove_incomplete_checkpoints(tmp_path) == [half_written]
    assert newest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_train_log_is_cut_back_to_the_resumed_step(tmp_path: Path) -> None:
    lines = [{"step": s, "loss": float(s)} for s in (1, 2, 3, 4)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    truncate_train_log(tmp_path, 2)
    kept = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in kept] == [1, 2]


def test_resume_choices(tmp_path: Path) -> None:
    from phi3v_train.checkpoints import resume_checkpoint

    out = tmp_path / "run"
    assert resume_checkpoint(_config(output_dir=out)) is None  # fresh run, empty folder
    complete = _checkpoint(out, 2, True)
    half = _checkpoint(out, 4, False)
    with pytest.raises(ConfigError, match="already holds checkpoints of a run: pass --resume auto"):
        resume_checkpoint(_config(output_dir=out))
    with pytest.raises(ConfigError, match="this checkpoint is incomplete"):
        resume_checkpoint(_config(output_dir=out, resume=str(half)))
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        resume_checkpoint(_config(output_dir=out, resume=str(tmp_path)))
    assert resume_checkpoint(_config(output_dir=out, resume=str(complete))) == complete
    assert resume_checkpoint(_config(output_dir=out, resume="auto")) == complete
    assert not half.exists()
