"""`phi3v convert hateful-memes`: the Hateful Memes challenge (is this meme hateful?).

Sizes: train 8,500, dev_seen 500, dev_unseen 540, test_seen 1,000, test_unseen 2,000
(phase 1: train, dev, test). Metrics: AUROC and accuracy.

Accepted layouts of SRC (local files only):
- the original folder: `img/NNNNN.png` and any of `train.jsonl`, `dev_seen.jsonl`,
  `dev_unseen.jsonl`, `test_seen.jsonl`, `test_unseen.jsonl`, `dev.jsonl`, `test.jsonl`
  (directly in SRC or in `SRC/data/`); each file is a split of that name. Images are
  resolved from each line's `img`, never from its `id`;
- a Hugging Face copy (parquet or `save_to_disk`) with columns `id`, an image column
  (`Image`, or a string path), `label` (0/1, possibly a ClassLabel; -1 = none) and `text`;
  split `validation` is written as `dev`.

Records: id `hateful_memes-<split>-<id>` (the same meme may sit in several files),
`meta` = `{id, img, label, text}`; answer `"Yes."` (label 1, hateful) or `"No."`.
A file without any label (some test files) gives an inference-only split with empty answers.

Prompt (reference recipe): one of the 11 questions of the reference's source,
HuggingFaceM4/the_cauldron (its build script), in its order, + `"\\nAnswer yes or no."`,
drawn per record (seeded); `--prompt-index K` is the Cauldron's K-th question.
`--include-text` puts the meme's overlaid text before the question (not in the reference).
Images: `images/hateful_memes/img/<name>.<real ext>` from files; content-addressed
`images/hateful_memes/<sha[:2]>/<sha>.<ext>` from embedded bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from converters.converter import (
    ConversionError,
    Converter,
    ItemResult,
    OutputContext,
    Plan,
    Skip,
    WorkItem,
)
from converters.hf import HFSplit, RowRef, find_hf_copy, iter_rows, read_row
from converters.images import (
    ImageFailure,
    deep_check_flag,
    import_hf_image,
    import_image_file,
    link_flag,
    mirrored_stem,
)
from converters.prompts import (
    PromptChoice,
    choose_template,
    numbered,
    template_fields,
)
from converters.registry import register_source
from converters.rows import BadLabel, Row, parse_label, plan_rows, yes_no
from phi3v_data.flags import flag
from phi3v_data.jsonl import iter_jsonl
from phi3v_data.records import Record, Turn

SOURCE = "hateful_memes"
SPLIT_FILES = ("train", "dev_seen", "dev_unseen", "test_seen", "test_unseen", "dev", "test")
SPLIT_ALIASES = {"validation": "dev", "val": "dev"}
ANSWER_SUFFIX = "\nAnswer yes or no."
QUESTIONS = (  # the Cauldron's list, in its order (index K = its K-th question)
    "Is the sentiment of this meme offensive?",
    "Does this meme promote hate speech?",
    "Can this meme be considered disrespectful?",
    "Does this meme carry a negative message?",
    "Is this meme spreading toxicity?",
    "Can this meme be harmful to a community?",
    "Is the humor in this meme in bad taste?",
    "Is the message of this meme aggressive?",
    "Does this meme support discrimination?",
    "Is the language used in this meme hateful?",
    "Can this meme be interpreted as derogatory?",
)
TEMPLATES = tuple(question + ANSWER_SUFFIX for question in QUESTIONS)
TEXT_LINE = 'Text on the meme: "{text}"\n'


@dataclass(frozen=True)
class MemesOptions:
    """The flags of `phi3v convert hateful-memes` (`PromptChoice` holds the prompt flags)."""

    include_text: bool = flag(
        False,
        "--include-text",
        help='Add the meme\'s overlaid text before the question: Text on the meme: "...". '
        "Not in the reference recipe.",
    )
    prompt: PromptChoice = field(default_factory=PromptChoice)
    link: bool = link_flag()
    deep_check: bool = deep_check_flag()

    def __post_init__(self) -> None:
        self.prompt.checked(TEMPLATES, {"text"})


@dataclass(frozen=True)
class Meme:
    id: Any
    img: str | None
    text: str
    label: bool | None
    path: str | None = None  # original folder: the image file
    row: RowRef | None = None  # HF copy: the row holding the image cell
    column: str = ""
    search_dirs: tuple[str, ...] = ()


class HatefulMemesConverter(Converter):
    name = SOURCE
    progress_unit = "memes"

    def plan(self, src: Path) -> Plan:
        hf = find_hf_copy(src, SPLIT_ALIASES, SPLIT_FILES)
        if hf is not None:
            return plan_rows({split.name: _hf_rows(split, src) for split in hf.values()})
        folder = _annotation_folder(src)
        return plan_rows(
            {
                name: _file_rows(folder / f"{name}.jsonl", name, folder)
                for name in SPLIT_FILES
                if (folder / f"{name}.jsonl").is_file()
            }
        )

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        meme: Meme = item.payload.payload
        options: MemesOptions = self.options
        if meme.path is not None:
            assert meme.img is not None
            stem = mirrored_stem(SOURCE, meme.img)
            imported = import_image_file(
                output, Path(meme.path), stem, options.link, options.deep_check
            )
        else:
            assert meme.row is not None
            cell = read_row(meme.row, (meme.column,))[meme.column]
            if isinstance(cell, str):
                cell = {"bytes": None, "path": cell}
            dirs = [Path(folder) for folder in meme.search_dirs]
            imported = import_hf_image(
                output, cell, SOURCE, item.key, dirs, options.link, options.deep_check
            )
        if isinstance(imported, ImageFailure):
            return ItemResult(skips=[Skip(item.split, item.key, imported.reason, imported.detail)])
        template = choose_template(TEMPLATES, f"{item.split}/{meme.id}", options.prompt)
        user = template.format(text=meme.text)
        if options.include_text and "text" not in template_fields(template):
            user = TEXT_LINE.format(text=meme.text) + user
        turn = Turn(user=user, assistant=yes_no(meme.label), images=(imported.rel,))
        meta: dict[str, Any] = {"id": meme.id, "img": meme.img, "text": meme.text}
        if meme.label is not None:
            meta["label"] = int(meme.label)
        record = Record(f"{SOURCE}-{item.split}-{meme.id}", SOURCE, (turn,), meta)
        result = ItemResult(records=[record])
        result.counters["images"] += 1
        return result


def _annotation_folder(src: Path) -> Path:
    for folder in (src, src / "data", src / "hateful_memes"):
        if any((folder / f"{name}.jsonl").is_file() for name in SPLIT_FILES):
            return folder
    raise ConversionError(
        f"{src}: no Hateful Memes files found. Expected img/ with train.jsonl, dev_seen.jsonl, "
        "... (or dev.jsonl/test.jsonl), or a Hugging Face copy (*.parquet or save_to_disk)."
    )


def _meme(raw: Any, names: list[str] | None) -> tuple[Any, str, bool | None] | str:
    """(id, text, label) of an annotation, or a message saying what is wrong with it."""
    if not isinstance(raw, dict):
        return f"expected a JSON object, got {type(raw).__name__}"
    meme_id = raw.get("id")
    if isinstance(meme_id, bool) or not isinstance(meme_id, int | str) or meme_id == "":
        return f"'id' must be an integer or a string, got {meme_id!r}"
    text = raw.get("text")
    if text is None:
        text = ""
    if not isinstance(text, str):
        return f"meme {meme_id}: 'text' must be a string, got {text!r}"
    try:
        label = parse_label(raw.get("label"), names)
    except BadLabel as exc:
        return f"meme {meme_id}: {exc}"
    return meme_id, text, label


def _file_rows(path: Path, split: str, folder: Path) -> Iterator[Row | Skip]:
    for line in iter_jsonl(path):
        where = f"{path.name}:{line.lineno}"
        if line.blank:
            continue
        if line.error is not None:
            yield Skip(split, where, "bad_line", line.error[1])
            continue
        parsed = _meme(line.value, None)
        if isinstance(parsed, str):
            reason = "bad_label" if "label" in parsed else "bad_annotation"
            yield Skip(split, where, reason, parsed)
            continue
        meme_id, text, label = parsed
        img = line.value.get("img")
        rel = PurePosixPath(str(img).replace("\\", "/")) if isinstance(img, str) else None
        if rel is None or not img or rel.is_absolute() or ".." in rel.parts:
            yield Skip(split, where, "bad_annotation", f"meme {meme_id}: bad 'img' {img!r}")
            continue
        meme = Meme(meme_id, str(rel), text, label, path=str(folder / rel))
        yield Row(where, str(meme_id), label, meme)


def _hf_rows(split: HFSplit, src: Path) -> Iterator[Row | Skip]:
    column = next(iter(split.image_columns), None)
    if column is None:
        column = next((name for name in ("img", "image") if name in split.columns), None)
    if column is None:
        raise ConversionError(f"{split.files[0]}: no image column: is this a Hateful Memes copy?")
    names = split.class_names("label")
    path_column = column not in split.image_columns
    wanted = ["id", "label", "text", *([column] if path_column else [])]
    for ref, raw in iter_rows(split, wanted):
        where = f"{Path(ref.file).name}: row {ref.row}"
        parsed = _meme(raw, names)
        if isinstance(parsed, str):
            reason = "bad_label" if "label" in parsed else "bad_annotation"
            yield Skip(split.name, where, reason, parsed)
            continue
        meme_id, text, label = parsed
        img = raw.get(column) if path_column else None
        meme = Meme(
            meme_id,
            img,
            text,
            label,
            row=ref,
            column=column,
            search_dirs=(str(Path(ref.file).parent), str(src)),
        )
        yield Row(where, str(meme_id), label, meme)


HELP = f"""Hateful Memes: is this meme hateful? (original folder or Hugging Face copy).

SRC: the folder with img/ and the *.jsonl split files, or a Hugging Face copy
(*.parquet files or a save_to_disk folder). One output file per split file.

Template field: {{text}} (the meme's overlaid text). Built-in templates: the 11
questions of HuggingFaceM4/the_cauldron, in its order (--prompt-index K is its K-th):

{numbered(TEMPLATES)}

Example: phi3v convert hateful-memes ~/data/hateful_memes -o data/memes --include-text
"""


register_source("hateful-memes", help=HELP, options=MemesOptions, converter=HatefulMemesConverter)
