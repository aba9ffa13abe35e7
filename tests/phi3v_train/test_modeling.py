import shutil
from pathlib import Path

import pytest
import torch
from official_keys import official_keys
from safetensors.torch import load_file, save_file

from phi3v_data.tokens import num_image_tokens_for_padded
from phi3v_train.init_model import phi35_vision_config
from phi3v_train.modeling_phi3v import Phi3VForCausalLM, component_of
from phi3v_train.weights import INDEX_NAME, CheckpointKeyError


@pytest.fixture
def model(tiny_model_dir: Path) -> Phi3VForCausalLM:
    return Phi3VForCausalLM.from_pretrained(tiny_model_dir)


def image_batch(
    model: Phi3VForCausalLM, grids: list[tuple[int, int]], crops: int = 4, seed: int = 0
):
    """input_ids with text around each image's placeholders, and matching images."""
    generator = torch.Generator().manual_seed(seed)
    image_id = model.config.image_token_id
    ids, sizes = [], []
    for rows, cols in grids:
        ids += torch.randint(3, 400, (3,), generator=generator).tolist()
        ids += [image_id] * num_image_tokens_for_padded(rows * 336, cols * 336)
        sizes.append([rows * 336, cols * 336])
    ids += torch.randint(3, 400, (4,), generator=generator).tolist()
    pixel_values = torch.randn(len(grids), crops + 1, 3, 336, 336, generator=generator)
    return torch.tensor([ids]), pixel_values, torch.tensor(sizes)


def test_full_size_model_on_meta_has_exactly_the_official_keys() -> None:
    with torch.device("meta"):
        model = Phi3VForCausalLM(phi35_vision_config())
    actual = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert actual == official_keys()
    assert sum(t.numel() for t in model.state_dict().values()) == 4_146_621_440


@pytest.mark.parametrize("grids", [[(1, 1)], [(1, 2), (2, 1)], [(2, 2)], [(1, 4), (1, 1)]])
def test_image_features_fill_exactly_the_placeholders(model, grids) -> None:
    input_ids, pixel_values, sizes = image_batch(model, grids)
    features = model.get_image_features(pixel_values, sizes)
    assert features.shape == ((input_ids == model.config.image_token_id).sum(), 64)
    out = model(input_ids=input_ids, pixel_values=pixel_values, image_sizes=sizes)
    assert out.logits.shape == (1, input_ids.shape[1], model.config.text_config.vocab_size)


def test_features_are_written_in_order_of_appearance(model) -> None:
    input_ids, pixel_values, sizes = image_batch(model, [(1, 1), (1, 2)])
    features = model.get_image_features(pixel_values, sizes)
    embeds = model.model.embed(input_ids, pixel_values, sizes)
    mask = input_ids[0] == model.config.image_token_id
    torch.testing.assert_close(embeds[0, mask], features, rtol=0, atol=0)
    torch.testing.assert_close(embeds[0, ~mask], model.model.embed_tokens(input_ids[0, ~mask]))


def test_placeholder_count_mismatch_names_both_counts(model) -> None:
    input_ids, pixel_values, sizes = image_batch(model, [(1, 1)])
    placeholders = int((input_ids == model.config.image_token_id).sum())
    short = torch.cat([input_ids[:, :3], input_ids[:, 4:]], dim=1)  # one placeholder less
    with pytest.raises(
        ValueError, match=rf"{placeholders - 1} placeholder tokens.*{placeholders} image features"
    ):
        model(input_ids=short, pixel_values=pixel_values, image_sizes=sizes)
    with pytest.raises(
        ValueError, match=rf"{placeholders} image placeholder tokens.*no pixel_values"
    ):
        model(input_ids=input_ids)


def test_loss_counts_only_labelled_tokens_and_uses_num_items_in_batch(model) -> None:
    input_ids = torch.randint(3, 400, (2, 12))
    labels = input_ids.clone()
    labels[:, :6] = -100
    mean_loss = model(input_ids=input_ids, labels=labels).loss
    summed = model(input_ids=input_ids, labels=labels, num_items_in_batch=1).loss
    scaled = model(input_ids=input_ids, labels=labels, num_items_in_batch=40).loss
    targets = int((labels[:, 1:] != -100).sum())  # 12 = 2 rows x 6 shifted targets
    torch.testing.assert_close(summed / targets, mean_loss)
    torch.testing.assert_close(summed / 40, scaled)


