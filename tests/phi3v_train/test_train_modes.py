"""Every training mode on the tiny model (CPU, a few steps each): what trains, what is saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import fast_config, losses, write_colour_dataset
from transformers import TrainerCallback

from phi3v_train.modeling_phi3v import component_of
from phi3v_train.train import run_training
from phi3v_train.trainer import NonFiniteLossError


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


@pytest.fixture(scope="module")
def base_weights(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(tiny_model_dir / "model.safetensors")


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, bool]:
    """Per component: did any of its weights change?"""
    result = {"vision": False, "projector": False, "language": False}
    for key, tensor in before.items():
        if not torch.equal(tensor, after[key]):
            result[component_of(key)] = True
    return result


def test_full_training_lowers_the_loss_and_saves_the_official_layout(
    tiny_model_dir: Path, colour_dir: Path, base_weights, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = fast_config(
        tiny_model_dir,
        colour_dir,
        out,
        max_steps=12,
        save_steps=4,
        save_total_limit=2,
        report_to="tensorboard",
    )
    result = run_training(config)
    values = losses(result.log)
    assert len(values) == 12
    assert sum(values[-3:]) / 3 < sum(values[:3]) / 3 - 0.5
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "run_config.json",
        "train_log.jsonl",
        "train_summary.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "runs").rglob("events.out.tfevents.*")), "no TensorBoard events"
    # --save-total-limit 2 keeps the newest two complete checkpoints.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-8"]
    assert (out / "checkpoint-12" / "COMPLETE").is_file()
    after = load_file(out / "model.safetensors")
    assert set(after) == set(base_weights)  # official key names, nothing missing or extra
    assert _changed(base_weights, after) == {"vision": True, "projector": True, "language": True}
    assert json.loads((out / "preprocessor_config.json").read_text())["num_crops"] == 1
    assert json.loads((out / "run_config.json").read_text())["mode"] == "full"


def test_freeze_vision_trains_only_the_language_model(
    tiny_model_dir: Path, colour_dir: Path, base_weights, tmp_path: Path
) -> None:
    result = run_training(
        fast_config(tiny_model_dir, colour_dir, tmp_path / "run", mode="freeze-vision")
    )
    after = load_file(result.output_dir / "model.safetensors")
    assert _changed(base_weights, after) == {"vision": False, "projector": False, "language": True}


def test_separate_learning_rates_per_component(
    tiny_model_dir: Path, colour_dir: Path, base_weights, tmp_path: Path
) -> None:
    config = fast_config(
        tiny_model_dir,
        colour_dir,
        tmp_path / "run",
        max_steps=2,
        vision_learning_rate=0.0,
        projector_learning_rate=1e-3,
    )
    after = load_file(run_training(config).output_dir / "model.safetensors")
    assert _changed(base_weights, after) == {"vision": False, "projector": True, "language": True}


@pytest.mark.parametrize("freeze_vision", [False, True])
def test_lora_saves_an_adapter_with_the_reference_targets(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path, freeze_vision: bool
) -> None:
    config = fast_config(
        tiny_model_dir,
        colour_dir,
        tmp_path / "run",
        mode="lora",
        freeze_vision=freeze_vision,
        lora_rank=4,
    )
    result = run_training(config)
    out = result.output_dir
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (4, 8, 0.0)
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert not (out / "model.safetensors").exists()
    keys = load_file(out / "adapter_model.safetensors")
    assert all("lora_" in key for key in keys)
    components = {component_of(key) for key in keys}
    assert components == ({"language"} if freeze_vision else {"language", "vision", "projector"})
    assert any(".qkv_proj." in key for key in keys)
    assert all(v == v for v in losses(result.log))  # finite


def test_qlora_trains_on_a_4bit_base(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    import bitsandbytes as bnb

    from phi3v_train.modes import load_model_for_training

    config = fast_config(tiny_model_dir, colour_dir, tmp_path / "run", mode="qlora", max_steps=3)
    model = load_model_for_training(config, "fp32")
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(m.weight.quant_type == "nf4" for m in quantized)
    result = run_training(config)
    values = losses(result.log)
    assert len(values) == 3 and all(torch.isfinite(torch.tensor(values)))
    assert (result.output_dir / "adapter_model.safetensors").is_file()


class _PoisonAfter(TrainerCallback):
    """Fault injection: after step `step`, one weight becomes NaN (as a diverging run would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.lm_head.weight[0, 0] = float("nan")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = fast_config(tiny_model_dir, colour_dir, out, max_steps=6, save_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 3;.*checkpoint-2"):
        run_training(config, callbacks=[_PoisonAfter(2)])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (out / "model.safetensors").exists()
    assert not (out / "train_summary.json").exists()


@pytest.mark.parametrize("mode", ["full", "freeze-vision", "lora", "qlora"])
def test_every_trainable_parameter_gets_a_gradient_with_or_without_images(
    tiny_model_dir: Path, colour_dir: Path, tmp_path: Path, mode: str
) -> None:
    # DDP (find_unused_parameters=False) and ZeRO need a gradient for every trainable
    # parameter in every step on every rank: from an image batch, and from a text-only
    # one (the vision tower then runs on a stand-in and its gradients are exactly zero).
    from phi3v_data.tokens import num_image_tokens_for_padded
    from phi3v_train.modes import load_model_for_training

    config = fast_config(tiny_model_dir, colour_dir, tmp_path / "run", mode=mode)
    model = load_model_for_training(config, "fp32").train()
    image_id = model.config.image_token_id
    text = torch.randint(3, 400, (1, 10), generator=torch.Generator().manual_seed(0))
    placeholders = torch.full((1, num_image_tokens_for_padded(336, 672)), image_id)
    with_image = {
        "input_ids": torch.cat([text[:, :4], placeholders, text[:, 4:]], dim=1),
        "pixel_values": torch.randn(1, 5, 3, 336, 336),
        "image_sizes": torch.tensor([[336, 672]]),
    }
    for inputs, images in ((with_image, True), ({"input_ids": text}, False)):
        model.zero_grad(set_to_none=True)
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert trainable
        assert [n for n, p in trainable.items() if p.grad is None] == []
        if not images:
            vision = [p for n, p in trainable.items() if component_of(n) != "language"]
            assert all(not p.grad.any() for p in vision)
