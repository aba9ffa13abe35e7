"""`phi3v convert nlvr2`: NLVR2, is a sentence true of a pair of photographs?

Sizes: train 86,373, dev 6,982, test1 6,967, test2 6,970. Metric: accuracy.

Accepted layouts of SRC (local files only):
- the `lil-lab/nlvr` release: JSON lines `data/{train,dev,test1,test2}.json` (in SRC,
  `SRC/data` or `SRC/nlvr2/data`) and the images in the usual places: `images/<split>/`
  (train usually in `images/train/<directory>/`) or `<split>/` beside `data/`. The files
  of identifier `split-set-pair-sent` are `split-set-pair-img0.png` (left) and `-img1.png`
  (right), found by name anywhere under the split's image folder (the line's
  `directory` is preferred). Some `.png` files are JPEG: they are written as `.jpg`;
- a Hugging Face copy (parquet or `save_to_disk`) with a left and a right image column
  (names containing `left`/`right`, or the first two image columns, or one list of two
  images), a `sentence` (or `caption`) column and a `label` ("True"/"False", bool, 0/1 or
  ClassLabel); splits `validation` -> `dev`, `test` -> `test1`.

Records: two images `[left, right]`, id `nlvr2-<identifier>` (`nlvr2-<split>-<row>` when
a copy has no identifier), answer `"Yes."`/`"No."` from the label; `meta` keeps the
identifier, `label` as the release writes it ("True"/"False"), the sentence, the original
image files, `directory`, `synset` and `query`. Unlabelled files are inference-only splits.

Prompt (reference recipe): `"The first image is the image on the left, the second image
is the image on the right. " + template.format(caption=sentence) + " Answer yes or no."`,
one of the 8 templates of the reference's source, HuggingFaceM4/the_cauldron (its build
script), in its order, drawn per record (seeded); `--prompt-index K` is the Cauldron's K-th.
"""

from __future__ import annotations

import os
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
    ImportedImage,
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
)
from converters.registry import register_source
from converters.rows import BadLabel, Row, parse_label, plan_rows, yes_no
from phi3v_data.jsonl import iter_jsonl
from phi3v_data.records import Record, Turn

SOURCE = "nlvr2"
SPLITS = ("train", "dev", "test1", "test2")
SPLIT_ALIASES = {"validation": "dev", "val": "dev", "test": "test1"}
PREFIX = "The first image is the image on the left, the second image is the image on the right. "
SUFFIX = " Answer yes or no."
CAPTION_TEMPLATES = (  # the Cauldron's list, in its order (index K = its K-th template)
    'Evaluate the accuracy of this statement regarding the images: "{caption}". Is it true?',
    'Given the left and right images, does the statement "{caption}" hold true?',
    'Assess this claim about the two images: "{caption}". Correct or not?',
    'For the images shown, is this caption "{caption}" true?',
    'Considering the images on both sides, is "{caption}" valid?',
    'Analyze the images presented: Is the assertion "{caption}" valid?',
    'For the images displayed, is the sentence "{caption}" factually correct?',
    'Examine the images to the left and right. Is the description "{caption}" accurate?',
)
TEMPLATES = tuple(PREFIX + template + SUFFIX for template in CAPTION_TEMPLATES)
META_FIELDS = ("directory", "synset", "query")


@dataclass(frozen=True)
class NLVR2Options:
    """The flags of `phi3v convert nlvr2` (`PromptChoice` holds the prompt flags)."""

    prompt: PromptChoice = field(default_factory=PromptChoice)
    link: bool = link_flag()
    deep_check: bool = deep_check_flag()

    def __post_init__(self) -> None:
        self.prompt.checked(TEMPLATES, {"caption"})


@dataclass(frozen=True)
class Pair:
    """One statement about two images, and where the images are."""

    identifier: str
    sentence: str
    label: bool | None
    raw_label: Any
    names: tuple[str, str]  # original file names (or HF cells' descriptions)
    files: tuple[str | None, str | None] = (None, None)  # original release: paths found
    rels: tuple[str, str] = ("", "")  # original release: paths under the split's image folder
    row: RowRef | None = None  # HF copy
    columns: tuple[str, ...] = ()  # HF copy: (left, right) or (list column,)
    search_dirs: tuple[str, ...] = ()  # HF copy: image folders; release: folders searched
    extra: tuple[tuple[str, Any], ...] = ()