def test_save_load_round_trip_is_bit_exact_single_and_sharded(model, tmp_path: Path) -> None:
    reference = model.state_dict()
    for name, shard_size in (("single", "5GB"), ("sharded", 200_000)):
        model.save_pretrained(tmp_path / name, max_shard_size=shard_size)
        loaded = Phi3VForCausalLM.from_pretrained(tmp_path / name)
        for key, tensor in loaded.state_dict().items():
            assert torch.equal(tensor, reference[key]), key
    assert (tmp_path / "sharded" / INDEX_NAME).is_file()
    assert len(list((tmp_path / "sharded").glob("model-*-of-*.safetensors"))) > 1
    files = load_file(tmp_path / "single" / "model.safetensors")
    assert set(files) == set(reference)


def test_loading_a_missing_or_extra_tensor_fails_with_its_name(tiny_model_dir, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    removed = "model.layers.1.mlp.down_proj.weight"
    del weights[removed]
    weights["model.extra_head.weight"] = torch.zeros(2)
    save_file(weights, broken / "model.safetensors")
    with pytest.raises(CheckpointKeyError) as error:
        Phi3VForCausalLM.from_pretrained(broken)
    assert error.value.missing == [removed]
    assert error.value.unexpected == ["model.extra_head.weight"]
    assert removed in str(error.value) and "model.extra_head.weight" in str(error.value)


def test_documented_exceptions_load(tiny_model_dir, tmp_path, model) -> None:
    resaved = tmp_path / "resaved"
    shutil.copytree(tiny_model_dir, resaved)
    weights = load_file(resaved / "model.safetensors")
    weights["model.vision_embed_tokens.wte.weight"] = weights["model.embed_tokens.weight"].clone()
    prefix = "model.vision_embed_tokens.img_processor.vision_model.post_layernorm."
    del weights[prefix + "weight"], weights[prefix + "bias"]
    save_file(weights, resaved / "model.safetensors")
    loaded = Phi3VForCausalLM.from_pretrained(resaved)
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert torch.equal(loaded.state_dict()[prefix + "weight"], torch.ones(32))


def test_generation_with_and_without_cache_agree(model) -> None:
    input_ids, pixel_values, sizes = image_batch(model, [(1, 2)])
    kwargs = dict(pixel_values=pixel_values, image_sizes=sizes, max_new_tokens=6, do_sample=False)
    cached = model.generate(input_ids, use_cache=True, **kwargs)
    uncached = model.generate(input_ids, use_cache=False, **kwargs)
    assert cached.shape[1] > input_ids.shape[1]
    assert torch.equal(cached, uncached)
    torch.manual_seed(0)
    sampled = model.generate(
        input_ids,
        pixel_values=pixel_values,
        image_sizes=sizes,
        max_new_tokens=4,
        do_sample=True,
        top_k=0,
        temperature=1.0,
    )
    assert sampled.shape[1] <= input_ids.shape[1] + 4
    assert not (sampled[0, input_ids.shape[1] :] == model.config.image_token_id).any()


def test_generation_stops_at_end_token(model) -> None:
    end_id = model.config.end_token_id
    hook = model.lm_head.register_forward_hook(
        lambda _m, _i, out: out.index_add(
            -1, torch.tensor([end_id]), torch.full((*out.shape[:-1], 1), 100.0)
        )
    )
    try:
        out = model.generate(torch.tensor([[1, 5, 6, 7]]), max_new_tokens=10, do_sample=False)
    finally:
        hook.remove()
    assert out[0].tolist() == [1, 5, 6, 7, end_id]


def test_gradient_checkpointing_gives_the_same_gradients(model) -> None:
    input_ids, pixel_values, sizes = image_batch(model, [(1, 2)])
    model.train()

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(
            input_ids=input_ids, pixel_values=pixel_values, image_sizes=sizes, labels=input_ids
        ).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = gradients()
    layers = [
        m for m in model.modules() if type(m).__name__ in ("Phi3DecoderLayer", "CLIPEncoderLayer")
    ]
    assert len(layers) == 2 + 3 and all(layer.gradient_checkpointing for layer in layers)
    assert plain.keys() == checkpointed.keys()
    assert any(component_of(n) == "vision" for n in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6)


def test_attention_implementations_agree_and_flash_attention_explains(tiny_model_dir) -> None:
    sdpa = Phi3VForCausalLM.from_pretrained(tiny_model_dir)
    eager = Phi3VForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    input_ids, pixel_values, sizes = image_batch(sdpa, [(1, 1)])
    mask = torch.ones_like(input_ids)
    a = sdpa(
        input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values, image_sizes=sizes
    ).logits
    b = eager(
        input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values, image_sizes=sizes
    ).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    pytest.importorskip("transformers")
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="flash-attn"):
            Phi3VForCausalLM.from_pretrained(
                tiny_model_dir, attn_implementation="flash_attention_2"
            )
    with pytest.raises(ValueError, match="sdpa, flash_attention_2, eager"):
        Phi3VForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="fast")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_loads_and_runs(tiny_model_dir, dtype) -> None:
    model = Phi3VForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    input_ids, pixel_values, sizes = image_batch(model, [(1, 1)])
    out = model(input_ids=input_ids, pixel_values=pixel_values, image_sizes=sizes, labels=input_ids)
    assert out.logits.dtype == dtype and torch.isfinite(out.loss)


