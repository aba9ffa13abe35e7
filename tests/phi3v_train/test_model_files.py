"""Model folders carry the base's remote code and processor files byte for byte (so the
official code and vLLM load them), and `.bin` checkpoints load like safetensors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import fast_config, write_colour_dataset

from phi3v_data.tokens import num_image_tokens_for_padded
from phi3v_train.export import export_checkpoint
from phi3v_train.model_files import PROCESSOR_FILES, copy_companion_files, with_num_crops
from phi3v_train.modeling_phi3v import Phi3VForCausalLM
from phi3v_train.processing_phi3v import Phi3VProcessor
from phi3v_train.train import run_training
from phi3v_train.weights import (
    BIN_INDEX_NAME,
    BIN_WEIGHTS_NAME,
    WEIGHTS_NAME,
    CheckpointKeyError,
    weight_files,
)

REMOTE_CODE = {
    "configuration_phi3_v.py": "# stand-in for the official configuration module\n",
    "modeling_phi3_v.py": "# stand-in for the official modeling module\nx = 1\n",
    "processing_phi3_v.py": "# stand-in for the official processing module\r\n",
    "image_processing_phi3_v.py": "# stand-in, with a non-ASCII byte: \u00e9\n",
}
# Vocabulary-independent official files that can sit beside the tiny tokenizer.
REAL_BESIDE_TINY = ("preprocessor_config.json", "processor_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def base_dir(tiny_model_dir: Path, real_assets: Path, tmp_path_factory) -> Path:
    """The tiny model plus stand-in remote code and the real processor files."""
    base = tmp_path_factory.mktemp("base") / "model"
    shutil.copytree(tiny_model_dir, base)
    for name, text in REMOTE_CODE.items():
        (base / name).write_bytes(text.encode())
    for name in REAL_BESIDE_TINY:
        shutil.copyfile(real_assets / name, base / name)
    return base


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


@pytest.fixture(scope="module")
def full_run(base_dir: Path, colour_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    run_training(fast_config(base_dir, colour_dir, out, max_steps=4, save_steps=2))
    return out


@pytest.fixture(scope="module")
def lora_run(base_dir: Path, colour_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "run"
    run_training(fast_config(base_dir, colour_dir, out, mode="lora", max_steps=2, save_steps=2))
    return out


def companion_names(base: Path) -> list[str]:
    return sorted([*REMOTE_CODE, *(name for name in PROCESSOR_FILES if (base / name).is_file())])


def assert_companions(base: Path, folder: Path, num_crops: int | None) -> None:
    """Every .py and processor file of `base` is in `folder` byte for byte; only
    `num_crops` of preprocessor_config.json may differ; no other processor file."""
    for name in companion_names(base):
        expected, actual = (base / name).read_bytes(), (folder / name).read_bytes()
        if name != "preprocessor_config.json" or num_crops is None:
            assert actual == expected, f"{folder.name}/{name} differs from the base"
            continue
        before = json.loads(expected)
        assert json.loads(actual) == {**before, "num_crops": num_crops}
        old, new = f'"num_crops": {before["num_crops"]}', f'"num_crops": {num_crops}'
        assert actual.decode() == expected.decode().replace(old, new)
    extra = {name for name in PROCESSOR_FILES if (folder / name).exists()}
    assert extra == {name for name in PROCESSOR_FILES if (base / name).exists()}, folder


def test_base_fixture_has_the_official_files(base_dir: Path) -> None:
    names = companion_names(base_dir)
    assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json"} <= set(names)
    assert json.loads((base_dir / "preprocessor_config.json").read_text())["num_crops"] == 4


def test_full_run_final_model_and_checkpoints_carry_the_base_files(
    base_dir: Path, full_run: Path
) -> None:
    folders = [full_run, full_run / "checkpoint-2", full_run / "checkpoint-4"]
    for folder in folders:
        assert_companions(base_dir, folder, num_crops=1)  # fast_config trains at 1 crop
        assert "auto_map" in json.loads((folder / "config.json").read_text())
    assert (full_run / "checkpoint-4" / "COMPLETE").is_file()
    processor = Phi3VProcessor.from_pretrained(full_run)
    assert processor.num_crops == 1
    Phi3VForCausalLM.from_pretrained(full_run)


def test_lora_adapter_folders_carry_the_base_files(base_dir: Path, lora_run: Path) -> None:
    for folder in (lora_run, lora_run / "checkpoint-2"):
        assert (folder / "adapter_config.json").is_file()
        assert_companions(base_dir, folder, num_crops=1)


def test_export_merged_and_full_carry_the_base_files(
    base_dir: Path, full_run: Path, lora_run: Path, tmp_path: Path
) -> None:
    merged = export_checkpoint(lora_run, tmp_path / "merged", merge_lora=True)
    assert_companions(base_dir, merged, num_crops=1)  # the adapter's num_crops
    assert (merged / WEIGHTS_NAME).is_file() and "auto_map" in json.loads(
        (merged / "config.json").read_text()
    )
    resaved = export_checkpoint(full_run / "checkpoint-2", tmp_path / "bf16", dtype_name="bf16")
    assert_companions(base_dir, resaved, num_crops=1)
    assert Phi3VProcessor.from_pretrained(resaved).num_crops == 1


def test_same_num_crops_copies_every_file_unchanged_and_stale_files_go(
    base_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "chat_template.jinja").write_text("left by the processor's own save")
    (out / "tokenizer_config.json").write_text("{}")
    written = copy_companion_files(base_dir, out, num_crops=4)
    assert written == companion_names(base_dir)
    assert_companions(base_dir, out, num_crops=None)
    assert not (out / "chat_template.jinja").exists()


def test_real_files_copy_unchanged_and_num_crops_alone_changes(
    real_assets: Path, tmp_path: Path
) -> None:
    out = tmp_path / "real"
    copy_companion_files(real_assets, out, num_crops=16)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (out / name).read_bytes() == (real_assets / name).read_bytes()
    original = (real_assets / "preprocessor_config.json").read_text()
    edited = (out / "preprocessor_config.json").read_text()
    assert edited == original.replace('"num_crops": 4', '"num_crops": 16')
    assert "0.48145466," in edited and "0.26862954," in edited  # not rounded via float32
    # The official tokenizer files still load with our processor (no remote code).
    processor = Phi3VProcessor.from_pretrained(out)
    assert processor.num_crops == 16 and processor.image_token_id == 32044
    ids = processor.tokenizer("<|user|>\nHi<|end|>\n<|assistant|>\n").input_ids
    assert ids[0] == 1 and {32010, 32007, 32001} <= set(ids)


def test_with_num_crops_without_the_key_redumps_with_the_same_indent() -> None:
    text = '{\n    "image_mean": [\n        0.48145466\n    ]\n}\n'
    edited = with_num_crops(text, 16)
    assert edited == '{\n    "image_mean": [\n        0.48145466\n    ],\n    "num_crops": 16\n}\n'
    assert with_num_crops(edited, 16) is edited


def test_base_without_tokenizer_falls_back_to_the_processor_save(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    shutil.copyfile(tiny_model_dir / "config.json", base / "config.json")
    (base / "modeling_phi3_v.py").write_text("# remote code\n")
    out = tmp_path / "out"
    processor = Phi3VProcessor.from_pretrained(tiny_model_dir, num_crops=2)
    written = copy_companion_files(base, out, num_crops=2, processor=processor)
    assert {"modeling_phi3_v.py", "tokenizer.json", "preprocessor_config.json"} <= set(written)
    assert (out / "modeling_phi3_v.py").read_bytes() == b"# remote code\n"
    assert Phi3VProcessor.from_pretrained(out).num_crops == 2


# -- PyTorch .bin checkpoints --------------------------------------------------------------


def _folder_with_config(tiny_model_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("config.json", "generation_config.json"):
        shutil.copyfile(tiny_model_dir / name, folder / name)
    return folder


def _logits(model: Phi3VForCausalLM) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    image_id = model.config.image_token_id
    ids = [5, 17, 40, *[image_id] * num_image_tokens_for_padded(336, 336), 1, 33, 60]
    pixel_values = torch.randn(1, 2, 3, 336, 336, generator=generator)
    with torch.no_grad():
        return model(
            input_ids=torch.tensor([ids]),
            pixel_values=pixel_values,
            image_sizes=torch.tensor([[336, 336]]),
        ).logits


def test_bin_single_and_sharded_load_exactly_like_safetensors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reference = Phi3VForCausalLM.from_pretrained(tiny_model_dir)
    expected_state, expected_logits = reference.state_dict(), _logits(reference)
    weights = load_file(tiny_model_dir / WEIGHTS_NAME)
    # As the original code saves it under transformers 4.x: with the tied `wte` alias.
    single_state = dict(weights)
    single_state["model.vision_embed_tokens.wte.weight"] = single_state["model.embed_tokens.weight"]
    single = _folder_with_config(tiny_model_dir, tmp_path / "single")
    torch.save(single_state, single / BIN_WEIGHTS_NAME)

    sharded = _folder_with_config(tiny_model_dir, tmp_path / "sharded")
    names = list(weights)
    weight_map = {}
    for number, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), 1):
        shard = f"pytorch_model-{number:05d}-of-00002.bin"
        torch.save({name: weights[name] for name in part}, sharded / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (sharded / BIN_INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert len(weight_files(sharded)) == 2

    for folder in (single, sharded):
        loaded = Phi3VForCausalLM.from_pretrained(folder)
        state = loaded.state_dict()
        assert set(state) == set(expected_state)
        for key, tensor in expected_state.items():
            assert torch.equal(state[key], tensor), (folder.name, key)
        assert torch.equal(_logits(loaded), expected_logits), folder.name


def test_safetensors_are_preferred_over_bin(tiny_model_dir: Path, tmp_path: Path) -> None:
    both = tmp_path / "both"
    shutil.copytree(tiny_model_dir, both)
    zeros = {k: torch.zeros_like(v) for k, v in load_file(both / WEIGHTS_NAME).items()}
    torch.save(zeros, both / BIN_WEIGHTS_NAME)
    assert weight_files(both) == [both / WEIGHTS_NAME]
    loaded = Phi3VForCausalLM.from_pretrained(both).state_dict()
    reference = Phi3VForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)


def test_bin_with_a_missing_or_extra_key_fails_naming_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    weights = load_file(tiny_model_dir / WEIGHTS_NAME)
    removed = "model.layers.0.self_attn.qkv_proj.weight"
    del weights[removed]
    weights["model.extra.weight"] = torch.zeros(3)
    broken = _folder_with_config(tiny_model_dir, tmp_path / "broken")
    torch.save(weights, broken / BIN_WEIGHTS_NAME)
    with pytest.raises(CheckpointKeyError) as error:
        Phi3VForCausalLM.from_pretrained(broken)
    assert error.value.missing == [removed] and error.value.unexpected == ["model.extra.weight"]
    assert removed in str(error.value) and "model.extra.weight" in str(error.value)


def test_saving_over_a_bin_folder_leaves_only_safetensors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = _folder_with_config(tiny_model_dir, tmp_path / "old")
    torch.save(load_file(tiny_model_dir / WEIGHTS_NAME), folder / BIN_WEIGHTS_NAME)
    Phi3VForCausalLM.from_pretrained(folder).save_pretrained(folder)
    assert not (folder / BIN_WEIGHTS_NAME).exists() and (folder / WEIGHTS_NAME).is_file()
