"""`transformers.Trainer` adapted to the recipe: learning rates per component, atomic
checkpoints, a non-finite loss guard, per-step JSONL log, rich progress, task metrics.

Checkpoints: the Trainer writes `checkpoint-N/` in place; once every process has
finished writing, the main process marks it complete (`phi3v_train.checkpoints`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from phi3v_train.checkpoints import COMPLETE_MARKER, rotate_checkpoints
from phi3v_train.distributed import barrier
from phi3v_train.train_config import TrainConfig


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the bad weights."""


# -- the trainer --------------------------------------------------------------------------


class Phi3VTrainer(Trainer):
    """HF `Trainer` with the recipe's optimizer groups, atomic checkpoints and task metrics.

    Args:
        run_config: the run's `TrainConfig` (learning rates per component, save limit).
        task_evaluator: called as `task_evaluator(model)` at each evaluation; returns
            task metrics (e.g. {"accuracy": 0.5}) that are logged with the eval loss.
        train_lengths: token length of each training sample; given, the training order
            is length-grouped (`--group-by-length`, `phi3v_train.packing`).
        train_sampler: the training order as a sampler with `set_epoch` (several data
            sets: `phi3v_train.mixing.MixSampler`, which groups by length itself);
            overrides `train_lengths`.
    """

    def __init__(
        self,
        *args: Any,
        run_config: TrainConfig,
        task_evaluator=None,
        train_lengths: Sequence[int] | None = None,
        train_sampler=None,
        **kwargs: Any,
    ) -> None:
        self.train_lengths = list(train_lengths) if train_lengths is not None else None
        self.length_sampler = None
        self.given_sampler = train_sampler
        super().__init__(*args, **kwargs)
        self.run_config = run_config
        self.task_evaluator = task_evaluator

    def _get_train_sampler(self, train_dataset=None):
        if self.given_sampler is not None:
            return self.given_sampler
        if self.train_lengths is None:
            return super()._get_train_sampler(train_dataset)
        from phi3v_train.packing import LengthGroupedSampler

        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        self.length_sampler = LengthGroupedSampler(
            self.train_lengths, self.args.train_batch_size, seed
        )
        return self.length_sampler

    def _run_epoch(self, model, epoch, *args: Any, **kwargs: Any):
        # The length-grouped order is a function of (seed, epoch): set the epoch here, as
        # accelerate does not pass it through every sampler wrapper (a resumed
        # multi-process loader among them).
        for sampler in (self.length_sampler, self.given_sampler):
            if sampler is not None:
                sampler.set_epoch(epoch)
        return super()._run_epoch(model, epoch, *args, **kwargs)

    def create_optimizer(self, model=None):
        """AdamW with one group per (component, weight decay): vision, projector, language."""
        from phi3v_train.modeling_phi3v import component_of

        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decayed = set(self.get_decay_parameter_names(opt_model))
        config = self.run_config
        rates = {
            "language": config.learning_rate,
            "projector": _or_default(config.projector_learning_rate, config.learning_rate),
            "vision": _or_default(config.vision_learning_rate, config.learning_rate),
        }
        groups = []
        for component, rate in rates.items():
            for decay in (True, False):
                params = [
                    param
                    for name, param in opt_model.named_parameters()
                    if param.requires_grad
                    and component_of(name) == component
                    and (name in decayed) == decay
                ]
                if params:
                    weight_decay = self.args.weight_decay if decay else 0.0
                    groups.append({"params": params, "lr": rate, "weight_decay": weight_decay})
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Evaluation: each batch's own mean token loss, so the eval loss (the mean over
        # samples of their batch's loss) is the same on one process and on many; the HF
        # default divides by the target tokens of all ranks' batches, but only then.
        if not model.training:
            num_items_in_batch = None
        if "position_ids" in inputs and "attention_mask" not in inputs:
            # A packed batch (`--packing`): the decoder finds the sample boundaries in the
            # position ids only without a KV cache (eval would otherwise make one).
            inputs = {**inputs, "use_cache": False}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _save_checkpoint(self, model, trial) -> None:
        from phi3v_train.model_files import copy_companion_files

        super()._save_checkpoint(model, trial)
        output_dir = Path(self.args.output_dir)
        checkpoint = output_dir / f"checkpoint-{self.state.global_step}"
        barrier()  # every rank has written its shards (optimizer, RNG state)
        if self.args.should_save:
            # The base's remote code and original processor files replace the ones the
            # Trainer saved (the processor's own save stays only if the base has none).
            config = self.run_config
            copy_companion_files(config.model, checkpoint, config.num_crops)
            (checkpoint / COMPLETE_MARKER).write_text(f"{self.state.global_step}\n")
            rotate_checkpoints(output_dir, self.run_config.save_total_limit)
        barrier()

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ):
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
        )
        prefix = metric_key_prefix
        if self.task_evaluator is not None:
            for name, value in self.task_evaluator(self.model).items():
                output.metrics[f"{prefix}_{name}"] = value
        return output


