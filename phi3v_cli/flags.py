"""Settings dataclasses -> Typer options: each flag is declared once, on its field.

`with_settings(TrainConfig)` adds an option for every `phi3v_data.flags.flag` field of the
class to the decorated command; the command receives them as `settings` (field name ->
value as given on the command line, `None` for tuple flags not given) and builds the
settings object with `settings_values`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import shlex
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import typer

from phi3v_data.flags import Flag, flag_fields


def settings_parameters(
    cls: type, optional: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[inspect.Parameter]:
    """One Typer parameter per flag field of `cls`, in declaration order.

    `optional` fields have no default in `cls` but may be left out on the command line (the
    command finds them elsewhere, e.g. in a --config file).
    """
    hints = typing.get_type_hints(cls)
    optional, exclude = set(optional), set(exclude)
    parameters = []
    for field, spec in flag_fields(cls):
        if field.name in exclude:
            continue
        annotation, default = _cli_type(hints[field.name], field, spec, field.name in optional)
        common: dict[str, Any] = {
            "help": spec.help or None,
            "show_default": spec.show_default,
            "hidden": spec.hidden,
            "metavar": spec.metavar,
            "min": spec.min,
            "max": spec.max,
            "exists": spec.exists,
            "file_okay": spec.file_okay,
            "dir_okay": spec.dir_okay,
        }
        info = typer.Argument(**common) if spec.positional else typer.Option(*spec.names, **common)
        parameters.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[annotation, info],
            )
        )
    return parameters


def _cli_type(kind: Any, field: dataclasses.Field[Any], spec: Flag, optional: bool) -> tuple:
    default: Any = inspect.Parameter.empty
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    nullable = type(None) in typing.get_args(kind) or optional
    if nullable and type(None) in typing.get_args(kind):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if spec.repeat:
            return list[item] | None, None  # type: ignore[valid-type]
        return (str | None if nullable else str), (
            ",".join(map(str, default)) if isinstance(default, tuple) else default
        )
    if spec.scale != 1 and isinstance(default, int):
        default //= spec.scale
    if spec.choices:
        kind = Literal[spec.choices]  # type: ignore[valid-type]
    if optional:
        return kind | None, None
    return (kind | None if nullable else kind), default


def settings_values(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Field values of `cls` from the command-line values in `given` (only those present).

    A repeated tuple flag left out takes the field's default; a comma-separated one is
    split; `Flag.parse` applies last.
    """
    hints = typing.get_type_hints(cls)
    values = {}
    for field, spec in flag_fields(cls):
        if field.name not in given:
            continue
        value = given[field.name]
        kind = hints[field.name]
        if type(None) in typing.get_args(kind):
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if typing.get_origin(kind) is tuple:
            if value is None and spec.repeat:
                value = field.default if field.default is not dataclasses.MISSING else ()
            elif isinstance(value, str):
                value = tuple(part.strip() for part in value.split(",") if part.strip())
            elif value is not None:
                value = tuple(value)
        if spec.scale != 1 and value is not None:
            value *= spec.scale
        if spec.parse is not None and value is not None:
            value = spec.parse(value)
        values[field.name] = value
    return values


def with_settings(
    *classes: type, optional: Iterable[str] = (), exclude: Iterable[str] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give the decorated command an option per flag field of `classes`.

    The generated options take the place of the command's `settings` parameter (so they
    appear there in `--help`); the command gets them as `settings`, a dict.
    """
    optional, exclude = tuple(optional), tuple(exclude)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())
        at = [parameter.name for parameter in own].index("settings")
        generated = [
            parameter
            for cls in classes
            for parameter in settings_parameters(cls, optional, exclude)
        ]
        names = {parameter.name for parameter in generated}
        parameters = [
            parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for parameter in [*own[:at], *generated, *own[at + 1 :]]
        ]

        @functools.wraps(command)
        def run(**given: Any) -> Any:
            settings = {name: given.pop(name) for name in list(given) if name in names}
            return command(settings=settings, **given)

        del run.__wrapped__
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def command_line(ctx: typer.Context, leave_out: Iterable[str] = ()) -> str:
    """The running command with every effective setting, defaults included, in the order
    declared (e.g. for a page's header): what reproduces the output."""
    words = ["phi3v", *ctx.command_path.split()[1:]]
    leave_out = set(leave_out)
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name in leave_out or value is None or value is False:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        if param.param_type_name == "argument":
            words += map(str, values)
        elif value is True:
            words.append(param.opts[0])
        else:
            for item in values:
                words += [param.opts[0], str(item)]
    return shlex.join(words)
