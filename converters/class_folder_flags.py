"""The flags of the class-folder sources (`image-folder`, `video-folder`; ucf101's
`--classes`), one field factory each, and the checks of their values (`FlagError`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from converters.class_folder_scan import SAFE_NAME
from converters.prompts import line_breaks, template_fields
from phi3v_data.flags import FlagError, flag

LAYOUTS = ("auto", "classes", "splits")


# The shared command-line flags, one field factory each; the field names give the flags
# (--val-fraction...). Every class-folder source's options declare these fields.
def layout_flag() -> Any:
    return flag(
        "auto",
        choices=LAYOUTS,
        help="classes: SRC/<class>/<file>; splits: SRC/<split>/<class>/<file>; auto: splits "
        "when every folder of SRC is named like a split (train, val, validation, dev, test...).",
    )


def classes_flag() -> Any:
    """`--classes` (comma-separated or repeated) as a tuple of names (also ucf101's)."""
    return flag(
        (),
        repeat=True,
        parse=split_names,
        help="Only these classes (comma-separated or repeated); the prompt lists only them.",
    )


def val_fraction_flag() -> Any:
    return flag(
        0.0,
        min=0.0,
        max=0.95,
        help="Without split folders: move this fraction of the groups (see --group-regex) "
        "to a val split, chosen deterministically; a group never straddles splits.",
    )


def test_fraction_flag() -> Any:
    return flag(
        0.0,
        min=0.0,
        max=0.95,
        help="Without split folders: move this fraction of the groups to a test split.",
    )


def group_regex_flag() -> Any:
    """`--group-regex`; the options check it with `check_group_regex` (it needs a fraction)."""
    return flag(
        None,
        help="Regex whose first capture group (else the whole match) in a file name is the "
        "file's group: a group's files go to the same split. Default: UCF-101's "
        "'_g(\\d+)_' when names have it, else each file is its own group.",
        show_default=False,
    )


def split_seed_flag() -> Any:
    return flag(0, help="Seed of the group order that --val-fraction/--test-fraction cut.")


def source_flag() -> Any:
    """`--source`, checked; None (left out) means SRC's folder name (`default_source_name`)."""
    return flag(
        None,
        help="The records' source, which names the output files <source>_<split>.jsonl "
        "(default: SRC's folder name).",
        show_default=False,
        parse=checked_source_name,
    )


def prompt_flag(default: str) -> Any:
    """The `--prompt` field of a class-folder source whose default prompt is `default`."""
    return flag(
        default,
        help="The user question; {classes} becomes the sorted class names, "
        f"comma-separated. Default: {default!r}. Use \\n for a line break.",
        show_default=False,
        parse=checked_prompt,
    )


def split_names(values: Iterable[str] | None) -> tuple[str, ...]:
    """Comma-separated or repeated CLI values as one tuple, in order, without repeats."""
    names = [part.strip() for value in values or [] for part in value.split(",")]
    return tuple(dict.fromkeys(name for name in names if name))


def checked_source_name(value: str) -> str:
    """`--source` as given, or a `FlagError`: it names the output files."""
    if not SAFE_NAME.fullmatch(value):
        raise FlagError(
            "--source",
            f"{value!r}: use letters, digits, '.', '_' and '-' (it names the output "
            "files <source>_<split>.jsonl)",
        )
    return value


def default_source_name(src: Path, fallback: str) -> str:
    """SRC's folder name made safe for `<source>_<split>.jsonl` (`fallback` if nothing is left)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", src.resolve().name).lstrip("._-")
    return name or fallback


def checked_prompt(template: str) -> str:
    """The prompt template (`\\n` for a line break); only `{classes}` may be in it."""
    template = line_breaks(template)
    try:
        unknown = template_fields(template) - {"classes"}
    except ValueError as exc:
        raise FlagError("--prompt", f"not a valid template: {exc}") from exc
    if unknown:
        raise FlagError(
            "--prompt",
            f"unknown field(s) {', '.join(sorted(unknown))}: only {{classes}} is filled in "
            "(write {{ }} for a brace)",
        )
    return template


class NamedBySrc:
    """Base of a class-folder source's options: the name of its records' source.

    `source` None is `default_source` when the options are made in code, and SRC's folder
    name on the command line (`from_flags`); `--group-regex` is checked here too.
    """

    default_source: ClassVar[str]
    source: str | None
    group_regex: str | None
    val_fraction: float
    test_fraction: float

    def __post_init__(self) -> None:
        if self.source is None:
            object.__setattr__(self, "source", self.default_source)
        check_group_regex(self.group_regex, bool(self.val_fraction or self.test_fraction))

    @classmethod
    def from_flags(cls, src: Path, **values: Any) -> Any:
        """The options of a run on `src`: `--source` left out is SRC's folder name."""
        if values.get("source") is None:
            values["source"] = default_source_name(src, cls.default_source)
        return cls(**values)


def check_group_regex(value: str | None, fractions: bool) -> None:
    """`--group-regex` only with a fraction to cut, and a valid regex (else `FlagError`)."""
    if value is None:
        return
    if not fractions:
        raise FlagError(
            "--group-regex",
            "groups only matter when --val-fraction or --test-fraction splits the files",
        )
    try:
        re.compile(value)
    except re.error as exc:
        raise FlagError("--group-regex", f"not a valid regex: {exc}") from exc