class NLVR2Converter(Converter):
    name = SOURCE
    progress_unit = "pairs"

    def plan(self, src: Path) -> Plan:
        hf = find_hf_copy(src, SPLIT_ALIASES, SPLITS)
        if hf is not None:
            return plan_rows({split.name: _hf_rows(split, src) for split in hf.values()})
        data = _data_folder(src)
        return plan_rows(
            {
                split: _file_rows(
                    data / f"{split}.json",
                    split,
                    _image_index(src, data, split),
                    tuple(str(root) for root in _image_roots(src, data, split)),
                )
                for split in SPLITS
                if (data / f"{split}.json").is_file()
            }
        )

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        pair: Pair = item.payload.payload
        options: NLVR2Options = self.options
        images: list[ImportedImage] = []
        for side, index in (("left", 0), ("right", 1)):
            imported = self._import(item.split, pair, index, output)
            if isinstance(imported, ImageFailure):
                detail = f"{side} image: {imported.detail}"
                return ItemResult(skips=[Skip(item.split, item.key, imported.reason, detail)])
            images.append(imported)
        template = choose_template(TEMPLATES, pair.identifier, options.prompt)
        turn = Turn(
            user=template.format(caption=pair.sentence),
            assistant=yes_no(pair.label),
            images=tuple(image.rel for image in images),
        )
        meta: dict[str, Any] = {"identifier": pair.identifier, "sentence": pair.sentence}
        if pair.label is not None:
            meta["label"] = pair.raw_label if isinstance(pair.raw_label, str) else str(pair.label)
        meta.update(left_image=pair.names[0], right_image=pair.names[1], **dict(pair.extra))
        record_id = (
            f"{SOURCE}-{pair.identifier}"
            if pair.identifier.startswith(f"{item.split}-")
            else f"{SOURCE}-{item.split}-{pair.identifier}"
        )
        result = ItemResult(records=[Record(record_id, SOURCE, (turn,), meta)])
        result.counters["images"] += 2
        return result

    def _import(
        self, split: str, pair: Pair, index: int, output: OutputContext
    ) -> ImportedImage | ImageFailure:
        options: NLVR2Options = self.options
        if pair.row is None:
            path = pair.files[index]
            if path is None:
                folders = ", ".join(pair.search_dirs) or f"the {split} image folder"
                return ImageFailure(
                    "image_missing",
                    f"{pair.identifier}: {pair.names[index]} not found under {folders}"
                    " (searched recursively)",
                )
            stem = mirrored_stem(f"{SOURCE}/{split}", pair.rels[index])
            return import_image_file(output, Path(path), stem, options.link, options.deep_check)
        values = read_row(pair.row, pair.columns)
        if len(pair.columns) == 2:
            cell = values[pair.columns[index]]
        else:
            cells = values[pair.columns[0]] or []
            cell = cells[index] if len(cells) == 2 else None
        dirs = [Path(folder) for folder in pair.search_dirs]
        return import_hf_image(
            output, cell, SOURCE, pair.names[index], dirs, options.link, options.deep_check
        )


def _data_folder(src: Path) -> Path:
    for folder in (src, src / "data", src / "nlvr2" / "data"):
        if any((folder / f"{split}.json").is_file() for split in SPLITS):
            return folder
    raise ConversionError(
        f"{src}: no NLVR2 files found. Expected data/{{train,dev,test1,test2}}.json (the "
        "lil-lab/nlvr release) with the images, or a Hugging Face copy (*.parquet or save_to_disk)."
    )


def _image_roots(src: Path, data: Path, split: str) -> list[Path]:
    """The folders (searched recursively) where a split's images may be."""
    roots = []
    for base in dict.fromkeys((src, data.parent, data.parent.parent)):
        roots += [base / "images" / split, base / split]
    return list(dict.fromkeys(roots))


def _image_index(src: Path, data: Path, split: str) -> dict[str, list[tuple[str, str]]]:
    """File name -> [(path, path relative to the split's image folder)], sorted."""
    index: dict[str, list[tuple[str, str]]] = {}
    for root in _image_roots(src, data, split):
        if not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                index.setdefault(name, []).append((path, os.path.relpath(path, root)))
    return index


def _image_names(identifier: str) -> tuple[str, str] | None:
    parts = identifier.split("-")
    if len(parts) != 4 or not all(parts):
        return None
    stem = "-".join(parts[:3])
    return f"{stem}-img0.png", f"{stem}-img1.png"


def _pair_fields(raw: Any, sentence_key: str = "sentence") -> tuple[str, str] | str:
    """(identifier, sentence) of an annotation, or a message saying what is wrong."""
    if not isinstance(raw, dict):
        return f"expected a JSON object, got {type(raw).__name__}"
    identifier = raw.get("identifier")
    if not isinstance(identifier, str) or not identifier:
        return f"'identifier' must be a non-empty string, got {identifier!r}"
    sentence = raw.get(sentence_key)
    if not isinstance(sentence, str) or not sentence.strip():
        return f"{identifier}: '{sentence_key}' must be a non-empty string"
    return identifier, sentence