def test_component_of_splits_vision_projector_language() -> None:
    assert (
        component_of(
            "model.vision_embed_tokens.img_processor.vision_model.encoder.layers.0.mlp.fc1.weight"
        )
        == "vision"
    )
    assert (
        component_of("base_model.model.model.vision_embed_tokens.img_projection.0.weight")
        == "projector"
    )
    assert component_of("model.vision_embed_tokens.sub_GN") == "projector"
    assert component_of("model.embed_tokens.weight") == "language"
    assert component_of("lm_head.weight") == "language"


def _vision_calls(model: Phi3VForCausalLM) -> list[tuple[int, ...]]:
    """Records the pixel_values shape of every call of the image embedding."""
    calls: list[tuple[int, ...]] = []
    model.model.vision_embed_tokens.register_forward_hook(
        lambda _module, args, _out: calls.append(tuple(args[0].shape))
    )
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_text_only_training_batch_touches_vision_with_exactly_zero(
    tiny_model_dir: Path, dtype: torch.dtype
) -> None:
    # A text-only batch in training runs the vision tower on a stand-in with a real image's
    # shapes (global view + one crop), so every vision parameter gets a gradient -- of
    # exactly zero -- and the loss and language gradients are those of no stand-in at all.
    ids = torch.randint(3, 400, (2, 12), generator=torch.Generator().manual_seed(1))

    def run(vision_trains: bool):
        model = Phi3VForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype).train()
        if not vision_trains:
            model.model.vision_embed_tokens.requires_grad_(False)
        calls = _vision_calls(model)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return model, loss, calls

    touched, loss, calls = run(vision_trains=True)
    untouched, reference, no_calls = run(vision_trains=False)
    assert calls == [(1, 2, 3, 336, 336)] and no_calls == []
    assert torch.equal(loss, reference)
    for (name, param), (_, twin) in zip(
        touched.named_parameters(), untouched.named_parameters(), strict=True
    ):
        if component_of(name) == "language":
            assert torch.equal(param.grad, twin.grad), name
        elif param.requires_grad:
            assert param.grad is not None and not param.grad.any(), name


def test_vision_is_not_run_without_images_in_eval_or_decoding(model) -> None:
    calls = _vision_calls(model)
    ids = torch.randint(3, 400, (1, 6), generator=torch.Generator().manual_seed(2))
    model.eval()
    model(input_ids=ids)
    model.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert calls == []  # one process, no ZeRO-3: nothing to keep in step
