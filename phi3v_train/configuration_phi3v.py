"""`Phi3VConfig`: the official flat `config.json` of Phi-3.5-vision as a composite config.

The released `config.json` is a flat Phi-3 text config plus two blocks, `img_processor`
and `embd_layer`. We read it into a `text_config` (`Phi3Config`, rope type `su` becomes
`longrope`, which is what `transformers` calls it today) and a `vision_config`
(`CLIPVisionConfig`, ViT-L/14 at 336 px unless `img_processor.vision_config` overrides it,
as our tiny test models do), and write it back in the same flat layout: every key we read
is written back unchanged, so the official file round-trips to the same JSON.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from transformers import CLIPVisionConfig, Phi3Config, PreTrainedConfig

# Official token ids (tokenizer.json of microsoft/Phi-3.5-vision-instruct).
IMAGE_TOKEN_ID = 32044  # `<|image|>`: the placeholder the processor writes
END_TOKEN_ID = 32007  # `<|end|>`
ENDOFTEXT_TOKEN_ID = 32000  # `<|endoftext|>`

# CLIP ViT-L/14 at 336 px, the tower named by `img_processor.model_name`.
CLIP_VIT_L_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}

DEFAULT_IMG_PROCESSOR = {
    "image_dim_out": 1024,
    "model_name": "openai/clip-vit-large-patch14-336",
    "name": "clip_vision_model",
    "num_img_tokens": 144,
}
DEFAULT_EMBD_LAYER = {
    "embedding_cls": "image",
    "hd_transform_order": "sub_glb",
    "projection_cls": "mlp",
    "use_hd_transform": True,
    "with_learnable_separator": True,
}

# Flat keys of the official file that belong to the Phi-3 text model, in file order.
TEXT_KEYS = (
    "attention_dropout",
    "bos_token_id",
    "embd_pdrop",
    "eos_token_id",
    "hidden_act",
    "hidden_size",
    "initializer_range",
    "intermediate_size",
    "max_position_embeddings",
    "num_attention_heads",
    "num_hidden_layers",
    "num_key_value_heads",
    "original_max_position_embeddings",
    "pad_token_id",
    "resid_pdrop",
    "rms_norm_eps",
    "sliding_window",
    "tie_word_embeddings",
    "use_cache",
    "vocab_size",
)
# Keys we give a meaning to; everything else in the file is carried through verbatim.
_OWN_KEYS = {
    *TEXT_KEYS,
    "rope_scaling",
    "rope_theta",
    "img_processor",
    "embd_layer",
    "model_type",
    "image_token_id",
    "end_token_id",
    "endoftext_token_id",
}
# Optional ids we add for non-official vocabularies (tiny models); absent = official ids.
_OPTIONAL_IDS = {
    "image_token_id": IMAGE_TOKEN_ID,
    "end_token_id": END_TOKEN_ID,
    "endoftext_token_id": ENDOFTEXT_TOKEN_ID,
}


class Phi3VConfig(PreTrainedConfig):
    """Phi-3.5-vision: a Phi-3 decoder, a CLIP vision tower and the HD image embedding.

    Build it with `Phi3VConfig.from_pretrained(checkpoint_dir)` or
    `Phi3VConfig.from_official_dict(config_json_dict)`; `to_dict()` gives the flat
    official layout back.
    """

    model_type: ClassVar[str] = "phi3_v"
    sub_configs_defaults: ClassVar[dict] = {
        "text_config": Phi3Config,
        "vision_config": CLIPVisionConfig,
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    img_processor: dict | None = None
    embd_layer: dict | None = None
    image_token_id: int = IMAGE_TOKEN_ID
    end_token_id: int = END_TOKEN_ID
    endoftext_token_id: int = ENDOFTEXT_TOKEN_ID
    # Keys of the source file we do not interpret (auto_map, torch_dtype, ...), in order.
    passthrough: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self.img_processor = copy.deepcopy(self.img_processor or DEFAULT_IMG_PROCESSOR)
        self.embd_layer = copy.deepcopy(self.embd_layer or DEFAULT_EMBD_LAYER)
        if self.vision_config is None:
            overrides = self.img_processor.get("vision_config") or {}
            self.vision_config = {**CLIP_VIT_L_336, **overrides}
        self.passthrough = dict(self.passthrough or {})
        super().__post_init__(**kwargs)
        self.tie_word_embeddings = self.text_config.tie_word_embeddings
        self._check()

    def _check(self) -> None:
        problems = []
        if self.embd_layer.get("hd_transform_order", "sub_glb") != "sub_glb":
            problems.append("embd_layer.hd_transform_order must be 'sub_glb'")
        if self.embd_layer.get("projection_cls", "mlp") != "mlp":
            problems.append("embd_layer.projection_cls must be 'mlp'")
        if not self.embd_layer.get("use_hd_transform", True):
            problems.append("embd_layer.use_hd_transform must be true")
        if self.img_processor.get("image_dim_out") != self.vision_config.hidden_size:
            problems.append(
                f"img_processor.image_dim_out ({self.img_processor.get('image_dim_out')}) must equal"
                f" the CLIP hidden size ({self.vision_config.hidden_size})"
            )
        if self.vision_config.image_size != 336 or self.vision_config.patch_size != 14:
            problems.append("the CLIP tower must take 336 px images in 14 px patches (24x24 grid)")
        if problems:
            raise ValueError("unsupported Phi-3.5-vision config: " + "; ".join(problems))

    # -- official flat layout ------------------------------------------------------------

    @classmethod
    def from_official_dict(cls, data: dict[str, Any], **kwargs: Any) -> Phi3VConfig:
        """Build from the flat `config.json` dict of the official checkpoint (or ours)."""
        data = copy.deepcopy(data)
        if data.get("model_type", "phi3_v") != "phi3_v":
            raise ValueError(f"not a Phi-3.5-vision config: model_type is {data['model_type']!r}")
        text = {key: data[key] for key in TEXT_KEYS if key in data}
        text["rope_theta"] = data.get("rope_theta", 10000.0)
        if data.get("rope_scaling"):
            rope = copy.deepcopy(data["rope_scaling"])
            # `su` is the old name of `longrope`; the file keeps `su` (see `to_dict`).
            rope_type = rope.pop("type", None) or rope.pop("rope_type", "default")
            rope["rope_type"] = "longrope" if rope_type == "su" else rope_type
            if rope["rope_type"] == "longrope":
                # The ratio Phi-3 uses for the attention scaling; explicit, as transformers asks.
                rope.setdefault(
                    "factor",
                    text.get("max_position_embeddings", 4096)
                    / text.get("original_max_position_embeddings", 4096),
                )
            text["rope_scaling"] = rope
        ids = {key: data[key] for key in _OPTIONAL_IDS if key in data}
        config = cls(
            text_config=Phi3Config(**text),
            img_processor=data.get("img_processor"),
            embd_layer=data.get("embd_layer"),
            passthrough={key: value for key, value in data.items() if key not in _OWN_KEYS},
            **ids,
            **kwargs,
        )
        config._source = data
        return config

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Phi3VConfig:
        kwargs.pop("return_unused_kwargs", None)
        kwargs.pop("_from_auto", None)
        kwargs.pop("_from_pipeline", None)
        attn = kwargs.pop("attn_implementation", None)
        config = cls.from_official_dict(config_dict)
        if attn is not None:
            config._attn_implementation = attn
        return config

    def to_dict(self) -> dict[str, Any]:
        """The flat official layout; keys read from a file come back with their values."""
        source: dict[str, Any] = getattr(self, "_source", {})
        out: dict[str, Any] = {"model_type": self.model_type}
        out.update(copy.deepcopy(self.passthrough))
        out.setdefault("architectures", ["Phi3VForCausalLM"])
        text = self.text_config
        for key in TEXT_KEYS:
            out[key] = getattr(text, key)
        out["rope_theta"] = text.rope_parameters["rope_theta"]
        out["rope_scaling"] = self._rope_scaling_json(source.get("rope_scaling"))
        out["img_processor"] = copy.deepcopy(self.img_processor)
        out["embd_layer"] = copy.deepcopy(self.embd_layer)
        for key, default in _OPTIONAL_IDS.items():
            if key in source or getattr(self, key) != default:
                out[key] = getattr(self, key)
        order = {key: index for index, key in enumerate(source)}
        return dict(sorted(out.items(), key=lambda item: order.get(item[0], len(order))))

    def to_diff_dict(self) -> dict[str, Any]:
        return self.to_dict()

    def _rope_scaling_json(self, source: dict[str, Any] | None) -> dict[str, Any] | None:
        params = self.text_config.rope_parameters
        if params.get("rope_type", "default") == "default":
            return None
        current = {
            "short_factor": params.get("short_factor"),
            "long_factor": params.get("long_factor"),
        }
        if source and all(source.get(key) == value for key, value in current.items()):
            return copy.deepcopy(source)
        return {**current, "type": params["rope_type"]}

    @property
    def stop_token_ids(self) -> list[int]:
        """Generation ends at `<|end|>` or `<|endoftext|>`."""
        return [self.end_token_id, self.endoftext_token_id]

    @property
    def clip_layer_index(self) -> int:
        """Index into CLIP's hidden states whose output feeds the projector (-2 officially)."""
        return int(self.img_processor.get("layer_idx", -2))

    @property
    def tokens_per_crop(self) -> int:
        return int(self.img_processor.get("num_img_tokens", 144))
