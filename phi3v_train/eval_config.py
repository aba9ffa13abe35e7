"""`phi3v eval` settings: each field declares its flag once (`phi3v_data.flags`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3v_data.flags import REQUIRED, flag
from phi3v_data.tokens import NUM_CROPS_HELP
from phi3v_train.train_config import ATTENTIONS, PRECISIONS

METRICS = ("auto", "accuracy", "anls")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """What `run_evaluation` scores, and how it generates."""

    model: Path = flag(
        REQUIRED,
        "--model",
        "-m",
        help="A trained run folder, checkpoint or LoRA adapter.",
        exists=True,
        file_okay=False,
    )
    data_dir: Path | None = flag(
        None,
        "--data-dir",
        "-d",
        help="A folder written by `phi3v convert`.",
        exists=True,
        file_okay=False,
    )
    files: tuple[Path, ...] = flag(
        (),
        help="JSONL files (instead of --data-dir).",
        positional=True,
        repeat=True,
        show_default=False,
    )
    split: str = flag("val", help="Split of --data-dir.")
    image_root: Path | None = flag(None, help="Image root for JSONL files.")
    output_dir: Path | None = flag(
        None, "--output-dir", "-o", help="Where to write (default: MODEL/eval-SPLIT)."
    )
    base_model: Path | None = flag(
        None, help="Base checkpoint of an adapter (default: from adapter_config.json)."
    )
    metric: str = flag(
        "auto", help="auto: ANLS for DocVQA, accuracy for the other sources.", choices=METRICS
    )
    batch_size: int = flag(8, help="Generation batch per process (left-padded).")
    # None: from the longest gold answer (`evaluate.token_limit`).
    max_new_tokens: int | None = flag(
        None,
        min=1,
        help="Generation limit per answer. Default: the longest gold answer of the "
        "evaluated samples in the model's tokens + 8 (64 when no sample has one).",
        show_default=False,
    )
    max_samples: int | None = flag(None, help="Evaluate the first N samples only.")
    num_crops: int | None = flag(None, help=NUM_CROPS_HELP + " Default: the model's.")
    precision: str = flag(
        "auto",
        help="auto: bf16 if the GPU has it, else fp16; fp32 on CPU.",
        choices=PRECISIONS,
    )
    attn: str = flag(
        "sdpa", help="Attention kernel; flash_attention_2 needs bf16 and a GPU.", choices=ATTENTIONS
    )

    @property
    def out(self) -> Path:
        return self.output_dir or self.model / f"eval-{self.split}"
