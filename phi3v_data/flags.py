"""Command-line flags, declared once: on the settings dataclass field they fill.

A library settings class (`TrainConfig`, a converter's options) declares each field with
`flag(default, help=...)`; the command layer (`phi3v_cli.flags`) turns those fields into the
command's options, so a flag's name, default, help and bounds are written in one place.
Nothing here imports Typer: the library describes its settings, the CLI presents them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any

FLAG = "phi3v.flag"
REQUIRED: Any = MISSING  # flag(REQUIRED, ...): a field with no default


class FlagError(ValueError):
    """A settings value that cannot work, naming the flag that gave it."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag
        self.message = message


@dataclass(frozen=True, slots=True)
class Flag:
    """How one settings field appears on the command line.

    `names` default to `--field-name`; `repeat` makes a tuple field a repeatable flag (else
    its values come as one comma-separated text); `parse` turns the command-line value into
    the field's value; `positional` makes the field an argument; `scale`: the command line
    gives the value in units of `scale` (e.g. MiB for a field in bytes).
    """

    help: str = ""
    names: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    metavar: str | None = None
    show_default: bool | str = True
    hidden: bool = False
    positional: bool = False
    repeat: bool = False
    exists: bool = False
    file_okay: bool = True
    dir_okay: bool = True
    parse: Callable[[Any], Any] | None = None
    scale: int = 1


def flag(
    default: Any = MISSING,
    *names: str,
    default_factory: Any = MISSING,
    **spec: Any,
) -> Any:
    """A dataclass field that is also a command-line flag (see `Flag` for `spec`)."""
    metadata = {FLAG: Flag(names=names, **spec)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Flag]]:
    """The fields of `cls` that are command-line flags, in declaration order."""
    return [(f, f.metadata[FLAG]) for f in dataclasses.fields(cls) if FLAG in f.metadata]


def flag_name(cls: type, field_name: str) -> str:
    """The long flag of `field_name` as a user types it (for messages)."""
    for f, spec in flag_fields(cls):
        if f.name == field_name:
            long = [name for name in spec.names if name.startswith("--")]
            return long[0] if long else "--" + field_name.replace("_", "-")
    return "--" + field_name.replace("_", "-")
