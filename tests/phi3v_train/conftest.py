"""Shared fixtures: one tiny random Phi-3.5-vision checkpoint directory per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

# The project's shared/ folder sits beside the repository (CI lays a copy there too).
REAL_ASSETS = Path(__file__).resolve().parents[3] / "shared/assets/phi-3.5-vision-instruct"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint in the official layout (config, safetensors, tokenizer, processor).

    Treat it as read-only: copy it before writing into it.
    """
    from phi3v_train.init_model import init_model_dir

    return init_model_dir(tmp_path_factory.mktemp("phi3v-tiny") / "model", "tiny")


@pytest.fixture(scope="session")
def real_assets() -> Path:
    """The real config/tokenizer files of Phi-3.5-vision-instruct (no weights)."""
    if not (REAL_ASSETS / "tokenizer.json").is_file():
        pytest.skip(f"real tokenizer files not found in {REAL_ASSETS}")
    return REAL_ASSETS
