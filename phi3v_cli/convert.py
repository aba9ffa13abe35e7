"""`phi3v convert <source>`: one command per registered source, progress bar, summary table
and exit codes.

A source (`converters.registry.Source`) is data: a name, a help text, an options class
whose fields declare their flags, and a converter. Its command here is: SRC (or the
options' own positional argument), `--out-dir`, the source's flags in field order, then
`--workers`, `--overwrite` and `--validate` (the flags of `RunSettings`). It builds the
options from the flags (a `FlagError` is a usage error, exit 2), runs the conversion with
a progress bar, prints the summary, validates the output and sets the exit code.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from converters.converter import (
    ConversionError,
    ConversionSummary,
    Converter,
    NothingConverted,
    Skip,
)
from converters.framework import ProgressSink, RunSettings, default_workers, run_conversion
from converters.output import record_validation, recorded_validation
from converters.registry import Source, load_sources
from phi3v_cli.flags import settings_parameters, settings_values
from phi3v_data.flags import FLAG, FlagError, flag_fields

console = Console(stderr=True)

# `--workers` left out means all cores (`default_workers()`), not `RunSettings`' default.
_ALL_CORES = ("workers",)


class RichProgress(ProgressSink):
    """A progress bar with items, an optional rate counter (e.g. frames/s) and an ETA."""

    def __init__(self, progress: Progress, rate_counter: str | None) -> None:
        self.progress = progress
        self.rate_counter = rate_counter
        self.task: TaskID | None = None
        self.counted = 0

    def start(self, total_items: int, done_items: int, unit: str) -> None:
        self.unit = unit
        self.task = self.progress.add_task(
            f"converting {unit}", total=total_items, completed=done_items, rate=""
        )

    def advance(self, items: int, counters: Counter[str]) -> None:
        assert self.task is not None
        rate = ""
        if self.rate_counter:
            self.counted += counters.get(self.rate_counter, 0)
            elapsed = self.progress.tasks[self.task].elapsed or 0.0
            if elapsed > 0:
                rate = f"{self.counted / elapsed:,.0f} {self.rate_counter}/s"
        self.progress.update(self.task, advance=items, rate=rate)


# --- the commands ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _OptionFlags:
    """The command-line parameters of a source's options class, and how to read them back.

    `nested`: an options field whose type is a settings class of its own (`PromptChoice`)
    -> that class and {parameter name: its field name}. `positional`: the names of the
    positional flag fields (they replace SRC; the first value of the first one is SRC).
    """

    parameters: list[inspect.Parameter]
    nested: dict[str, tuple[type, dict[str, str]]]
    positional: list[str]

    @classmethod
    def of(cls, options: type) -> _OptionFlags:
        hints = typing.get_type_hints(options)
        own = {parameter.name: parameter for parameter in settings_parameters(options)}
        positional = [field.name for field, spec in flag_fields(options) if spec.positional]
        parameters: list[inspect.Parameter] = []
        nested: dict[str, tuple[type, dict[str, str]]] = {}
        for field in dataclasses.fields(options):
            if field.name in own:
                parameter = own[field.name]
                if field.name in positional:
                    parameter = _required(parameter)
                parameters.append(parameter)
            elif FLAG not in field.metadata and _has_flags(hints[field.name]):
                inner = hints[field.name]
                names: dict[str, str] = {}
                for parameter in settings_parameters(inner):
                    names[f"{field.name}_{parameter.name}"] = parameter.name
                    parameters.append(parameter.replace(name=f"{field.name}_{parameter.name}"))
                nested[field.name] = (inner, names)
        return cls(parameters, nested, positional)

    def values(self, options: type, given: dict[str, Any]) -> dict[str, Any]:
        """The options' field values from the command-line values (`FlagError` if bad)."""
        values = settings_values(options, given)
        for name, (inner, names) in self.nested.items():
            inner_given = {field: given[parameter] for parameter, field in names.items()}
            values[name] = inner(**settings_values(inner, inner_given))
        return values


