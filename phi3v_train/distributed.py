"""Process-group arithmetic for `torchrun` launches: world size, accumulation, DeepSpeed.

`phi3v train` is launched as one process (`phi3v train ...`) or many
(`torchrun --nproc_per_node=8 [--nnodes=N ...] -m phi3v_cli train ...`); the
global `--batch-size` is the same either way and the gradient accumulation follows
from it, as in the reference recipe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from phi3v_train.train_config import ConfigError

# The reference recipe's ZeRO-2 settings; "auto" values are filled in by the HF Trainer
# from the run's own arguments (batch sizes, accumulation, clipping, precision).
_ZERO2 = {
    "stage": 2,
    "allgather_partitions": True,
    "allgather_bucket_size": 5e8,
    "overlap_comm": True,
    "reduce_scatter": True,
    "reduce_bucket_size": 5e8,
    "contiguous_gradients": True,
    "round_robin_gradients": True,
}
_ZERO3 = {
    "stage": 3,
    "overlap_comm": True,
    "contiguous_gradients": True,
    "reduce_bucket_size": "auto",
    "stage3_prefetch_bucket_size": "auto",
    "stage3_param_persistence_threshold": "auto",
    "stage3_max_live_parameters": 1e9,
    "stage3_max_reuse_distance": 1e9,
    "stage3_gather_16bit_weights_on_model_save": True,
}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def gradient_accumulation_steps(batch_size: int, per_device_batch_size: int, processes: int) -> int:
    """Accumulation steps so that `per_device * processes * steps == batch_size`.

    Raises:
        ConfigError: when the global batch is not a multiple of one step's samples.
    """
    per_step = per_device_batch_size * processes
    if batch_size % per_step:
        lower = max(per_step, batch_size // per_step * per_step)
        raise ConfigError(
            f"--batch-size {batch_size} is not a multiple of --per-device-batch-size "
            f"{per_device_batch_size} x {processes} process(es) = {per_step}; use "
            f"--batch-size {lower} or {lower + per_step}, or change --per-device-batch-size."
        )
    return batch_size // per_step


def deepspeed_config(choice: str, precision: str) -> dict[str, Any]:
    """A DeepSpeed config for `zero2`, `zero3` or a user's JSON file.

    No `optimizer`/`scheduler` sections: the Trainer builds the AdamW with the
    per-component learning rates and the linear schedule, and DeepSpeed wraps them (this
    also avoids compiling DeepSpeed's fused CPU/GPU Adam ops).
    """
    if choice in ("zero2", "zero3"):
        zero = dict(_ZERO2 if choice == "zero2" else _ZERO3)
        return {
            "zero_optimization": zero,
            "bf16": {"enabled": precision == "bf16"},
            "fp16": {
                "enabled": precision == "fp16",
                "loss_scale": 0,
                "initial_scale_power": 16,
                "loss_scale_window": 1000,
                "hysteresis": 2,
                "min_loss_scale": 1,
            },
            "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto",
            "train_batch_size": "auto",
            "train_micro_batch_size_per_gpu": "auto",
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 1_000_000,
            "wall_clock_breakdown": False,
        }
    path = Path(choice)
    if not path.is_file():
        raise ConfigError(
            f"--deepspeed {choice!r}: not 'zero2', 'zero3' or an existing JSON config file"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--deepspeed {path}: cannot read the JSON config: {exc}") from exc


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown(wait: bool = True) -> None:
    """Leave the process group cleanly (an abandoned group aborts the process at exit).

    `wait=False` skips the final barrier: after an error on one rank the others may
    never arrive.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
