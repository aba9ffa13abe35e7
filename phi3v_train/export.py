"""`phi3v export`: a standalone checkpoint in the official layout.

From a LoRA/QLoRA adapter folder (`--merge-lora`): the base model is loaded in full
precision, the adapter merged into its weights, and the result saved with the
processor files. From a full checkpoint: re-saved (e.g. in another dtype).
"""

from __future__ import annotations

import shutil
from pathlib import Path


class ExportError(ValueError):
    pass


def export_checkpoint(
    model_dir: Path,
    out: Path,
    *,
    merge_lora: bool = False,
    base_model: Path | None = None,
    dtype_name: str = "fp32",
) -> Path:
    """Write `out` (official layout + processor files); returns `out`."""
    import torch

    from phi3v_train.evaluate import adapter_base
    from phi3v_train.modeling import Phi3VForCausalLM
    from phi3v_train.modes import compute_dtype, is_adapter_dir
    from phi3v_train.processing import Phi3VProcessor

    if is_adapter_dir(model_dir):
        if not merge_lora:
            raise ExportError(
                f"{model_dir} is a LoRA adapter: pass --merge-lora to merge it into its base model"
            )
        from peft import PeftModel

        base = base_model or adapter_base(model_dir)
        # Merge in fp32 (also for QLoRA adapters: the base is read unquantised).
        model = Phi3VForCausalLM.from_pretrained(base, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()
        processor_dir = model_dir if (model_dir / "tokenizer.json").is_file() else base
    elif (model_dir / "config.json").is_file():
        model = Phi3VForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        processor_dir = model_dir
    else:
        raise ExportError(f"{model_dir}: neither a checkpoint (config.json) nor an adapter")
    model.to(compute_dtype(dtype_name))
    staging = out.with_name(f".{out.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    model.save_pretrained(staging)
    Phi3VProcessor.from_pretrained(processor_dir).save_pretrained(staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out
