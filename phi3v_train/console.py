"""Console hygiene for the training commands: third-party noise off unless --verbose."""

from __future__ import annotations

import logging
import warnings

# Loggers that speak on every run without telling the user anything they can act on:
# DeepSpeed's "Setting accelerator to CPU", bitsandbytes' and kernels' messages about
# optional CPU kernels from the hub, transformers' deprecation and rope-config notes.
_NOISY_LOGGERS = ("DeepSpeed", "bitsandbytes", "kernels", "transformers", "accelerate", "peft")


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def quiet_third_party(verbose: bool) -> None:
    """Raise third-party loggers to ERROR and hide their Future/Deprecation warnings;
    `verbose` keeps everything. Call before importing them (some log at import)."""
    if verbose:
        return
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        # DeepSpeed resets its logger's level when it is imported; a filter stays.
        logger.addFilter(_errors_only)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        for module in ("transformers", "torch", "deepspeed", "peft", "bitsandbytes", "accelerate"):
            warnings.filterwarnings("ignore", category=category, module=module)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
