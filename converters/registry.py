"""The registry of sources: each module in `converters/sources/` registers itself.

A source is data: its name, its help text, its options class (a dataclass whose fields
declare their command-line flags with `phi3v_data.flags.flag`) and its converter class.
The command line makes one `phi3v convert <name>` command of each (the CLI layer reads them);
adding a source is one module here (plus its test and sample builder), with no other edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.converter import Converter

SRC_HELP = "The dataset folder as you have it on disk (see the source's notes above)."


@dataclass(frozen=True, slots=True)
class Source:
    """One `phi3v convert <name>` source.

    `options`: the options dataclass; its flag fields are the command's own options, in
    field order (a field whose type is a dataclass with flag fields, such as
    `PromptChoice`, gives its flags there). A positional flag field takes the place of the
    SRC argument (its first value is SRC); otherwise SRC is an argument with `src_help`.
    An options class with a `from_flags(src, **values)` classmethod builds itself from
    the flag values where a default depends on SRC (e.g. "the folder FILE is in").
    """

    name: str
    help: str
    options: type
    converter: Callable[[Any], Converter]
    src_help: str = SRC_HELP

    def make_options(self, src: Path, values: dict[str, Any]) -> Any:
        """The options of a run from its flag values (raises `FlagError` for a bad value)."""
        from_flags = getattr(self.options, "from_flags", None)
        if from_flags is not None:
            return from_flags(src, **values)
        return self.options(**values)


_SOURCES: dict[str, Source] = {}


def register_source(
    name: str,
    *,
    help: str,
    options: type,
    converter: Callable[[Any], Converter],
    src_help: str = SRC_HELP,
) -> Source:
    """Register `phi3v convert <name>`: `converter(options(...))` run on SRC."""
    source = Source(name, help, options, converter, src_help)
    if name in _SOURCES and _SOURCES[name].converter is not converter:
        raise ValueError(f"two sources are registered as {name!r}")
    _SOURCES[name] = source
    return source


def load_sources() -> dict[str, Source]:
    """Import every module of `converters.sources` and return the registered sources."""
    import converters.sources as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(sorted(_SOURCES.items()))
