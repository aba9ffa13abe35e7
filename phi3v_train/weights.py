"""Load and save Phi-3.5-vision checkpoints in the official directory layout.

Loading reads `config.json` and `model.safetensors` or the shards listed in
`model.safetensors.index.json`; a folder without safetensors may instead hold PyTorch
`pytorch_model.bin` or the shards listed in `pytorch_model.bin.index.json` (what the
original code saves under transformers 4.x), read with `torch.load(weights_only=True)`.
Loading is strict either way: every tensor of the model must be in the
files and every tensor in the files must belong to the model, with the documented
exceptions of `KEY_EXCEPTIONS`; otherwise `CheckpointKeyError` lists the names. Saving
writes the same layout and names, so a save/load round trip is bit-exact and tools that
read the official format read our fine-tunes.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import __version__ as transformers_version

from phi3v_data.jsonl import FILE_MODE, atomic_write
from phi3v_train.configuration_phi3v import Phi3VConfig

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
BIN_WEIGHTS_NAME = "pytorch_model.bin"
BIN_INDEX_NAME = "pytorch_model.bin.index.json"

_VISION = "model.vision_embed_tokens.img_processor.vision_model."
# The one key map between checkpoint files and our modules. Module names equal the
# official names, so only these documented exceptions need a rule:
KEY_EXCEPTIONS = {
    # Re-saved official checkpoints hold the shared token embedding a second time under
    # the image embedding's name; it is the same tensor as `model.embed_tokens.weight`.
    "model.vision_embed_tokens.wte.weight": "alias of model.embed_tokens.weight",
    # CLIP's post-layernorm is never used (features come from layer -2): it may be absent.
    _VISION + "post_layernorm.weight": "optional (unused)",
    _VISION + "post_layernorm.bias": "optional (unused)",
    # Older transformers saved CLIP's position ids as a buffer; they are recomputed.
    _VISION + "embeddings.position_ids": "ignored (recomputed)",
}
_ALIASES = {"model.vision_embed_tokens.wte.weight": "model.embed_tokens.weight"}
_SHOWN_NAMES = 20


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded as Phi-3.5-vision."""


class CheckpointKeyError(CheckpointError):
    def __init__(self, path: Path, missing: list[str], unexpected: list[str]) -> None:
        self.missing, self.unexpected = missing, unexpected
        parts = [f"checkpoint {path} does not match the Phi-3.5-vision architecture:"]
        for label, names in (("missing tensors", missing), ("unexpected tensors", unexpected)):
            if names:
                shown = ", ".join(names[:_SHOWN_NAMES])
                more = (
                    f" ... and {len(names) - _SHOWN_NAMES} more"
                    if len(names) > _SHOWN_NAMES
                    else ""
                )
                parts.append(f"{len(names)} {label}: {shown}{more}")
        parts.append("check that config.json belongs to these weights and that no shard is missing")
        super().__init__("\n".join(parts))