def _or_default(value: float | None, default: float) -> float:
    return default if value is None else value


# -- callbacks ----------------------------------------------------------------------------


class JsonlLogCallback(TrainerCallback):
    """Appends every log entry (loss, learning rate, grad norm, eval metrics) with its step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            entry = {"step": state.global_step, "epoch": state.epoch, **logs}
            with self.path.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(entry) + "\n")


class NonFiniteLossCallback(TrainerCallback):
    """Stops the run at the first NaN/inf loss, before that step can be checkpointed.

    The logged loss is averaged over all processes, so every rank sees the same value
    and stops together.
    """

    def __init__(self) -> None:
        self.bad_step: int | None = None
        self.bad_value: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.bad_step, self.bad_value = state.global_step, loss
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
        return control


class RichProgressCallback(TrainerCallback):
    """Progress on the main process: a rich bar on a terminal; in a pipe or CI log, where a
    bar collapses into one line, a plain line every `plain_every_steps` steps or
    `plain_every_seconds` seconds (step/total, loss, lr, samples/s, ETA) and one per
    evaluation."""

    def __init__(
        self, console=None, plain_every_steps: int | None = None, plain_every_seconds: float = 30.0
    ) -> None:
        self.console = console
        self.plain_every_steps = plain_every_steps
        self.plain_every_seconds = plain_every_seconds
        self.progress = None
        self.task = None
        self.last: dict[str, float] = {}
        self.plain = False
        self.started = 0.0
        self.first_step = 0
        self.printed_step = 0
        self.printed_at = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        import time

        self.started = self.printed_at = time.monotonic()
        self.first_step = self.printed_step = state.global_step
        self.plain = self.console is None or not self.console.is_terminal
        if self.plain:
            if self.plain_every_steps is None:
                self.plain_every_steps = max(1, state.max_steps // 20)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, status=""
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.last.update({k: v for k, v in logs.items() if isinstance(v, int | float)})
        if self.plain:
            self._plain_line(args, state, logs)
            return
        if self.progress is not None:
            self.progress.update(self.task, status="  ".join(self._metrics(eval_too=True)))

    def _metrics(self, eval_too: bool) -> list[str]:
        parts = []
        if "loss" in self.last:
            parts.append(f"loss {self.last['loss']:.4f}")
        if "learning_rate" in self.last:
            parts.append(f"lr {self.last['learning_rate']:.2e}")
        if eval_too:
            parts += _eval_metrics(self.last)
        return parts

    def _plain_line(self, args, state, logs: dict) -> None:
        import time

        if any(key.startswith("eval_") for key in logs):
            metrics = "  ".join(_eval_metrics(logs))
            self.console.print(f"eval at step {state.global_step}: {metrics}", highlight=False)
            return
        if "loss" not in logs:
            return
        now = time.monotonic()
        step, total = state.global_step, state.max_steps
        due = (
            step - self.printed_step >= (self.plain_every_steps or 1)
            or now - self.printed_at >= self.plain_every_seconds
            or step in (self.first_step + 1, total)
        )
        if not due:
            return
        self.printed_step, self.printed_at = step, now
        elapsed = max(now - self.started, 1e-9)
        done = max(step - self.first_step, 1)
        per_step = elapsed / done
        samples = done * args.train_batch_size * args.gradient_accumulation_steps
        samples *= max(args.world_size, 1)
        eta = int(per_step * max(total - step, 0))
        parts = [f"step {step}/{total}", *self._metrics(eval_too=False)]
        parts += [
            f"{samples / elapsed:.2f} samples/s",
            f"ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}",
        ]
        self.console.print("  ".join(parts), highlight=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _eval_metrics(logs: dict) -> list[str]:
    return [
        f"{k} {v:.4f}"
        for k, v in logs.items()
        if k.startswith("eval_")
        and isinstance(v, int | float)
        and "runtime" not in k
        and "per_second" not in k
    ]
