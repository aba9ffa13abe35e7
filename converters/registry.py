"""The registry of sources: each module in `converters/sources/` registers itself.

Adding a source is one module there (plus its test and sample builder); the CLI finds it
without any other edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

Command = TypeVar("Command", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    command: Callable[..., Any]
    help: str


_SOURCES: dict[str, Source] = {}


def register_source(name: str, help: str) -> Callable[[Command], Command]:
    """Register the decorated Typer command function as `phi3v convert <name>`."""

    def decorate(command: Command) -> Command:
        if name in _SOURCES and _SOURCES[name].command is not command:
            raise ValueError(f"two sources are registered as {name!r}")
        _SOURCES[name] = Source(name=name, command=command, help=help)
        return command

    return decorate


def load_sources() -> dict[str, Source]:
    """Import every module of `converters.sources` and return the registered sources."""
    import converters.sources as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(sorted(_SOURCES.items()))
