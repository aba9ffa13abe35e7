"""One typed configuration for a training run, built from the CLI flags.

Defaults reproduce the reference recipe (AdamW betas (0.9, 0.95), eps 1e-7, weight
decay 0.01, max grad norm 1.0, linear schedule with 50 warm-up steps, gradient
checkpointing, global batch 64, LoRA r64 / alpha 128 / dropout 0 on the reference
targets). The config is printed at start and saved as `run_config.json` beside the
checkpoints, so every run can be reproduced from its output directory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi3v_data.flags import REQUIRED, flag
from phi3v_data.records import IMAGE_LAYOUT_HELP, IMAGE_LAYOUTS
from phi3v_data.tokens import NUM_CROPS_HELP, check_num_crops

MODES = ("full", "freeze-vision", "lora", "qlora")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ATTENTIONS = ("sdpa", "flash_attention_2", "eager")
REPORT_TO = ("tensorboard", "none")
TRUNCATION = ("truncate", "drop")

# The reference recipe's LoRA targets: language model always, vision tower and projector
# only when vision trains.
LANGUAGE_LORA_TARGETS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
VISION_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
PROJECTOR_LORA_TARGETS = ("img_projection.0", "img_projection.2")

REFERENCE_WARMUP_STEPS = 50
RUN_CONFIG_NAME = "run_config.json"


class ConfigError(ValueError):
    """A configuration that cannot run; the message lists every problem found."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run needs; see `phi3v train --help` for each field."""

    # Each field that is a flag of `phi3v train` declares it here, once (phi3v_data.flags).
    model: Path = flag(
        REQUIRED,
        "--model",
        "-m",
        help="Checkpoint folder in the official layout (the downloaded "
        "Phi-3.5-vision-instruct, or `phi3v init-model` output). Required.",
        show_default=False,
    )
    output_dir: Path = flag(
        REQUIRED,
        "--output-dir",
        "-o",
        help="Run folder: checkpoints, logs, final model. Required.",
        show_default=False,
    )
    # Converted folders (repeat -d): each one's --split is a data set of the run, as is
    # each of `train_files`; `mix` weighs them ("KEY=WEIGHT,..."; see phi3v_train.mixing).
    data_dir: tuple[Path, ...] = flag(
        (),
        "--data-dir",
        "-d",
        help="A folder written by `phi3v convert`; repeat for several data sets.",
        repeat=True,
        exists=True,
        file_okay=False,
    )
    train_files: tuple[Path, ...] = flag(
        (),
        help="JSONL files to train on (each one a data set, like a --data-dir).",
        positional=True,
        repeat=True,
        metavar="FILES",
        show_default=False,
    )
    mix: str | None = flag(
        None,
        help="Several data sets: each one's share of every step's samples, e.g."
        " docvqa=0.7,ucf101=0.3 (keys: the source or the folder/file name). Default: by size.",
    )
    image_root: Path | None = flag(
        None, help="Image root for JSONL files (default: images/ beside each file)."
    )
    split: str = flag("train", help="Training split of --data-dir.")
    eval_split: str | None = flag(
        None, help="Evaluation split of --data-dir (default with --eval-steps: val)."
    )
    eval_files: tuple[Path, ...] = flag(
        (),
        "--eval-files",
        help="JSONL file(s) to evaluate on (repeat the flag), e.g. with positional training files.",
        repeat=True,
        exists=True,
        dir_okay=False,
    )

    mode: str = flag(
        "full",
        help="full fine-tuning (the reference) | freeze-vision (CLIP + projector frozen)"
        " | lora | qlora (LoRA over a 4-bit nf4 base).",
        choices=MODES,
    )
    freeze_vision: bool = flag(
        False, help="LoRA/QLoRA: no adapters on the vision tower and projector."
    )
    num_crops: int = flag(4, help=NUM_CROPS_HELP)
    image_layout: str = flag("seed", help=IMAGE_LAYOUT_HELP, choices=IMAGE_LAYOUTS)
    max_length: int | None = flag(
        None, help="Longest sequence in tokens (images included). Default: no limit."
    )
    truncation: str = flag(
        "truncate",
        help="Samples over --max-length: 'truncate' cuts the text when no image is cut "
        "(else drops), 'drop' always drops. Both are counted and reported.",
        choices=TRUNCATION,
    )

    batch_size: int = flag(64, help="Global batch (all processes, all accumulation steps).")
    per_device_batch_size: int = flag(
        1, help="Samples per device per step. Raise it while memory allows; lower it on OOM."
    )
    packing: bool = flag(
        False,
        help="Concatenate each micro-batch's samples into one row without padding"
        " (position ids restart per sample, attention stays within it): the same steps"
        " and losses as padded batches, less compute when lengths vary.",
    )
    group_by_length: bool = flag(
        False,
        help="Put samples of similar length in the same micro-batch (seeded, restored on"
        " resume): less padding; the summary shows how much.",
    )
    epochs: float = flag(1.0, help="Passes over the training data.")
    max_steps: int | None = flag(None, help="Optimizer steps (overrides --epochs).")
    learning_rate: float = flag(4e-5, "--learning-rate", "--lr", help="Language model LR.")
    vision_learning_rate: float | None = flag(
        None, "--vision-lr", "--vision-learning-rate", help="Vision tower LR (default: --lr)."
    )
    projector_learning_rate: float | None = flag(
        None, "--projector-lr", "--projector-learning-rate", help="Projector LR (default: --lr)."
    )
    warmup_steps: int | None = flag(
        None, help="Warm-up steps (default: 50, at most 10 % of the run)."
    )
    weight_decay: float = flag(0.01, help="AdamW weight decay (reference 0.01).")
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-7
    max_grad_norm: float = flag(1.0, help="Gradient clipping norm (reference 1.0).")

    lora_rank: int = flag(64, help="LoRA rank (reference 64).")
    lora_alpha: int | None = flag(None, help="LoRA alpha (default 2 x rank).")
    lora_dropout: float = flag(0.0, help="LoRA dropout (reference 0).")
    lora_targets: tuple[str, ...] = flag(
        LANGUAGE_LORA_TARGETS,
        help="Comma-separated module names. The default adds the CLIP and projector "
        "targets when vision trains.",
    )

    precision: str = flag(
        "auto",
        help="bf16 mixed precision (Ampere+ GPUs), fp16 (older GPUs), fp32. auto: bf16 if"
        " the GPU has it, else fp16; fp32 on CPU.",
        choices=PRECISIONS,
    )
    attn: str = flag(
        "sdpa",
        help="Attention kernel; flash_attention_2 needs bf16 and a GPU.",
        choices=ATTENTIONS,
    )
    gradient_checkpointing: bool = flag(
        True, help="Recompute activations in backward: much less memory, ~30 % slower."
    )
    deepspeed: str | None = flag(
        None, help="zero2 (the reference settings) | zero3 | PATH to a DeepSpeed JSON config."
    )

    save_steps: int = flag(200, help="Checkpoint every N optimizer steps.")
    save_total_limit: int | None = flag(2, help="Keep at most N complete checkpoints (default 2).")
    resume: str | None = flag(
        None,
        help="'auto' (newest complete checkpoint in --output-dir, if any) or a checkpoint folder.",
    )
    eval_steps: int | None = flag(None, help="Evaluate (loss + task metric) every N steps.")
    eval_max_samples: int = flag(
        64, help="Samples used for the generation metric at each evaluation."
    )
    max_new_tokens: int = flag(64, help="Generation length for the task metric.")
    logging_steps: int = 1
    report_to: str = flag(
        "tensorboard", help="tensorboard writes runs/ in --output-dir.", choices=REPORT_TO
    )
    seed: int = flag(42, help="Seed of the data order, dropout and a new LoRA's weights.")
    workers: int = flag(0, help="Data loader worker processes (4+ feeds a GPU).")
    skip_validation: bool = flag(
        False, help="Train even if `phi3v validate` finds errors (bad samples are skipped)."
    )

    def __post_init__(self) -> None:
        # One typed value per field from what code, the command line, a --config file or
        # run_config.json give (a path as a string, a list for a tuple, one folder for
        # data_dir, "a,b" for lora_targets, 1 for a float...).
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            object.__setattr__(self, field.name, coerce_field(field.name, value))

    @property
    def effective_lora_alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank

    @property
    def trains_vision(self) -> bool:
        return self.mode != "freeze-vision" and not self.freeze_vision

    @property
    def uses_lora(self) -> bool:
        return self.mode in ("lora", "qlora")

    def problems(self) -> list[str]:
        """Every reason this configuration cannot run (empty when it is fine)."""
        found: list[str] = []
        if self.mode not in MODES:
            found.append(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.precision not in PRECISIONS:
            found.append(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.attn not in ATTENTIONS:
            found.append(f"--attn {self.attn!r}: choose one of {', '.join(ATTENTIONS)}")
        if self.report_to not in REPORT_TO:
            found.append(f"--report-to {self.report_to!r}: choose one of {', '.join(REPORT_TO)}")
        if self.truncation not in TRUNCATION:
            found.append(f"--truncation {self.truncation!r}: choose one of {', '.join(TRUNCATION)}")
        if self.attn == "flash_attention_2" and self.precision == "fp16":
            found.append(
                "--attn flash_attention_2 with --fp16 is refused: the reference recipe and "
                "the model's flash-attention path are validated in bf16 only. Use --bf16 "
                "(Ampere or newer GPUs), or keep --fp16 with --attn sdpa."
            )
        if self.attn == "flash_attention_2" and self.precision == "fp32":
            found.append(
                "--attn flash_attention_2 needs --bf16 (flash attention has no fp32 kernels)"
            )
        if self.freeze_vision and self.mode == "full":
            found.append("--freeze-vision with --mode full: use --mode freeze-vision")
        if self.mode == "qlora" and self.deepspeed is not None:
            found.append(
                "--mode qlora with --deepspeed is not supported: 4-bit weights cannot be "
                "sharded by ZeRO. Use DDP (plain torchrun) for QLoRA."
            )
        found += model_dir_problems(self.model)
        if self.eval_split is not None and not self.data_dir:
            found.append("--eval-split needs --data-dir; with JSONL files pass --eval-files FILE")
        if not self.data_dir and not self.train_files:
            found.append(
                "no training data: pass --data-dir OUT (a converted folder) or JSONL files"
            )
        if self.mix is not None:
            from phi3v_train.mixing import MixError, parse_mix

            try:
                parse_mix(self.mix)
            except MixError as exc:
                found.append(str(exc))
            if len(self.data_dir) + len(self.train_files) < 2:
                found.append("--mix needs several data sets: repeat -d (or give JSONL files)")
        if self.image_layout not in IMAGE_LAYOUTS:
            found.append(f"--image-layout must be one of {', '.join(IMAGE_LAYOUTS)}")
        try:
            check_num_crops(self.num_crops)
        except ValueError as exc:
            found.append(f"--num-crops: {exc}")
        for name in ("batch_size", "per_device_batch_size", "save_steps", "lora_rank"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_length is not None and self.max_length < 16:
            found.append("--max-length must be at least 16 tokens")
        if self.max_steps is None and self.epochs <= 0:
            found.append("--epochs must be positive (or pass --max-steps)")
        if self.eval_steps is not None and self.eval_steps < 1:
            found.append("--eval-steps must be at least 1")
        if not 0.0 <= self.lora_dropout < 1.0:
            found.append("--lora-dropout must be in [0, 1)")
        return found

    def check(self) -> TrainConfig:
        problems = self.problems()
        if problems:
            raise ConfigError("\n".join(f"- {problem}" for problem in problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {key: _jsonable(value) for key, value in data.items()}

    def save(self, path: Path) -> None:
        from phi3v_data.jsonl import atomic_write_bytes

        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(path, text.encode())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From `to_dict` output (run_config.json; older ones with one `data_dir` too)."""
        return cls(**data)


_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def model_dir_problems(model: Path, flag: str = "--model") -> list[str]:
    """Why `model` is not a checkpoint folder phi3v can load (empty when it is one)."""
    if not model.exists():
        if _HUB_ID_RE.fullmatch(str(model)):
            name = str(model).split("/")[-1]
            return [
                f"{flag} {model}: no such folder. phi3v never downloads at run time; get the "
                f"checkpoint once (needs network and `pip install huggingface_hub`):\n"
                f"    hf download {model} --local-dir ~/models/{name}\n"
                f"  then pass {flag} ~/models/{name}"
            ]
        return [f"{flag} {model}: no such folder"]
    if not model.is_dir():
        return [f"{flag} {model}: a file, not a checkpoint folder"]
    missing = [name for name in ("config.json", "tokenizer.json") if not (model / name).is_file()]
    if missing:
        return [
            f"{flag} {model}: not a checkpoint folder (no {' or '.join(missing)}); pass the "
            "downloaded Phi-3.5-vision-instruct folder, a `phi3v train` run or `phi3v "
            "init-model` output"
        ]
    return []


@functools.cache
def field_types() -> dict[str, Any]:
    """TrainConfig field name -> its type (resolved annotation)."""
    return typing.get_type_hints(TrainConfig)


def coerce_field(name: str, value: Any) -> Any:
    """`value` as TrainConfig field `name` holds it.

    Raises:
        ConfigError: a value of the wrong kind, naming the flag.
    """
    try:
        return _coerce(field_types()[name], value, name)
    except (TypeError, ValueError):
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag}: {value!r} is not a valid value") from None


def _coerce(kind: Any, value: Any, name: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        inner = next(arg for arg in args if arg is not type(None))
        return _coerce(inner, value, name)
    if origin is tuple:
        item = args[0]
        if value is None:
            items: list[Any] = []
        elif isinstance(value, str | Path):
            text = str(value)
            items = [value] if item is Path else [v.strip() for v in text.split(",") if v.strip()]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise TypeError(name)
        return tuple(_coerce(item, v, name) for v in items)
    if kind is Path:
        if isinstance(value, str | Path) and str(value):
            return Path(value)
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if name == "mix" and isinstance(value, dict):  # {docvqa: 0.7, ucf101: 0.3}
            return ",".join(f"{key}={weight}" for key, weight in value.items())
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    raise TypeError(name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return value


def warmup_steps_for(config: TrainConfig, total_steps: int) -> int:
    """The reference's 50 warm-up steps, capped at 10 % of a short run.

    A 40-step run with 50 warm-up steps would never reach its learning rate; the cap
    keeps the schedule's shape for tiny runs and changes nothing for real ones
    (>= 500 steps).
    """
    if config.warmup_steps is not None:
        return config.warmup_steps
    return min(REFERENCE_WARMUP_STEPS, total_steps // 10)
