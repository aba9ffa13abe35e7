import json
from pathlib import Path

from phi3v_train.configuration_phi3v import Phi3VConfig
from phi3v_train.init_model import phi35_vision_config, tiny_config


def test_official_config_round_trips_to_the_same_json(real_assets: Path, tmp_path: Path) -> None:
    original = json.loads((real_assets / "config.json").read_text())
    config = Phi3VConfig.from_pretrained(real_assets)
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == original
    assert list(config.to_dict()) == list(original)  # same key order too


def test_official_config_is_read_into_text_and_vision_configs(real_assets: Path) -> None:
    config = Phi3VConfig.from_pretrained(real_assets)
    text, vision = config.text_config, config.vision_config
    assert text.rope_parameters["rope_type"] == "longrope"
    assert text.rope_parameters["short_factor"][0] == 1.08
    assert len(text.rope_parameters["long_factor"]) == 48
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (3072, 32, 32064)
    assert (text.original_max_position_embeddings, text.max_position_embeddings) == (4096, 131072)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.intermediate_size) == (
        1024,
        24,
        4096,
    )
    assert (vision.image_size, vision.patch_size, vision.hidden_act) == (336, 14, "quick_gelu")
    assert config.image_token_id == 32044
    assert config.stop_token_ids == [32007, 32000]
    assert config.clip_layer_index == -2
    assert "image_token_id" not in config.to_dict()


def test_builder_full_size_config_equals_the_official_one(real_assets: Path) -> None:
    official = json.loads((real_assets / "config.json").read_text())
    built = phi35_vision_config().to_dict()
    ignored = {"_name_or_path", "auto_map", "transformers_version", "_attn_implementation"}
    assert {k: v for k, v in official.items() if k not in ignored} == built


def test_tiny_config_round_trips_with_its_own_token_ids(tmp_path: Path) -> None:
    config = tiny_config()
    config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["rope_scaling"]["type"] == "su"
    assert data["img_processor"]["vision_config"]["hidden_size"] == 32
    again = Phi3VConfig.from_pretrained(tmp_path)
    assert again.to_dict() == data
    assert again.image_token_id == data["image_token_id"] != 32044
    assert again.vision_config.hidden_size == 32
