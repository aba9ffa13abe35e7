"""`phi3v convert table`: which columns a row is read from (`TableOptions`, its flags) and
how a prompt template is filled from them.

`TableOptions` is checked on creation (`FlagError` naming the flag to fix);
`check_columns` tells which named columns a table lacks.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.images import deep_check_flag, link_flag
from converters.prompts import line_breaks
from phi3v_data.flags import FlagError, flag

DEFAULT_SOURCE = "table"
RESERVED_META = ("table_row", "answers", "original_images")
# A split or source name: it names the output files.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _column_flag(*names: str, help: str, metavar: str = "COL", **spec: Any) -> Any:
    """The many column flags: a metavar, no default shown."""
    return flag(None, *names, help=help, metavar=metavar, show_default=False, **spec)


def _resolved(path: Path) -> str:
    return str(Path(path).resolve())


@dataclass(frozen=True)
class TableOptions:
    """What to read from each row: the flags of `phi3v convert table`. Checked on creation
    (`FlagError`)."""

    image_columns: tuple[str, ...] = flag(
        (),
        "--image-column",
        repeat=True,
        metavar="COL",
        show_default=False,
        help="Column of images: a path, a list of paths, or image bytes. Repeat it for "
        "several columns; the record's images are theirs, in order. Required.",
    )
    answer_column: str | None = _column_flag(  # required: None only to say so clearly
        "--answer-column", help="Column of the answer (the training target)."
    )
    question_column: str | None = _column_flag(
        "--question-column", help="Column of the user's question (or give --prompt)."
    )
    prompt: str | None = _column_flag(
        "--prompt",
        help='The user text, with {column} fields filled from the row: "{question}\\nAnswer '
        'briefly." (\\n is a line break; {{ }} a brace). Instead of --question-column.',
        metavar="TEXT",
        parse=line_breaks,
    )
    answers_column: str | None = _column_flag(
        "--answers-column",
        help="Column of all gold answers (a list, or a JSON list as text), kept in meta.answers "
        "for ANLS/accuracy.",
    )
    id_column: str | None = _column_flag(
        "--id-column",
        help="Column of record ids (unique across splits). Default: <source>-<split>-<row index>.",
    )
    split_column: str | None = _column_flag(
        "--split-column", help="Column naming each row's split (train, val, ...)."
    )
    split: str | None = _column_flag(
        "--split",
        help="Put every row in this split. Default: the Hugging Face copy's splits, or the "
        "file's name when it names a split (test.csv), else train.",
        metavar="NAME",
    )
    image_dir: str | None = _column_flag(  # absolute
        "--image-dir",
        help="Resolve relative image paths here instead of in the table's folder.",
        metavar="DIR",
        parse=_resolved,
    )
    meta_columns: tuple[str, ...] = flag(
        (),
        "--meta-column",
        repeat=True,
        metavar="COL",
        show_default=False,
        help="Also keep this column's value in meta (repeatable).",
    )
    source: str = flag(
        DEFAULT_SOURCE,
        "--source",
        metavar="NAME",
        help="The records' source, the output files' prefix and images/<NAME>/.",
    )
    allow_absolute_paths: bool = flag(
        False,
        "--allow-absolute-paths",
        help="Accept absolute image paths and relative ones leading outside their folder.",
    )
    link: bool = link_flag()
    deep_check: bool = deep_check_flag()
    # The input files and folders (absolute), in order; empty means the `src` given to the
    # framework. On the command line they are the arguments, the first one being SRC.
    inputs: tuple[str, ...] = flag(
        (),
        repeat=True,
        positional=True,
        metavar="FILE_OR_DIR",
        show_default=False,
        help="Table files (.csv .tsv .jsonl .json .parquet) or Hugging Face folders.",
        parse=lambda paths: tuple(_resolved(path) for path in paths),
    )

    def __post_init__(self) -> None:
        for name in ("image_columns", "meta_columns", "inputs"):  # lists given in code
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.image_columns:
            raise FlagError("--image-column", "give at least one image column")
        if self.answer_column is None:
            raise FlagError("--answer-column", "give the answer column")
        if (self.question_column is None) == (self.prompt is None):
            raise FlagError(
                "--question-column",
                "give either --question-column COL or --prompt TEXT (with {column} fields)",
            )
        if self.prompt is not None:
            fields = prompt_fields(self.prompt)
            if not self.prompt.strip():
                raise FlagError("--prompt", "the prompt is empty")
            images = sorted(fields & set(self.image_columns))
            if images:
                raise FlagError(
                    "--prompt",
                    f"field {{{images[0]}}} is an --image-column: the prompt takes text columns",
                )
        if self.split is not None and self.split_column is not None:
            raise FlagError("--split", "give --split or --split-column, not both")
        if self.split is not None and not NAME_RE.fullmatch(self.split):
            raise FlagError(
                "--split", f"split name {self.split!r}: use letters, digits, '_', '.', '-'"
            )
        if not NAME_RE.fullmatch(self.source):
            raise FlagError(
                "--source",
                f"source name {self.source!r}: use letters, digits, '_', '.', '-' "
                "(it names the output files and images/<source>/)",
            )
        for column in self.meta_columns:
            if column in RESERVED_META:
                hint = " (use --answers-column for gold answers)" if column == "answers" else ""
                raise FlagError(
                    "--meta-column",
                    f"meta key {column!r} is written by the converter itself{hint}",
                )
            if column in self.image_columns:
                raise FlagError(
                    "--meta-column",
                    f"{column!r} is an --image-column: its original values are kept in "
                    "meta.original_images",
                )
        duplicated = [c for c in self.image_columns if self.image_columns.count(c) > 1]
        if duplicated:
            raise FlagError("--image-column", f"--image-column {duplicated[0]!r} is given twice")

    def wanted_columns(self) -> dict[str, str]:
        """Every column a row needs -> the option that names it (image columns first)."""
        wanted: dict[str, str] = {}
        for column in self.image_columns:
            wanted.setdefault(column, "--image-column")
        if self.question_column is not None:
            wanted.setdefault(self.question_column, "--question-column")
        for column in sorted(prompt_fields(self.prompt or "")):
            wanted.setdefault(column, "--prompt")
        wanted.setdefault(self.answer_column, "--answer-column")
        for column, option in (
            (self.answers_column, "--answers-column"),
            (self.id_column, "--id-column"),
            (self.split_column, "--split-column"),
        ):
            if column is not None:
                wanted.setdefault(column, option)
        for column in self.meta_columns:
            wanted.setdefault(column, "--meta-column")
        return wanted

    def text_columns(self) -> list[str]:
        """The columns read at plan time (all but the image columns)."""
        return [c for c in self.wanted_columns() if c not in self.image_columns]


def prompt_fields(template: str) -> set[str]:
    """The `{column}` fields of a prompt; raises `FlagError` for a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise FlagError(
            "--prompt", f"not a valid template: {exc} (write {{{{ }}}} for a brace)"
        ) from exc
    fields = {name for _, name, _, _ in parsed if name is not None}
    if "" in fields:
        raise FlagError("--prompt", "empty field {}: name a column, as in {question}")
    return fields


def render_prompt(template: str, values: dict[str, Any]) -> str:
    """The template with each `{column}` replaced by the row's value (null gives "").

    Field names are looked up literally, so a column may be called `a.b` or `x[0]`.
    """
    parts: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        value = values.get(name)
        if value is None:
            value = ""
        if conversion == "r":
            value = repr(value)
        elif conversion == "a":
            value = ascii(value)
        elif conversion == "s":
            value = str(value)
        parts.append(format(value, spec or ""))
    return "".join(parts)