def _has_flags(kind: Any) -> bool:
    return dataclasses.is_dataclass(kind) and isinstance(kind, type) and bool(flag_fields(kind))


def _required(parameter: inspect.Parameter) -> inspect.Parameter:
    """A positional argument that must be given (at least once, when it takes several)."""
    kind, *info = typing.get_args(parameter.annotation)
    if type(None) in typing.get_args(kind):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return parameter.replace(
        annotation=Annotated[(kind, *info)],  # type: ignore[valid-type]
        default=inspect.Parameter.empty,
    )


def source_command(source: Source) -> Callable[..., None]:
    """The `phi3v convert <source>` command function."""
    flags = _OptionFlags.of(source.options)
    run = {
        parameter.name: parameter
        for parameter in settings_parameters(RunSettings, optional=_ALL_CORES)
    }
    src = []
    if not flags.positional:
        src.append(
            inspect.Parameter(
                "src",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[
                    Path, typer.Argument(help=source.src_help, show_default=False)
                ],
            )
        )
    parameters = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for parameter in [
            *src,
            run.pop("out_dir"),
            *flags.parameters,
            *run.values(),
        ]
    ]
    names = [parameter.name for parameter in parameters]
    if len(set(names)) != len(names):
        raise ValueError(f"convert {source.name}: two options have the same name: {names}")

    def command(**given: Any) -> None:
        run_given = {name: given.pop(name) for name in ("out_dir", *run)}
        path = Path(given[flags.positional[0]][0]) if flags.positional else given.pop("src")
        try:
            options = source.make_options(path, flags.values(source.options, given))
        except FlagError as exc:
            raise typer.BadParameter(exc.message, param_hint=exc.flag) from exc
        values = settings_values(RunSettings, run_given)
        values["workers"] = values["workers"] or default_workers()
        run_from_cli(source.converter(options), path, RunSettings(**values))

    command.__name__ = command.__qualname__ = f"convert_{source.name.replace('-', '_')}"
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return command


def convert_app() -> typer.Typer:
    """The `phi3v convert` group: one command per registered source."""
    sources = load_sources()
    app = typer.Typer(
        name="convert",
        help=(
            "Convert a dataset as you have it on disk into phi3v JSONL + images/.\n\n"
            f"Sources: {', '.join(sources) or '(none registered)'}. Interrupted runs resume "
            "when rerun with the same arguments; the output is identical for any --workers."
        ),
        no_args_is_help=True,
        rich_markup_mode="rich",
    )
    for source in sources.values():
        app.command(source.name, help=source.help)(source_command(source))
    return app


def register(app: typer.Typer) -> None:
    app.add_typer(convert_app())


# --- running one -------------------------------------------------------------------------


def run_from_cli(converter: Converter, src: Path, settings: RunSettings) -> None:
    """Run a conversion with a progress bar, print the summary, validate, set the exit code."""
    out_dir = settings.out_dir
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    try:
        with progress:
            summary = run_conversion(
                converter, src, settings, RichProgress(progress, converter.rate_counter)
            )
    except NothingConverted as exc:
        print_summary(exc.summary, examples=False)
        print_skip_examples(exc.summary.skips, more_in_manifest=False)
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    except ConversionError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/yellow] finished work is kept; rerun the same command to "
            "resume, or add --overwrite to start over."
        )
        raise typer.Exit(130) from None
    if summary.already_complete:
        print_summary(summary, examples=False)
        record = recorded_validation(out_dir)
        if not settings.validate or (record is not None and record["passed"]):
            verdict = ""
            if settings.validate and record is not None:
                warnings = record.get("warnings", 0)
                plural = "s" if warnings != 1 else ""
                verdict = " Validated when converted: OK" + (
                    f" with {warnings:,} warning{plural}." if warnings else "."
                )
            console.print(
                f"[green]{escape(str(out_dir))} is already converted with the same options; "
                f"nothing to do (--overwrite to redo).[/green]{verdict}"
            )
            return
        why = "was never validated" if record is None else "failed its last validation"
        console.print(
            f"{escape(str(out_dir))} is already converted with the same options, but it {why}: "
            "validating it (--no-validate to skip)."
        )
    else:
        print_summary(summary)
    if settings.validate and not validate_output(out_dir, settings.workers):
        raise typer.Exit(1)


