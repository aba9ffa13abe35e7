"""The `phi3v` command line: this module only wires the commands.

The CLI is the top layer: `phi3v_cli` imports the libraries (`phi3v_data`, `converters`,
`phi3v_train`); nothing there imports it.

Each command lives in its own module and registers itself with `register(app)`. Command
modules import heavy libraries (torch, av, datasets) inside the command functions, so
`phi3v --help`, `phi3v validate` and `phi3v convert` start without them.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup, TyperOption

from phi3v_data import __version__

# The order of `phi3v --help`: the data flow, first to last.
COMMAND_ORDER = (
    "convert", "validate", "report", "export-data", "init-model", "train", "eval", "predict",
    "export",
)  # fmt: skip


class _InDataFlowOrder(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))


def _no_type_for_flags(option: TyperOption, ctx) -> str | None:
    # A switch takes no value: its `<bool>` type column only clutters the help.
    return None if option.is_flag else _show_type(option, ctx)


_show_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _no_type_for_flags

app = typer.Typer(
    cls=_InDataFlowOrder,
    name="phi3v",
    help=(
        "Get your own data into Phi-3.5-vision and fine-tune it.\n\n"
        "convert -> validate -> report -> train -> eval/predict/export."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"phi3v {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Get your own data into Phi-3.5-vision and fine-tune it."""


def _register_commands() -> None:
    # One line per command module; `COMMAND_ORDER` sets the order of `phi3v --help`.
    from phi3v_cli import (
        convert,
        eval,
        export,
        export_data,
        init_model,
        predict,
        report,
        train,
        validate,
    )

    convert.register(app)
    for module in (validate, report, export_data, train, eval, predict, export, init_model):
        module.register(app)


_register_commands()


def main() -> None:
    app()
