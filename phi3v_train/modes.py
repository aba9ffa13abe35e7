"""Training modes: which parameters train, and how the model is loaded for each.

| mode | trains | weights |
|---|---|---|
| full | everything | compute dtype via autocast, fp32 master weights |
| freeze-vision | language model (incl. the shared token embedding); CLIP tower and projector frozen | as full |
| lora | LoRA adapters (rank/alpha/dropout) on the reference targets; vision-tower and projector LoRA unless `--freeze-vision` | frozen base in the compute dtype |
| qlora | as lora, over a base quantised to 4-bit nf4 by bitsandbytes (double quantisation) | 4-bit base, bf16/fp16/fp32 compute |
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from phi3v_train.train_config import (
    LANGUAGE_LORA_TARGETS,
    PROJECTOR_LORA_TARGETS,
    VISION_LORA_TARGETS,
    TrainConfig,
)

if TYPE_CHECKING:
    import torch

_PEFT_PREFIX = "base_model.model."
# Never quantised: the output head (as bitsandbytes' own loaders do) and the projector,
# whose two small layers set the scale of the image features.
_KEEP_FULL_PRECISION = ("lm_head", "img_projection")


def compute_dtype(precision: str) -> torch.dtype:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 on a GPU that supports it, else fp16 on a GPU, else fp32 (CPU)."""
    if precision != "auto":
        return precision
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def lora_targets(config: TrainConfig) -> list[str]:
    """The reference targets: language always; CLIP and projector when vision trains."""
    targets = list(config.lora_targets)
    if config.trains_vision and tuple(config.lora_targets) == LANGUAGE_LORA_TARGETS:
        targets += list(VISION_LORA_TARGETS) + list(PROJECTOR_LORA_TARGETS)
    return targets


def load_model_for_training(config: TrainConfig, precision: str, device: str = "cpu"):
    """Load `config.model` and prepare it for `config.mode` (frozen parts, LoRA, 4-bit)."""
    import torch

    from phi3v_train.modeling_phi3v import Phi3VForCausalLM

    # LoRA bases are frozen: keep them in the compute dtype. Trained weights stay fp32
    # (autocast computes in bf16/fp16; DeepSpeed keeps its own fp32 master copy).
    dtype = compute_dtype(precision) if config.uses_lora else torch.float32
    model = Phi3VForCausalLM.from_pretrained(
        config.model, dtype=dtype, attn_implementation=config.attn
    )
    if config.mode == "qlora":
        quantize_4bit(model, compute_dtype(precision), device)
    elif device != "cpu":
        model.to(device)
    if config.mode == "freeze-vision":
        freeze_vision(model)
    if not config.uses_lora:
        return model
    return add_lora(model, config)


def freeze_vision(model: torch.nn.Module) -> None:
    from phi3v_train.modeling_phi3v import component_of

    for name, param in model.named_parameters():
        if component_of(name) in ("vision", "projector"):
            param.requires_grad_(False)


def add_lora(model: torch.nn.Module, config: TrainConfig):
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    for param in model.parameters():
        param.requires_grad_(False)
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.effective_lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_targets(config),
        exclude_modules=unused_clip_modules(model) or None,
        task_type="CAUSAL_LM",
    )
    # LoRA's A matrices are random: seed first so a rerun (and a resume) starts identically.
    set_seed(config.seed)
    return get_peft_model(model, lora)


def unused_clip_modules(model: torch.nn.Module) -> list[str]:
    """Names of the modules in the CLIP layers after the one whose features are used: they
    never see a gradient, and an adapter there would stall DDP (a parameter without one)."""
    embedding = model.model.vision_embed_tokens
    layers = embedding.img_processor.vision_model.encoder.layers
    prefix = "model.vision_embed_tokens.img_processor.vision_model.encoder.layers"
    return [
        f"{prefix}.{index}.{name}"
        for index in range(embedding.used_clip_layers, len(layers))
        for name, _ in layers[index].named_modules()
        if name
    ]


def quantize_4bit(model: torch.nn.Module, dtype: torch.dtype, device: str) -> None:
    """Replace every `nn.Linear` (but the head and projector) by a bitsandbytes nf4 layer.

    Layer by layer, so the full-precision copy of one layer at a time is all that is
    duplicated; `.to(device)` performs the quantisation (CPU works too).
    """
    import bitsandbytes as bnb
    import torch

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full_name = f"{name}.{child_name}" if name else child_name
            if type(child) is not torch.nn.Linear or any(
                k in full_name for k in _KEEP_FULL_PRECISION
            ):
                continue
            layer = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=dtype,
                quant_type="nf4",
                compress_statistics=True,
                device="meta",
            )
            layer.weight = bnb.nn.Params4bit(
                child.weight.data.to(dtype),
                requires_grad=False,
                quant_type="nf4",
                compress_statistics=True,
            )
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data.to(dtype), requires_grad=False)
            setattr(module, child_name, layer.to(device))
    model.to(device)
    model.is_loaded_in_4bit = True


def trainable_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameter counts per component: vision, projector, language, lora, total."""
    from phi3v_train.modeling_phi3v import component_of

    counts: Counter[str] = Counter({"vision": 0, "projector": 0, "language": 0, "lora": 0})
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = "lora" if "lora_" in name else component_of(name.removeprefix(_PEFT_PREFIX))
        counts[key] += param.numel()
    counts["total"] = sum(counts.values())
    return dict(counts)


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()
