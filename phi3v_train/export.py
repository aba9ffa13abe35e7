"""`phi3v export`: a standalone checkpoint in the official layout.

From a LoRA/QLoRA adapter folder (`--merge-lora`): the base model is loaded in full
precision, the adapter merged into its weights, and the result saved with the
processor files. From a full checkpoint: re-saved (e.g. in another dtype). Either way the
folder gets the remote-code `*.py` and the original processor/tokenizer files byte for byte
(`phi3v_train.model_files`): from the adapter's base, or from the checkpoint itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from phi3v_train.model_files import PREPROCESSOR_CONFIG, copy_companion_files, has_tokenizer_files


class ExportError(ValueError):
    pass


def export_checkpoint(
    model_dir: Path,
    out: Path,
    *,
    merge_lora: bool = False,
    base_model: Path | None = None,
    dtype_name: str | None = None,
) -> Path:
    """Write `out` (official layout + processor files); returns `out`.

    `dtype_name` (fp32 | bf16 | fp16): the saved weights' dtype; None keeps the base
    checkpoint's (the release is bf16: an fp32 export would be twice its size).
    """
    import torch

    from phi3v_train.evaluate import adapter_base
    from phi3v_train.modeling_phi3v import Phi3VForCausalLM
    from phi3v_train.modes import compute_dtype, is_adapter_dir
    from phi3v_train.processing_phi3v import Phi3VProcessor

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
        # Remote code and processor files come from the base, with the adapter's num_crops.
        files_dir = Path(base)
        processor_dir = model_dir if (model_dir / "tokenizer.json").is_file() else files_dir
        num_crops = _num_crops(model_dir)
    elif (model_dir / "config.json").is_file():
        model = Phi3VForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        files_dir = processor_dir = model_dir
        num_crops = None
    else:
        raise ExportError(f"{model_dir}: neither a checkpoint (config.json) nor an adapter")
    model.to(compute_dtype(dtype_name or checkpoint_dtype(trained_from(model_dir, files_dir))))
    staging = out.with_name(f".{out.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    model.save_pretrained(staging)
    processor = (
        None if has_tokenizer_files(files_dir) else Phi3VProcessor.from_pretrained(processor_dir)
    )
    copy_companion_files(files_dir, staging, num_crops, processor=processor)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def trained_from(model_dir: Path, default: Path) -> Path:
    """The base checkpoint a `phi3v train` run started from (its run_config.json), else
    `default`."""
    try:
        base = Path(json.loads((model_dir / "run_config.json").read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return default
    return base if (base / "config.json").is_file() else default


def checkpoint_dtype(folder: Path) -> str:
    """The dtype a checkpoint folder's config.json records (`torch_dtype`/`dtype`), as
    fp32 | bf16 | fp16; fp32 when it records none."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "fp32"
    recorded = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(recorded, "fp32")


def _num_crops(folder: Path) -> int | None:
    """The `num_crops` recorded in a folder's preprocessor_config.json, if any."""
    path = folder / PREPROCESSOR_CONFIG
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("num_crops")
    return value if isinstance(value, int) else None
