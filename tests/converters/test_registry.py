"""Sources are data (name, help, options class, converter); the CLI makes their commands.

The library never imports Typer or the CLI; each flag is declared once, on the options
field it fills, and every `phi3v convert <source>` command offers SRC, --out-dir, the
source's own flags, then --workers, --overwrite and --validate.
"""

from __future__ import annotations

import subprocess
import sys

import typer

from converters.framework import RunSettings
from converters.registry import load_sources
from phi3v_cli.convert import convert_app
from phi3v_data.flags import flag_fields

_IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import converters
names = [m.name for m in pkgutil.walk_packages(converters.__path__, "converters.")]
for name in names:
    importlib.import_module(name)
from converters.registry import load_sources
assert load_sources()
print(len(names), sorted(m for m in sys.modules if m.split(".")[0] in ("typer", "phi3v_cli")))
"""


def test_the_converters_library_never_loads_typer_or_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING], capture_output=True, text=True, check=True
    )
    count, loaded = result.stdout.split(" ", 1)
    assert int(count) >= 20  # every module of converters/, sources and samples included
    assert loaded.strip() == "[]"


def _commands() -> dict[str, typer.core.TyperCommand]:
    group = typer.main.get_command(convert_app())
    return dict(group.commands)  # type: ignore[attr-defined]


def test_every_source_command_has_the_shared_options_around_its_own() -> None:
    sources = load_sources()
    commands = _commands()
    assert sorted(commands) == sorted(sources)
    run_flags = [field.name for field, _ in flag_fields(RunSettings)]
    assert run_flags == ["out_dir", "workers", "overwrite", "validate"]
    for name, command in commands.items():
        params = [param.name for param in command.params]
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        assert len(arguments) == 1 and arguments[0].required, name
        options = [p.name for p in command.params if p.param_type_name == "option"]
        assert options[0] == "out_dir" and options[-3:] == run_flags[1:], name
        assert len(set(params)) == len(params), name
        for param in command.params:
            assert getattr(param, "help", None), (name, param.name)
        own = [field.name for field, _ in flag_fields(sources[name].options)]
        assert set(own) - {arguments[0].name} <= set(options), name


def test_flags_keep_the_names_and_defaults_of_their_fields() -> None:
    commands = _commands()
    ucf = {param.name: param for param in commands["ucf101"].params}
    assert ucf["num_frames"].opts == ["--num-frames"] and ucf["num_frames"].default == 8
    assert ucf["allow_truncated"].secondary_opts == ["--no-allow-truncated"]
    assert ucf["workers"].opts == ["--workers", "-j"] and ucf["workers"].default is None
    assert ucf["validate"].secondary_opts == ["--no-validate"]
    memes = {param.name: param for param in commands["hateful-memes"].params}
    assert memes["prompt_index"].opts == ["--prompt-index"]
    assert memes["prompt_template"].opts == ["--prompt"]
    table = {param.name: param for param in commands["table"].params}
    assert table["inputs"].nargs == -1 and table["inputs"].required
    assert table["image_columns"].opts == ["--image-column"] and table["image_columns"].multiple