def weight_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint directory, from the index when sharded.

    Safetensors when the folder has them; otherwise PyTorch `.bin` (single or sharded)."""
    for index_name, single_name in ((INDEX_NAME, WEIGHTS_NAME), (BIN_INDEX_NAME, BIN_WEIGHTS_NAME)):
        index = path / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise CheckpointError(f"{index}: not a weight index ({error})") from error
            files = sorted(set(weight_map.values()))
            absent = [name for name in files if not (path / name).is_file()]
            if absent:
                raise CheckpointError(
                    f"{index} lists shards that do not exist: {', '.join(absent)}"
                )
            return [path / name for name in files]
        if (path / single_name).is_file():
            return [path / single_name]
    found = (
        ", ".join(sorted(p.name for p in path.iterdir())) if path.is_dir() else "not a directory"
    )
    raise CheckpointError(
        f"no weights in {path}: expected {WEIGHTS_NAME} or {INDEX_NAME} (safetensors), or"
        f" {BIN_WEIGHTS_NAME} or {BIN_INDEX_NAME} (PyTorch) (found: {found})"
    )


class _BinReader:
    """A PyTorch `.bin` state dict behind the two calls `load_model` makes of `safe_open`."""

    def __init__(self, file: Path) -> None:
        try:
            try:
                # mmap: tensors are paged in when copied, not all read up front (zip format).
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy (pre-zip) format cannot be memory-mapped
                state = torch.load(file, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise CheckpointError(f"{file}: cannot read PyTorch weights ({error})") from error
        if not isinstance(state, dict) or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
        ):
            raise CheckpointError(f"{file}: not a state dict of named tensors")
        self.state: dict[str, torch.Tensor] = state

    def keys(self) -> list[str]:
        return list(self.state)

    def get_tensor(self, name: str) -> torch.Tensor:
        return self.state[name]


@contextmanager
def _open_weights(file: Path) -> Iterator[Any]:
    """A reader with `keys()` and `get_tensor(name)` for a safetensors or `.bin` file."""
    if file.name.endswith(".bin"):
        reader = _BinReader(file)
        try:
            yield reader
        finally:
            reader.state.clear()
        return
    with safe_open(file, framework="pt") as reader:
        yield reader


def checkpoint_keys(files: list[Path]) -> dict[str, Path]:
    keys: dict[str, Path] = {}
    for file in files:
        with _open_weights(file) as reader:
            for key in reader.keys():  # noqa: SIM118 - safe_open is not a mapping
                keys[key] = file
    return keys


def match_keys(
    model_keys: set[str], file_keys: set[str]
) -> tuple[dict[str, str], list[str], list[str]]:
    """Map file keys to model keys; return (model key -> file key, missing, unexpected)."""
    mapping = {key: key for key in file_keys if key in model_keys}
    for alias, target in _ALIASES.items():
        if alias in file_keys and target in model_keys and target not in mapping:
            mapping[target] = alias
    missing = sorted(model_keys - mapping.keys() - KEY_EXCEPTIONS.keys())
    unexpected = sorted(file_keys - set(mapping.values()) - KEY_EXCEPTIONS.keys())
    return mapping, missing, unexpected


def load_config(path: Path) -> Phi3VConfig:
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{path} has no {CONFIG_NAME}: not a checkpoint directory")
    try:
        data = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_file}: invalid JSON ({error})") from error
    return Phi3VConfig.from_official_dict(data)


def load_weights(model, path: Path) -> None:
    """Fill `model` (built for `path`'s config.json) from `path`'s weight files, strictly
    (see the module docstring), and keep its generation_config.json beside it."""
    files = weight_files(path)
    file_keys = checkpoint_keys(files)
    state = model.state_dict()
    mapping, missing, unexpected = match_keys(set(state), set(file_keys))
    if missing or unexpected:
        raise CheckpointKeyError(path, missing, unexpected)
    by_file: dict[Path, list[str]] = {}
    for model_key, file_key in mapping.items():
        by_file.setdefault(file_keys[file_key], []).append(model_key)
    reverse = {model_key: file_key for model_key, file_key in mapping.items()}
    mismatched = []
    with torch.no_grad():
        for file, model_keys in by_file.items():
            with _open_weights(file) as reader:
                for model_key in model_keys:
                    tensor = reader.get_tensor(reverse[model_key])
                    target = state[model_key]
                    if tensor.shape != target.shape:
                        mismatched.append(
                            f"{reverse[model_key]}: file {list(tensor.shape)}, model {list(target.shape)}"
                        )
                        continue
                    target.copy_(tensor)
    if mismatched:
        raise CheckpointError(
            f"checkpoint {path}: tensor shapes differ from config.json: " + "; ".join(mismatched)
        )
    _reset_unloaded(model, set(mapping))
    generation = path / GENERATION_CONFIG_NAME
    if generation.is_file():
        model._official_generation_config = json.loads(generation.read_text())


def _reset_unloaded(model, loaded: set[str]) -> None:
    """Give tensors a file may omit (see KEY_EXCEPTIONS) defined values, not raw memory."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in loaded:
                continue
            if name.endswith("post_layernorm.weight"):
                tensor.fill_(1.0)
            elif name.endswith("post_layernorm.bias"):
                tensor.zero_()


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", size.upper())
    if not match:
        raise ValueError(f"max_shard_size must be bytes or like '5GB', got {size!r}")
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}[match.group(2)]
    return int(float(match.group(1)) * scale)


def _shards(state: dict[str, torch.Tensor], limit: int) -> Iterator[dict[str, torch.Tensor]]:
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > limit:
            yield shard
            shard, size = {}, 0
        shard[name] = tensor
        size += nbytes
    if shard:
        yield shard


def save_model(
    model,
    path: Path,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
    max_shard_size: int | str = "5GB",
) -> None:
    """Write config.json, generation_config.json and safetensors in the official layout."""
    path.mkdir(parents=True, exist_ok=True)
    state = state_dict if state_dict is not None else model.state_dict()
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}
    dtypes = {tensor.dtype for tensor in state.values() if tensor.is_floating_point()}
    config = model.config
    if len(dtypes) == 1:
        config.passthrough["torch_dtype"] = str(dtypes.pop()).removeprefix("torch.")
    with atomic_write(path / CONFIG_NAME, "w") as handle:
        handle.write(json.dumps(config.to_dict(), indent=2) + "\n")
    generation = getattr(model, "_official_generation_config", None) or {
        "_from_model_config": True,
        "bos_token_id": config.text_config.bos_token_id,
        "eos_token_id": config.text_config.eos_token_id,
        "pad_token_id": config.text_config.pad_token_id,
        "transformers_version": transformers_version,
    }
    with atomic_write(path / GENERATION_CONFIG_NAME, "w") as handle:
        handle.write(json.dumps(generation, indent=2) + "\n")
    stale_files = [
        path / WEIGHTS_NAME,
        path / INDEX_NAME,
        *path.glob("model-*-of-*.safetensors"),
        path / BIN_WEIGHTS_NAME,
        path / BIN_INDEX_NAME,
        *path.glob("pytorch_model-*-of-*.bin"),
    ]
    for stale in stale_files:
        stale.unlink(missing_ok=True)
    shards = list(_shards(state, _parse_size(max_shard_size)))
    metadata = {"format": "pt"}
    if len(shards) == 1:
        _save_atomic(shards[0], path / WEIGHTS_NAME, metadata)
        return
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        _save_atomic(shard, path / name, metadata)
        weight_map.update(dict.fromkeys(shard, name))
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
        "weight_map": weight_map,
    }
    with atomic_write(path / INDEX_NAME, "w") as handle:
        handle.write(json.dumps(index, indent=2) + "\n")


def _save_atomic(tensors: dict[str, torch.Tensor], target: Path, metadata: dict[str, str]) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    os.chmod(temporary, FILE_MODE)  # safetensors creates 0600 files; ours are like the rest
    os.replace(temporary, target)
