import json
from pathlib import Path

from typer.testing import CliRunner

from phi3v_data.cli import app
from phi3v_train.modeling import Phi3VForCausalLM
from phi3v_train.processing import Phi3VProcessor

runner = CliRunner()


def test_init_model_writes_a_loadable_official_layout(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    result = runner.invoke(app, ["init-model", str(out), "--size", "tiny", "--num-crops", "16"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
        "special_tokens_map.json",
    } <= names
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "phi3_v" and config["architectures"] == ["Phi3VForCausalLM"]
    assert json.loads((out / "preprocessor_config.json").read_text())["num_crops"] == 16
    model = Phi3VForCausalLM.from_pretrained(out)
    processor = Phi3VProcessor.from_pretrained(out)
    assert processor.num_crops == 16 and processor.image_token_id == model.config.image_token_id
    assert processor.tokenizer.chat_template is not None
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_init_model_refuses_bad_num_crops_and_existing_checkpoints(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["init-model", str(tmp_path / "x"), "--num-crops", "0"])
    assert result.exit_code == 2 and "between 1 and 16" in result.output
    result = runner.invoke(app, ["init-model", str(tiny_model_dir)])
    assert result.exit_code == 2 and "--force" in result.output
