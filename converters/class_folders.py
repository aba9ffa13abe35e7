"""Datasets stored one folder per class: `SRC/<class>/<file>` or `SRC/<split>/<class>/<file>`.

Shared by `phi3v convert video-folder` and `image-folder` (and ucf101's `--classes`).
Planning only lists folders; no file is opened:

- Layout (`--layout auto|classes|splits`): `auto` reads SRC's visible folders as splits
  when every one is named like a split (train, training, val, valid, validation, dev,
  test, testing; any case) and as classes when none is; a mix is an error naming both.
  Split folders are written under their usual name (training -> train, valid and
  validation -> val, testing -> test); other names (`--layout splits`) are kept.
- A class's files sit directly in its folder and are recognised by extension. Hidden
  entries (dotfiles, `__MACOSX`, `Thumbs.db`, `desktop.ini`) are ignored; anything else
  that is not used is a named skip: a file with another extension (`not_a_video`,
  `not_an_image`), a folder inside a class folder (`nested_folder`), a media file
  outside any class folder (`not_in_class_folder`).
- Without split folders everything is train, unless `--val-fraction`/`--test-fraction`
  move whole groups of files (`assign_splits`). A group is what `--group-regex` finds in
  a file name (its first capture group, else the whole match; digits compared as
  numbers), by default UCF-101's `_g(\\d+)_` when any name has it; a file whose name does
  not match is a group of its own. Groups are ordered by sha256(seed, group) and the
  first round(F x groups) go to val, the next to test: deterministic, and the same for
  any worker count. When no group spans two classes (always true when files are their
  own groups) this is done per class, so every class gets its share and keeps at least
  one train group; otherwise across all classes (UCF-101's groups are numbered across
  classes, as its official splits treat them).
- Output names: each file gets a stem unique within its class folder (its stem, or its
  whole name when two stems collide, e.g. `a.mp4` and `a.mkv`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from converters.converter import ConversionError, Skip
from converters.prompts import line_breaks, template_fields
from phi3v_data.flags import FlagError, flag

HIDDEN_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "dev",
    "test": "test",
    "testing": "test",
}
_SPLIT_RANK = {"train": 0, "val": 1, "dev": 2, "test": 3}
UCF_GROUP_REGEX = r"_g(\d+)_"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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


@dataclass(frozen=True, slots=True)
class FolderSpec:
    """What to list: the media kind and extensions, and the user's layout/split options."""

    kind: str  # "video" or "image": used in messages and the not-a-<kind> skip reason
    extensions: frozenset[str]
    layout: str = "auto"
    classes: tuple[str, ...] = ()
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    group_regex: str | None = None
    split_seed: int = 0

    @classmethod
    def of(cls, options: Any, kind: str, extensions: frozenset[str]) -> FolderSpec:
        """The spec from a source's options (fields of the same names)."""
        return cls(
            kind=kind,
            extensions=extensions,
            layout=options.layout,
            classes=options.classes,
            val_fraction=options.val_fraction,
            test_fraction=options.test_fraction,
            group_regex=options.group_regex,
            split_seed=options.split_seed,
        )

    @property
    def not_media(self) -> str:
        return "not_an_image" if self.kind == "image" else f"not_a_{self.kind}"


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One file to convert. `key` (its path under SRC) names it in skips and meta."""

    path: str
    key: str
    label: str
    stem: str  # output name stem, unique within the class folder
    group: str | None = None


@dataclass(slots=True)
class Listing:
    """The files per split in plan order, the classes, and the skips found while listing."""

    layout: str
    classes: list[str]
    splits: dict[str, list[MediaFile]]
    skips: list[Skip] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Problem:
    key: str
    reason: str
    detail: str
    label: str | None  # the class folder it was found in, if any


def hidden(name: str) -> bool:
    return name.startswith(".") or name in HIDDEN_NAMES


def split_names(values: Iterable[str] | None) -> tuple[str, ...]:
    """Comma-separated or repeated CLI values as one tuple, in order, without repeats."""
    names = [part.strip() for value in values or [] for part in value.split(",")]
    return tuple(dict.fromkeys(name for name in names if name))


def select_classes(available: list[str], wanted: tuple[str, ...], where: str) -> set[str]:
    """`wanted` (all when empty); an unknown name is an error listing the available ones."""
    if not wanted:
        return set(available)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ConversionError(
            f"--classes: {', '.join(unknown)} not found in {where}; available: "
            f"{', '.join(available)}"
        )
    return set(wanted)


def checked_source_name(value: str) -> str:
    """`--source` as given, or a `FlagError`: it names the output files."""
    if not _SAFE_NAME.fullmatch(value):
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


def list_class_folders(src: Path, spec: FolderSpec) -> Listing:
    """Every usable file of SRC per split, in plan order, and the named skips.

    Raises:
        ConversionError: SRC is not a folder of class (or split) folders, holds no file of
            the kind, or the options do not fit it.
    """
    if not src.is_dir():
        raise ConversionError(
            f"{src} is not a folder: give the folder that holds <class>/ (or "
            "<split>/<class>/) folders"
        )
    layout = detect_layout(src, spec.layout)
    found: dict[str, dict[str, list[MediaFile]]] = {}
    problems: dict[str, list[_Problem]] = {}
    if layout == "splits":
        if spec.val_fraction or spec.test_fraction:
            raise ConversionError(
                f"{src} has its own split folders: drop --val-fraction and --test-fraction"
            )
        for split, folder in _split_folders(src, forced=spec.layout == "splits"):
            found[split], problems[split] = _scan_root(folder, f"{folder.name}/", spec)
    else:
        found["train"], problems["train"] = _scan_root(src, "", spec)
    available = sorted({label for by_class in found.values() for label in by_class})
    if not available:
        raise ConversionError(_nothing_found(src, spec, layout, problems))
    selected = select_classes(available, spec.classes, str(src))
    kept = {
        split: [file for label in sorted(by_class) if label in selected for file in by_class[label]]
        for split, by_class in found.items()
    }
    skips = [
        Skip(split, problem.key, problem.reason, problem.detail)
        for split, listed in problems.items()
        for problem in listed
        if problem.label is None or problem.label in selected
    ]
    splits = kept if layout == "splits" else assign_splits(kept["train"], spec)
    return Listing(layout=layout, classes=sorted(selected), splits=splits, skips=skips)


def detect_layout(src: Path, layout: str) -> str:
    if layout != "auto":
        return layout
    folders = [entry.name for entry in _entries(src) if entry.is_dir()]
    split_like = [name for name in folders if name.lower() in SPLIT_ALIASES]
    if split_like and len(split_like) < len(folders):
        others = [name for name in folders if name not in split_like]
        raise ConversionError(
            f"{src} mixes split folders ({', '.join(split_like)}) with other folders "
            f"({', '.join(others[:5])}{' ...' if len(others) > 5 else ''}): pass --layout "
            "splits (every folder is a split) or --layout classes (every folder is a class)"
        )
    return "splits" if split_like else "classes"


def _split_folders(src: Path, forced: bool) -> list[tuple[str, Path]]:
    named: dict[str, Path] = {}
    for entry in _entries(src):
        if not entry.is_dir():
            continue
        split = SPLIT_ALIASES.get(entry.name.lower(), entry.name if forced else "")
        if not _SAFE_NAME.fullmatch(split):
            raise ConversionError(
                f"{entry}: a split folder name must be letters, digits, '.', '_' and '-' "
                "(it names the output file <source>_<split>.jsonl); rename it"
            )
        if split in named:
            raise ConversionError(
                f"{named[split]} and {entry} are both the {split!r} split: merge or rename one"
            )
        named[split] = entry
    return sorted(named.items(), key=lambda item: (_SPLIT_RANK.get(item[0], 2), item[0]))


def _entries(folder: Path) -> list[Path]:
    """The visible entries of `folder`, sorted by name."""
    try:
        return sorted((p for p in folder.iterdir() if not hidden(p.name)), key=lambda p: p.name)
    except OSError as exc:
        raise ConversionError(f"{folder}: cannot list it ({exc.strerror or exc})") from exc


def _scan_root(
    root: Path, prefix: str, spec: FolderSpec
) -> tuple[dict[str, list[MediaFile]], list[_Problem]]:
    """The files of each class folder under `root`, and what was found that is not used."""
    by_class: dict[str, list[MediaFile]] = {}
    problems: list[_Problem] = []
    for entry in _entries(root):
        key = prefix + entry.name
        if entry.is_dir():
            files = _scan_class(entry, key + "/", spec, problems)
            if files:
                by_class[entry.name] = files
        elif entry.suffix.lower() in spec.extensions:
            problems.append(
                _Problem(
                    key,
                    "not_in_class_folder",
                    f"a {spec.kind} outside any class folder is not read: move it into "
                    f"{prefix}<class>/",
                    None,
                )
            )
    return by_class, problems


def _scan_class(
    folder: Path, prefix: str, spec: FolderSpec, problems: list[_Problem]
) -> list[MediaFile]:
    label = folder.name
    try:
        entries = _entries(folder)
    except ConversionError as exc:
        problems.append(_Problem(prefix, "unreadable", str(exc), label))
        return []
    media: list[Path] = []
    for entry in entries:
        key = prefix + entry.name
        if entry.is_dir():
            problems.append(
                _Problem(
                    key + "/",
                    "nested_folder",
                    f"folders inside a class folder are not read: put its files directly in "
                    f"{prefix}",
                    label,
                )
            )
        elif entry.suffix.lower() in spec.extensions:
            media.append(entry)
        else:
            what = f"extension {entry.suffix!r}" if entry.suffix else "no extension"
            problems.append(
                _Problem(
                    key,
                    spec.not_media,
                    f"{what} is not among the {spec.kind} extensions, so the file is not read",
                    label,
                )
            )
    stems = unique_stems([path.name for path in media])
    return [MediaFile(str(path), prefix + path.name, label, stems[path.name]) for path in media]


def unique_stems(names: Iterable[str]) -> dict[str, str]:
    """An output stem per file name, unique even on a case-insensitive filesystem.

    The stem (`a` for `a.mp4`) unless it collides; then the whole name (`a.mp4`), and
    as a last resort a `~N` suffix.
    """
    names = list(names)
    chosen = {name: PurePosixPath(name).stem for name in names}
    while True:
        counts = Counter(stem.casefold() for stem in chosen.values())
        clashing = [n for n in names if counts[chosen[n].casefold()] > 1 and chosen[n] != n]
        if not clashing:
            break
        for name in clashing:
            chosen[name] = name
    counts = Counter(stem.casefold() for stem in chosen.values())
    seen: Counter[str] = Counter()
    for name in names:
        folded = chosen[name].casefold()
        if counts[folded] > 1:
            seen[folded] += 1
            chosen[name] = f"{chosen[name]}~{seen[folded]}"
    return chosen


def assign_splits(files: list[MediaFile], spec: FolderSpec) -> dict[str, list[MediaFile]]:
    """Files (in plan order) per split: train, plus val/test when their fractions are set."""
    val, test = spec.val_fraction, spec.test_fraction
    if not val and not test:
        return {"train": files}
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConversionError(
            f"--val-fraction {val} and --test-fraction {test} must be >= 0 and add up to "
            "less than 1"
        )
    pattern = _group_pattern(files, spec.group_regex)
    grouped = [replace(file, group=group_of(pattern, file)) for file in files]
    members: dict[str, set[str]] = {}
    for file in grouped:
        members.setdefault(_group_key(file), set()).add(file.label)
    per_class = all(len(labels) == 1 for labels in members.values())
    strata: dict[str, list[str]] = {}
    for key, labels in members.items():
        strata.setdefault(next(iter(labels)) if per_class else "", []).append(key)
    split_of: dict[str, str] = {}
    for keys in strata.values():
        ordered = sorted(keys, key=lambda key: (_draw(spec.split_seed, key), key))
        n_val, n_test = _share(val, len(ordered)), _share(test, len(ordered))
        if n_val + n_test >= len(ordered):
            if not per_class:
                raise ConversionError(
                    f"--val-fraction {val} and --test-fraction {test} of {len(ordered)} "
                    "groups leave no train group (the groups span classes, so they are cut "
                    "across all classes): lower the fractions or check --group-regex"
                )
            while n_val + n_test > len(ordered) - 1:  # keep one train group per class
                if n_test >= n_val and n_test > 0:
                    n_test -= 1
                else:
                    n_val -= 1
        for position, key in enumerate(ordered):
            split_of[key] = (
                "val" if position < n_val else "test" if position < n_val + n_test else "train"
            )
    splits: dict[str, list[MediaFile]] = {"train": []}
    if val:
        splits["val"] = []
    if test:
        splits["test"] = []
    for file in grouped:
        splits[split_of[_group_key(file)]].append(file)
    return splits


def _group_pattern(files: list[MediaFile], regex: str | None) -> re.Pattern[str] | None:
    names = [PurePosixPath(file.key).name for file in files]
    if regex is None:
        pattern = re.compile(UCF_GROUP_REGEX, re.IGNORECASE)
        return pattern if any(pattern.search(name) for name in names) else None
    pattern = re.compile(regex)
    if not any(pattern.search(name) for name in names):
        examples = ", ".join(names[:3])
        raise ConversionError(
            f"--group-regex {regex!r} matches no file name (e.g. {examples}): fix it, or drop "
            "it to make each file its own group"
        )
    return pattern


def group_of(pattern: re.Pattern[str] | None, file: MediaFile) -> str | None:
    """The group `pattern` finds in the file's name (digits as a number), or None."""
    if pattern is None:
        return None
    match = pattern.search(PurePosixPath(file.key).name)
    if match is None:
        return None
    value = match.group(1) if pattern.groups else match.group(0)
    if value is None:
        return None
    return str(int(value)) if value.isdigit() else value


def _group_key(file: MediaFile) -> str:
    return f"group:{file.group}" if file.group is not None else f"file:{file.key}"


def _draw(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def _share(fraction: float, count: int) -> int:
    """round(fraction x count), halves up."""
    return int(fraction * count + 0.5)


def _nothing_found(
    src: Path, spec: FolderSpec, layout: str, problems: dict[str, list[_Problem]]
) -> str:
    expected = "<split>/<class>/<file>" if layout == "splits" else "<class>/<file>"
    message = (
        f"{src}: no {spec.kind} file in any class folder (expected {src}/{expected}, "
        f"extensions {', '.join(sorted(spec.extensions))})"
    )
    others = [problem.key for listed in problems.values() for problem in listed]
    if others:
        message += f"; found {len(others)} other entries, e.g. {', '.join(others[:3])}"
    return message
