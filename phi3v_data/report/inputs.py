"""Which files the report reads, the split of each, and the validator's findings for them.

Split names come from `phi3v_data.dataset_dir`, the one reader of the converted folder's
layout (its manifest, else the file name); this module never guesses them itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from phi3v_data import dataset_dir
from phi3v_data.report.options import ReportOptions, UnknownSplitError
from phi3v_data.validate import InputFile, ValidationReport, discover_inputs, validate_paths


@dataclass(frozen=True)
class SplitFile:
    """One JSONL input with the split it belongs to."""

    input: InputFile
    split: str

    @property
    def name(self) -> str:
        return str(self.input.path)


def split_files(inputs: Iterable[InputFile]) -> list[SplitFile]:
    """Name each input's split (`dataset_dir.split_of_file`: its folder's manifest, else its
    file name, e.g. `any_name_dev_seen.jsonl` -> `dev_seen`)."""
    return [SplitFile(item, dataset_dir.split_of_file(item.path)) for item in inputs]


def run_validation(
    paths: Sequence[str | Path], options: ReportOptions
) -> tuple[list[SplitFile], ValidationReport]:
    """The validator's findings for the inputs (only the chosen splits' files, if any).

    Raises:
        UnknownSplitError: `options.splits` names a split no input file belongs to.
    """
    files = split_files(discover_inputs(paths, options.image_root))
    if not options.splits:
        return files, validate_paths(paths, options.validate_options())
    chosen = [f for f in files if f.split in options.splits]
    if not chosen:
        known = ", ".join(sorted({f.split for f in files})) or "none"
        raise UnknownSplitError(
            f"no input file belongs to split(s) {', '.join(options.splits)}; splits: {known}"
        )
    # Files passed one by one lose their manifest's inference-only flag: allow empty
    # answers when every chosen file is inference-only, and otherwise drop the findings
    # the validator would not have made for the inference-only files among them.
    inference_only = {f.name for f in chosen if f.input.inference_only}
    allow_empty = len(inference_only) == len(chosen)
    report = validate_paths([f.input.path for f in chosen], options.validate_options(allow_empty))
    if inference_only and not allow_empty:
        report.problems[:] = [
            p
            for p in report.problems
            if not (p.code == "assistant_empty" and p.file in inference_only)
        ]
    return chosen, report
