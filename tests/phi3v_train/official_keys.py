"""The state-dict keys and shapes of microsoft/Phi-3.5-vision-instruct, written from the
documented architecture (docs/model.md), independently of our modules."""

from __future__ import annotations

HIDDEN, INTERMEDIATE, LAYERS, VOCAB = 3072, 8192, 32, 32064
CLIP_WIDTH, CLIP_MLP, CLIP_LAYERS, PATCH, POSITIONS = 1024, 4096, 24, 14, 577


def official_keys() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (VOCAB, HIDDEN),
        "model.norm.weight": (HIDDEN,),
        "lm_head.weight": (VOCAB, HIDDEN),
    }
    for i in range(LAYERS):
        layer = f"model.layers.{i}."
        keys[layer + "self_attn.qkv_proj.weight"] = (3 * HIDDEN, HIDDEN)
        keys[layer + "self_attn.o_proj.weight"] = (HIDDEN, HIDDEN)
        keys[layer + "mlp.gate_up_proj.weight"] = (2 * INTERMEDIATE, HIDDEN)
        keys[layer + "mlp.down_proj.weight"] = (HIDDEN, INTERMEDIATE)
        keys[layer + "input_layernorm.weight"] = (HIDDEN,)
        keys[layer + "post_attention_layernorm.weight"] = (HIDDEN,)
    vision = "model.vision_embed_tokens.img_processor.vision_model."
    keys[vision + "embeddings.class_embedding"] = (CLIP_WIDTH,)
    keys[vision + "embeddings.patch_embedding.weight"] = (CLIP_WIDTH, 3, PATCH, PATCH)
    keys[vision + "embeddings.position_embedding.weight"] = (POSITIONS, CLIP_WIDTH)
    for norm in ("pre_layrnorm", "post_layernorm"):
        keys[vision + norm + ".weight"] = (CLIP_WIDTH,)
        keys[vision + norm + ".bias"] = (CLIP_WIDTH,)
    for i in range(CLIP_LAYERS):
        layer = f"{vision}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            keys[layer + f"self_attn.{proj}.weight"] = (CLIP_WIDTH, CLIP_WIDTH)
            keys[layer + f"self_attn.{proj}.bias"] = (CLIP_WIDTH,)
        for norm in ("layer_norm1", "layer_norm2"):
            keys[layer + norm + ".weight"] = (CLIP_WIDTH,)
            keys[layer + norm + ".bias"] = (CLIP_WIDTH,)
        keys[layer + "mlp.fc1.weight"] = (CLIP_MLP, CLIP_WIDTH)
        keys[layer + "mlp.fc1.bias"] = (CLIP_MLP,)
        keys[layer + "mlp.fc2.weight"] = (CLIP_WIDTH, CLIP_MLP)
        keys[layer + "mlp.fc2.bias"] = (CLIP_WIDTH,)
    embed = "model.vision_embed_tokens."
    keys[embed + "img_projection.0.weight"] = (HIDDEN, 4 * CLIP_WIDTH)
    keys[embed + "img_projection.0.bias"] = (HIDDEN,)
    keys[embed + "img_projection.2.weight"] = (HIDDEN, HIDDEN)
    keys[embed + "img_projection.2.bias"] = (HIDDEN,)
    keys[embed + "glb_GN"] = (1, 1, 4 * CLIP_WIDTH)
    keys[embed + "sub_GN"] = (1, 1, 1, 4 * CLIP_WIDTH)
    return keys