def _file_rows(
    path: Path,
    split: str,
    index: dict[str, list[tuple[str, str]]],
    searched: tuple[str, ...] = (),
) -> Iterator[Row | Skip]:
    for line in iter_jsonl(path):
        where = f"{path.name}:{line.lineno}"
        if line.blank:
            continue
        if line.error is not None:
            yield Skip(split, where, "bad_line", line.error[1])
            continue
        fields = _pair_fields(line.value)
        if isinstance(fields, str):
            yield Skip(split, where, "bad_annotation", fields)
            continue
        identifier, sentence = fields
        raw_label = line.value.get("label")
        try:
            label = parse_label(raw_label)
        except BadLabel as exc:
            yield Skip(split, where, "bad_label", f"{identifier}: {exc}")
            continue
        names = _image_names(identifier)
        if names is None:
            yield Skip(
                split,
                where,
                "bad_annotation",
                f"identifier {identifier!r} is not split-set-pair-sentence",
            )
            continue
        directory = line.value.get("directory")
        found = [_pick(index.get(name, []), directory) for name in names]
        extra = tuple(
            (key, line.value[key]) for key in META_FIELDS if line.value.get(key) is not None
        )
        pair = Pair(
            identifier,
            sentence,
            label,
            raw_label,
            names,
            files=(found[0][0] if found[0] else None, found[1][0] if found[1] else None),
            rels=(found[0][1] if found[0] else "", found[1][1] if found[1] else ""),
            search_dirs=searched,
            extra=extra,
        )
        yield Row(where, identifier, label, pair)


def _pick(candidates: list[tuple[str, str]], directory: Any) -> tuple[str, str] | None:
    """The candidate in the line's `directory` if there is one, else the first."""
    if directory is not None:
        for path, rel in candidates:
            if PurePosixPath(rel.replace(os.sep, "/")).parts[:-1] == (str(directory),):
                return path, rel
    return candidates[0] if candidates else None


def _hf_columns(split: HFSplit) -> tuple[str, ...]:
    singles = split.image_columns
    left = [name for name in singles if "left" in name.lower()]
    right = [name for name in singles if "right" in name.lower()]
    if len(left) == 1 and len(right) == 1:
        return left[0], right[0]
    if len(singles) >= 2:
        return singles[0], singles[1]
    if split.image_list_columns:
        return (split.image_list_columns[0],)
    raise ConversionError(
        f"{split.files[0]}: no left/right image columns (found {', '.join(split.columns)})"
    )


def _hf_rows(split: HFSplit, src: Path) -> Iterator[Row | Skip]:
    columns = _hf_columns(split)
    sentence_key = next(
        (k for k in ("sentence", "caption", "statement") if k in split.columns), "sentence"
    )
    label_key = next((k for k in ("label", "answer") if k in split.columns), "label")
    names = split.class_names(label_key)
    wanted = ["identifier", sentence_key, label_key, *META_FIELDS]
    for position, (ref, raw) in enumerate(iter_rows(split, wanted)):
        where = f"{Path(ref.file).name}: row {ref.row}"
        if raw.get("identifier") is None:
            raw["identifier"] = f"row{position}"
        fields = _pair_fields(raw, sentence_key)
        if isinstance(fields, str):
            yield Skip(split.name, where, "bad_annotation", fields)
            continue
        identifier, sentence = fields
        raw_label = raw.get(label_key)
        try:
            label = parse_label(raw_label, names)
        except BadLabel as exc:
            yield Skip(split.name, where, "bad_label", f"{identifier}: {exc}")
            continue
        side_names = (f"{where} (left)", f"{where} (right)")
        extra = tuple((key, raw[key]) for key in META_FIELDS if raw.get(key) is not None)
        pair = Pair(
            identifier,
            sentence,
            label,
            raw_label if isinstance(raw_label, str) else None,
            side_names,
            row=ref,
            columns=columns,
            search_dirs=(str(Path(ref.file).parent), str(src)),
            extra=extra,
        )
        yield Row(where, identifier, label, pair)


HELP = f"""NLVR2: is a statement true of a pair of images? (lil-lab release or Hugging Face copy).

SRC: the folder with data/{{train,dev,test1,test2}}.json and images/<split>/ (or <split>/),
or a Hugging Face copy (*.parquet files or a save_to_disk folder) with left/right images.

Template field: {{caption}} (the sentence). Built-in templates: the 8 of
HuggingFaceM4/the_cauldron, in its order (--prompt-index K is its K-th):

{numbered(TEMPLATES)}

Example: phi3v convert nlvr2 ~/data/nlvr2 -o data/nlvr2 --link
"""


register_source(SOURCE, help=HELP, options=NLVR2Options, converter=NLVR2Converter)