def print_summary(summary: ConversionSummary, examples: bool = True) -> None:
    """The per-split table, what --overwrite replaced, empty splits and skip examples."""
    if summary.removed:
        console.print(
            escape(
                f"--overwrite: removed the previous conversion from {summary.out_dir}: "
                f"{', '.join(summary.removed)}"
            )
        )
        if summary.kept:
            console.print(
                escape(f"  left alone (not written by a conversion): {_few(summary.kept)}")
            )
    if summary.resumed_shards:
        console.print(f"resumed: {summary.resumed_shards} finished shards were kept")
    table = Table(title=escape(f"phi3v convert -> {summary.out_dir}"))
    table.add_column("split")
    table.add_column("file")
    table.add_column("records", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("skip reasons")
    for name, split in summary.splits.items():
        reasons = ", ".join(f"{reason}: {count}" for reason, count in split.skipped.items())
        table.add_row(
            escape(name),
            escape(split.file),
            f"{split.records:,}",
            f"{sum(split.skipped.values()):,}",
            escape(reasons),
        )
    console.print(table)
    if not examples:
        return
    print_skip_examples(summary.skips, more_in_manifest=True)
    if summary.records:
        for name, split in summary.splits.items():
            if split.records:
                continue
            skipped = sum(split.skipped.values())
            why = (
                f"all {skipped:,} of its inputs were skipped ({_reasons(split.skipped)})"
                if skipped
                else "the input lists nothing for it"
            )
            console.print(
                escape(f"warning: split {name} has no records ({split.file} is empty): {why}"),
                style="yellow",
            )


def print_skip_examples(skips: list[Skip], more_in_manifest: bool, per_reason: int = 3) -> None:
    """The first few skips of each reason, most frequent reason first."""
    by_reason: dict[str, list[Skip]] = {}
    for skip in skips:
        by_reason.setdefault(skip.reason, []).append(skip)
    shown = 0
    for reason, group in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        console.print(escape(f"skipped: {reason} x{len(group):,}"))
        for skip in group[:per_reason]:
            console.print(escape(f"  [{skip.split}] {skip.item}: {skip.detail}"))
            shown += 1
    if len(skips) > shown:
        where = " (every one is in manifest.json)" if more_in_manifest else ""
        console.print(f"  ... {len(skips) - shown:,} more skips{where}")


def _reasons(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{reason}: {count:,}" for reason, count in ordered)


def _few(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def validate_output(out_dir: Path, workers: int) -> bool:
    """Validate the converted folder and print the report as `phi3v validate` does.

    True when it passed (no errors; warnings are shown). The verdict is recorded beside
    the manifest, so that a rerun of the same command on the unchanged output need not
    validate it again. (Tests count the calls by patching `phi3v_cli.convert.validate_output`.)
    """
    from phi3v_cli.validate import print_report
    from phi3v_data.validate import ValidateOptions, validate_paths

    console.print(escape(f"phi3v validate {out_dir}"), style="bold")
    report = validate_paths([out_dir], ValidateOptions(workers=workers))
    print_report(report, console, 3, False)
    passed = report.passed(False)
    record_validation(out_dir, passed, report.errors, report.warnings)
    if not passed:
        console.print(
            escape(
                f"The conversion is complete, but the output has errors: `phi3v validate "
                f"{out_dir} --format json --output report.json` lists every problem."
            )
        )
    return passed
