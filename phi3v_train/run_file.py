"""`phi3v train --config FILE`: settings from a YAML (or JSON) file, under the command line.

The file's keys are the settings' names: every `TrainConfig` field (so a run's
`run_config.json` is itself a valid file: `phi3v train --config RUN/run_config.json -o NEW`
repeats the run) and every long flag of `phi3v train` (`lr`, `vision-lr`, `verbose`),
with dashes or underscores. A repeated flag takes a list (`data-dir: [a, b]`). A flag
given on the command line wins over the file; the file wins over the defaults. An
unknown key is an error naming the closest valid one.

The keys come from the dataclass and the command's own parameters, so a new setting
needs no entry here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

from phi3v_train.train_config import ConfigError, TrainConfig

# Command parameters that are not settings of the run.
NOT_IN_FILE = frozenset({"config_file"})


class RunFileError(ConfigError):
    """A --config file that cannot be read or holds an unknown key."""


def key_names(params: list[Any]) -> dict[str, str]:
    """Every accepted key (underscored) -> the name it sets: a command parameter's name or
    a TrainConfig field's. `params`: the click parameters of the command."""
    names: dict[str, str] = {field.name: field.name for field in dataclasses.fields(TrainConfig)}
    for param in params:
        if param.name in NOT_IN_FILE:
            continue
        names[param.name] = param.name
        for option in getattr(param, "opts", ()):
            if option.startswith("--"):
                names[option[2:].replace("-", "_")] = param.name
    return names


def read_run_file(path: Path) -> dict[str, Any]:
    """The mapping a --config file holds (YAML; JSON is read as JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunFileError(f"--config {path}: {exc.strerror or exc}") from None
    import yaml

    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RunFileError(f"--config {path}: not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunFileError(f"--config {path}: expected a mapping of setting: value")
    return data


def file_settings(path: Path, params: list[Any]) -> dict[str, Any]:
    """name -> value from the file at `path`, keys resolved (see the module docstring).

    Raises:
        RunFileError: unreadable file, unknown key (with the closest valid key), a setting
            given twice (e.g. `lr` and `learning_rate`).
    """
    names = key_names(params)
    settings: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in read_run_file(path).items():
        underscored = str(key).replace("-", "_")
        if underscored not in names:
            choices = (
                sorted(names)
                if "-" not in str(key)
                else sorted(name.replace("_", "-") for name in names)
            )
            close = difflib.get_close_matches(str(key), choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RunFileError(f"--config {path}: unknown key {key!r}{hint}")
        name = names[underscored]
        if name in settings:
            raise RunFileError(
                f"--config {path}: {key!r} and {given_as[name]!r} set the same thing"
            )
        settings[name] = value
        given_as[name] = str(key)
    return settings


def merge_settings(ctx: Any, path: Path | None) -> dict[str, Any]:
    """The command's parameter values with the file's under them: a file value applies
    where its flag was not given on the command line (or in the environment)."""
    values = dict(ctx.params)
    if path is None:
        return values
    # By name: Typer may carry its own copy of click, with its own ParameterSource enum.
    explicit = {"COMMANDLINE", "ENVIRONMENT", "PROMPT"}
    for name, value in file_settings(path, list(ctx.command.params)).items():
        source = ctx.get_parameter_source(name) if name in ctx.params else None
        if source is not None and source.name in explicit:
            continue
        values[name] = value
    return values


def config_from(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from the merged values (names that are fields; others are the
    command's own, such as `verbose`)."""
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{name: value for name, value in values.items() if name in fields})
