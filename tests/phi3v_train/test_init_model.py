import json
from pathlib import Path

from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_train.modeling_phi3v import Phi3VForCausalLM
from phi3v_train.processing_phi3v import Phi3VProcessor

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


def test_init_model_writes_the_official_file_style(tmp_path: Path, real_assets: Path) -> None:
    """Same keys, auto_map entries and processor settings as the released files (the
    tokenizer itself is the small offline one, so its ids differ)."""
    out = tmp_path / "tiny"
    result = runner.invoke(app, ["init-model", str(out)])
    assert result.exit_code == 0, result.output

    def read(folder: Path, name: str) -> dict:
        return json.loads((folder / name).read_text())

    config = read(out, "config.json")
    assert config["auto_map"] == read(real_assets, "config.json")["auto_map"]
    # preprocessor_config.json and processor_config.json equal the released ones.
    for name in ("preprocessor_config.json", "processor_config.json"):
        assert read(out, name) == read(real_assets, name), name
        assert list(read(out, name)) == list(read(real_assets, name)), name
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        ours, real = read(out, name), read(real_assets, name)
        assert list(ours) == list(real), name
    ours, real = read(out, "tokenizer_config.json"), read(real_assets, "tokenizer_config.json")
    for key in real:
        if key != "added_tokens_decoder":
            assert ours[key] == real[key], key
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    assert ours["added_tokens_decoder"] == {
        str(t["id"]): {k: t[k] for k in sorted(t) if k != "id"} for t in tokenizer["added_tokens"]
    }
    special = read(out, "special_tokens_map.json")
    assert special == read(real_assets, "special_tokens_map.json")
    processor = Phi3VProcessor.from_pretrained(out)
    assert processor.tokenizer.convert_ids_to_tokens(processor.end_token_id) == "<|end|>"
