"""`Phi3VForCausalLM`: native Phi-3.5-vision from transformers' Phi-3 decoder and CLIP.

    input_ids ──embed_tokens──┐
                              ├─ image features written into `<|image|>` positions
    pixel_values ──CLIP──HD embedding──┘ ──> Phi-3 decoder ──> lm_head ──> logits / loss

Parameter names are the official checkpoint's (`model.embed_tokens`, `model.layers.*`,
`model.vision_embed_tokens.*`, `lm_head`), so LoRA targets, DeepSpeed and other tools
that read the official format see the same names. Loading and saving live in
`phi3v_train.weights`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
from transformers import GenerationMixin, Phi3Model, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.initialization import no_init_weights
from transformers.loss.loss_utils import ForCausalLMLoss
from transformers.modeling_outputs import CausalLMOutputWithPast

from phi3v_train.configuration_phi3v import Phi3VConfig
from phi3v_train.image_embedding import Phi3VImageEmbedding
from phi3v_train.weights import load_config, load_weights, save_model

ATTENTION_IMPLEMENTATIONS = ("sdpa", "flash_attention_2", "eager")
Component = Literal["vision", "projector", "language"]


def component_of(param_name: str) -> Component:
    """Which part of the model a parameter belongs to (works on PEFT/DDP-wrapped names)."""
    if "vision_embed_tokens.img_processor." in param_name:
        return "vision"
    if "vision_embed_tokens." in param_name:
        return "projector"
    return "language"


def check_attn_implementation(name: str) -> None:
    if name not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}, got {name!r}"
        )
    if name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ImportError(
            "attn_implementation='flash_attention_2' needs the flash-attn package, which is not"
            " installed (it needs a CUDA GPU: pip install flash-attn --no-build-isolation)."
            " Use 'sdpa' (the default) otherwise."
        )


class Phi3VModel(Phi3Model):
    """The Phi-3 decoder plus `vision_embed_tokens`, under the official `model.` prefix."""

    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__(config.text_config)
        self.image_token_id = config.image_token_id
        self.vision_embed_tokens = Phi3VImageEmbedding(config)

    def embed(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.Tensor | None,
        image_sizes: torch.Tensor | None,
        *,
        prompt_step: bool = True,
    ) -> torch.Tensor:
        """Token embeddings with image features written into the placeholder positions.

        `prompt_step`: False for the decoding steps of generation, whose images (if any)
        are already in the KV cache.
        """
        embeds = self.embed_tokens(input_ids)
        placeholders = input_ids == self.image_token_id
        num_placeholders = int(placeholders.sum())
        if pixel_values is None or pixel_values.shape[0] == 0:
            if num_placeholders:
                raise ValueError(
                    f"the input has {num_placeholders} image placeholder tokens"
                    f" (id {self.image_token_id}) but no pixel_values (0 image features)"
                )
            if prompt_step and self._vision_runs_without_images():
                return embeds + self._zero_from_vision(embeds)
            return embeds
        if image_sizes is None:
            raise ValueError("pixel_values needs image_sizes (images, 2) = padded (h, w)")
        features = self.vision_embed_tokens(pixel_values, image_sizes)
        if features.shape[0] != num_placeholders:
            raise ValueError(
                f"image placeholder count mismatch: the input_ids have {num_placeholders}"
                f" placeholder tokens but the {pixel_values.shape[0]} images give"
                f" {features.shape[0]} image features; the processor must expand each image"
                " tag to num_image_tokens(image) placeholders with the same num_crops"
            )
        return embeds.masked_scatter(placeholders.unsqueeze(-1), features.to(embeds.dtype))

    def _vision_runs_without_images(self) -> bool:
        """Whether a batch without images must still run the vision tower.

        - Training with a trainable tower: every step then gives each vision parameter a
          gradient (zero for a text-only batch). DDP and ZeRO ranks must reduce the same
          parameters in every step, and one process must step its optimizer (weight decay,
          Adam moments) exactly as several do, whatever the batches hold.
        - DeepSpeed ZeRO-3 with several processes, training or not: each module gathers its
          partitioned weights collectively, so every rank must enter the same modules.
        """
        vision = self.vision_embed_tokens
        if self.training and any(p.requires_grad for p in vision.parameters()):
            return True
        partitioned = hasattr(next(vision.parameters()), "ds_id")
        return partitioned and dist.is_initialized() and dist.get_world_size() > 1

    def _zero_from_vision(self, embeds: torch.Tensor) -> torch.Tensor:
        """An exact 0.0 that depends on every vision parameter: the smallest real image
        input through the same embedding path as real images."""
        pixel_values, image_sizes = self.vision_embed_tokens.standin_inputs(embeds.device)
        features = self.vision_embed_tokens(pixel_values, image_sizes)
        return 0.0 * features.sum().to(embeds.dtype)


class Phi3VForCausalLM(PreTrainedModel, GenerationMixin):
    """Phi-3.5-vision for training and generation; see the module docstring."""

    config: Phi3VConfig
    config_class = Phi3VConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _no_split_modules: ClassVar[list[str]] = ["Phi3DecoderLayer", "CLIPEncoderLayer"]

    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__(config)
        self.model = Phi3VModel(config)
        self.vocab_size = config.text_config.vocab_size
        self.lm_head = torch.nn.Linear(
            config.text_config.hidden_size, config.text_config.vocab_size, bias=False
        )
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Phi3VImageEmbedding):
            std = self.config.text_config.initializer_range
            torch.nn.init.normal_(module.glb_GN, std=std)
            torch.nn.init.normal_(module.sub_GN, std=std)

    # -- loading and saving: the official layout, strict about keys ---------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        attn_implementation: str = "sdpa",
        device: str | torch.device = "cpu",
        **unsupported: Any,
    ) -> Phi3VForCausalLM:
        """Load a checkpoint directory in the official layout (see `phi3v_train.weights`)."""
        if unsupported:
            raise TypeError(f"unsupported from_pretrained arguments: {', '.join(unsupported)}")
        return load_model(
            Path(path), dtype=dtype, attn_implementation=attn_implementation, device=device
        )

    def save_pretrained(
        self,
        save_directory: str | Path,
        state_dict: dict[str, torch.Tensor] | None = None,
        max_shard_size: int | str = "5GB",
        **_: Any,
    ) -> None:
        """Write config.json, generation_config.json and safetensors (sharded with an index
        when larger than `max_shard_size`) with the official key names. Extra keyword
        arguments that `transformers.Trainer` passes (safe_serialization, ...) are accepted;
        the format is always safetensors."""
        save_model(self, Path(save_directory), state_dict=state_dict, max_shard_size=max_shard_size)

    # -- forward ---------------------------------------------------------------------------

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.lm_head

    def get_image_features(
        self, pixel_values: torch.Tensor, image_sizes: torch.Tensor
    ) -> torch.Tensor:
        """(images, crops+1, 3, 336, 336) -> (total image tokens, hidden)."""
        return self.model.vision_embed_tokens(pixel_values, image_sizes)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        inputs_embeds: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Embed text and images, run the decoder, and compute the loss when `labels` are given.

        Args:
            input_ids: (batch, seq); `config.image_token_id` marks image feature positions.
            pixel_values: (images in the batch, crops+1, 3, 336, 336), images in order of
                appearance of their placeholders across the flattened batch.
            image_sizes: (images in the batch, 2), padded (h, w).
            labels: (batch, seq), -100 where no loss is taken; shifted inside.
            num_items_in_batch: number of target tokens in the whole (accumulated,
                all-rank) batch; the loss is then sum of token losses / this number, which
                is what `transformers.Trainer` needs for correct scaling.
            past_key_values / cache: the KV cache (`cache` is transformers 5's name).

        Raises:
            ValueError: when the number of placeholders differs from the number of image
                features, naming both counts.
        """
        cache = cache if cache is not None else past_key_values
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("forward needs input_ids or inputs_embeds")
            prompt_step = cache is None or cache.get_seq_length() == 0
            inputs_embeds = self.model.embed(
                input_ids, pixel_values, image_sizes, prompt_step=prompt_step
            )
        if use_cache is None:
            use_cache = self.config.text_config.use_cache and not self.training
        outputs = Phi3Model.forward(
            self.model,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = ForCausalLMLoss(
                logits, labels, self.vocab_size, num_items_in_batch=num_items_in_batch
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    # -- generation ------------------------------------------------------------------------

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        inputs = super().prepare_inputs_for_generation(
            input_ids, is_first_iteration=is_first_iteration, **kwargs
        )
        # Images only enter with the prompt; later steps read them from the KV cache.
        cache = inputs.get("cache")
        prompt_step = is_first_iteration or cache is None or cache.get_seq_length() == 0
        if prompt_step and pixel_values is not None:
            inputs["pixel_values"] = pixel_values
            inputs["image_sizes"] = image_sizes
        return inputs

    def generate(self, *args: Any, **kwargs: Any) -> torch.LongTensor:
        """`GenerationMixin.generate`, stopping at `<|end|>` / `<|endoftext|>` by default and
        never emitting the image placeholder token."""
        kwargs.setdefault("eos_token_id", self.config.stop_token_ids)
        kwargs.setdefault("pad_token_id", self.config.text_config.pad_token_id)
        kwargs.setdefault("suppress_tokens", [self.config.image_token_id])
        return super().generate(*args, **kwargs)


def build_model(
    config: Phi3VConfig,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    device: str | torch.device = "cpu",
    initialize: bool = True,
):
    """A `Phi3VForCausalLM` for `config`; random weights unless `initialize` is False
    (then the memory is left uninitialised, to be overwritten by a checkpoint)."""
    check_attn_implementation(attn_implementation)
    config._attn_implementation = attn_implementation
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            if initialize:
                model = Phi3VForCausalLM(config)
            else:
                with no_init_weights():
                    model = Phi3VForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def load_model(
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    device: str | torch.device = "cpu",
) -> Phi3VForCausalLM:
    """Load a checkpoint directory in the official layout, strictly (`phi3v_train.weights`)."""
    model = build_model(
        load_config(path),
        dtype=dtype,
        attn_implementation=attn_implementation,
        device=device,
        initialize=False,
    )
    load_weights(model, path)
    model.eval()
    return model
