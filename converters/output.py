"""The output folder: what a conversion writes besides its JSONL files, and what it may delete.

- `OUT/.phi3v-work/`: the run's identity (`run.json`: source, input, options, shard size)
  and each finished shard; a rerun with the same identity resumes from them.
- `OUT/manifest.json`, written last: a finished conversion (its identity, per-split files
  with sha256, counters and every skip). A rerun of the same command on unchanged files
  does nothing (`finished_summary`).
- `OUT/.phi3v-validated.json`: the convert-time `phi3v validate` verdict for those files.
- `--overwrite` deletes only what a conversion wrote (`inventory`); other `*.jsonl` files or
  an `images/` folder that no conversion wrote stop the run, deleting nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from converters.converter import (
    IMAGES_DIR,
    ConversionError,
    ConversionSummary,
    Converter,
    Plan,
    Skip,
    SplitSummary,
)
from phi3v_data import __version__
from phi3v_data.jsonl import atomic_write_bytes, is_temporary_name

SHARD_SIZE = 16
WORK_DIR = ".phi3v-work"
MANIFEST = "manifest.json"
# The verdict of the convert-time `phi3v validate`, tied to the manifest's checksums, so a
# rerun of a finished, validated conversion need not check every image again.
VALIDATION_RECORD = ".phi3v-validated.json"


def run_identity(converter: Converter, src: Path) -> dict[str, Any]:
    return {
        "source": converter.name,
        "input": str(src.resolve()),
        "options": converter.options_dict(),
        "shard_size": SHARD_SIZE,
    }


def shard_file(work: Path, split: str, shard: int) -> Path:
    return work / split / f"{shard:06d}.json"


def remove_temporary_files(root: Path) -> int:
    removed = 0
    if not root.exists():
        return removed
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if is_temporary_name(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _own_manifest(out: Path) -> dict[str, Any] | None:
    """`OUT/manifest.json` when a conversion wrote it; None when there is none.

    Raises `ConversionError` for a manifest.json that is not one of ours: it is never
    deleted or replaced.
    """
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        problem = f"cannot read it: {exc}"
    else:
        splits = data.get("splits") if isinstance(data, dict) else None
        if (
            isinstance(data, dict)
            and isinstance(data.get("source"), str)
            and isinstance(splits, dict)
            and all(
                isinstance(s, dict)
                and isinstance(s.get("file"), str)
                and isinstance(s.get("sha256"), str)
                and "/" not in s["file"]
                for s in splits.values()
            )
        ):
            return data
        problem = "it lacks the source and per-split files and checksums `phi3v convert` writes"
    raise ConversionError(
        f"{path} is not a manifest written by `phi3v convert` ({problem}); it is left alone. "
        "Move it away or choose another --out-dir."
    )


def _run_file(out: Path) -> dict[str, Any]:
    """The identity stored by an unfinished run ({} when unreadable or absent)."""
    try:
        data = orjson.loads((out / WORK_DIR / "run.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(slots=True)
class _Inventory:
    """The entries of an output folder, sorted by who owns them."""

    ours: list[Path]  # written by a conversion: --overwrite deletes these
    foreign: list[str]  # not ours, but readers would take them as part of the output
    other: list[str]  # not ours, harmless: always left alone


def _inventory(
    out: Path, writes: set[str], manifest: dict[str, Any] | None, run: dict[str, Any]
) -> _Inventory:
    """What in `out` a conversion wrote, and what it did not.

    Ours: the manifest, the work folder, the validation record, the JSONL files the
    manifest lists, `<source>_*.jsonl` of the source named by the manifest or the work
    folder, the files this run writes (`writes`), and -- when a manifest or work folder
    proves that a conversion used the folder -- `images/` and leftover temporary files.
    """
    inventory = _Inventory([], [], [])
    if not out.is_dir():
        return inventory
    marked = manifest is not None or (out / WORK_DIR).is_dir()
    listed = set(writes)
    prefixes: set[str] = set()
    if manifest is not None:
        listed.update(split["file"] for split in manifest["splits"].values())
        prefixes.add(f"{manifest['source']}_")
    if isinstance(run.get("source"), str):
        prefixes.add(f"{run['source']}_")
    for entry in sorted(out.iterdir(), key=lambda path: path.name):
        name = entry.name
        if name in (MANIFEST, WORK_DIR, VALIDATION_RECORD):
            inventory.ours.append(entry)
        elif name == IMAGES_DIR and entry.is_dir() and not entry.is_symlink():
            if marked or not any(entry.iterdir()):
                inventory.ours.append(entry)
            else:
                inventory.foreign.append(f"{name}/")
        elif name.endswith(".jsonl") and not is_temporary_name(name):
            owned = name in listed or any(name.startswith(prefix) for prefix in prefixes)
            if owned and entry.is_file():
                inventory.ours.append(entry)
            else:
                inventory.foreign.append(name)
        elif marked and is_temporary_name(name) and entry.is_file():
            inventory.ours.append(entry)
        else:
            inventory.other.append(name + ("/" if entry.is_dir() else ""))
    return inventory


def _foreign_error(out: Path, foreign: list[str]) -> ConversionError:
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    return ConversionError(
        f"{out} holds files that `phi3v convert` did not write: {shown}. Every reader of a "
        "converted folder takes all its *.jsonl files and images/ as the image root, so they "
        "would mix with the conversion; they are never deleted (not even by --overwrite). "
        "Move them away or choose another --out-dir."
    )


def finished_summary(converter: Converter, src: Path, out: Path) -> ConversionSummary | None:
    """The summary of a finished conversion of this very command, or None when there is none.

    Raises `ConversionError` when `out` holds a finished conversion with other inputs or
    options, or one whose JSONL files no longer match the manifest's checksums.
    """
    manifest = _own_manifest(out)
    if manifest is None:
        return None
    identity = run_identity(converter, src)
    if {key: manifest.get(key) for key in identity} != identity:
        raise ConversionError(
            f"{out} already holds a finished conversion made with other inputs or options "
            f"({out / MANIFEST}). Use --overwrite to replace it, or choose another --out-dir."
        )
    changed: list[str] = []
    for split in manifest["splits"].values():
        path = out / split["file"]
        if not path.is_file():
            changed.append(f"{split['file']} is missing")
        elif _sha256_file(path) != split["sha256"]:
            changed.append(f"{split['file']} differs")
    if (
        any(split.get("records") for split in manifest["splits"].values())
        and not (out / IMAGES_DIR).is_dir()
    ):
        changed.append(f"{IMAGES_DIR}/ is missing")
    if changed:
        raise ConversionError(
            f"{out} holds this conversion, but it changed since it finished: "
            f"{'; '.join(changed)} (checked against the sha256 in {out / MANIFEST}). Use "
            "--overwrite to convert again (this replaces any edits), or restore the files."
        )
    inventory = _inventory(out, set(), manifest, {})
    if inventory.foreign:
        raise _foreign_error(out, inventory.foreign)
    # A work folder left by a kill between writing the manifest and removing it.
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return summary_from_manifest(out, manifest)


def prepare_output(
    converter: Converter, src: Path, plan: Plan, out: Path, overwrite: bool
) -> tuple[list[str], list[str]]:
    """Check (and with --overwrite, clear) the output folder before converting into it.

    Returns what --overwrite removed and the other entries it left alone.
    """
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out} is a file: --out-dir must be a folder (new or existing)")
    identity = run_identity(converter, src)
    manifest, work = _own_manifest(out), out / WORK_DIR
    run = _run_file(out)
    removed: list[str] = []
    kept: list[str] = []
    writes = {converter.output_file(split) for split in plan.splits}
    if not overwrite:
        if manifest is not None:  # `finished_summary` let it through: it cannot be ours
            raise ConversionError(
                f"{out} already holds a finished conversion ({out / MANIFEST}). Use "
                "--overwrite to replace it, or choose another --out-dir."
            )
        if (work / "run.json").exists() and run != identity:
            raise ConversionError(
                f"{out} holds an unfinished conversion made with other inputs or options "
                f"({work / 'run.json'}). Rerun with the same arguments to resume it, or use "
                "--overwrite to start over."
            )
    inventory = _inventory(out, writes, manifest, run)
    if inventory.foreign:
        raise _foreign_error(out, inventory.foreign)
    if overwrite and inventory.ours:
        removed = _remove_previous_output(inventory.ours)
        kept = inventory.other
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / VALIDATION_RECORD).unlink()  # a verdict about files this run replaces
    atomic_write_bytes(work / "run.json", orjson.dumps(identity, option=orjson.OPT_INDENT_2))
    remove_temporary_files(out / IMAGES_DIR)
    remove_temporary_files(work)
    return removed, kept


def _remove_previous_output(ours: list[Path]) -> list[str]:
    """Delete a previous conversion's entries, the manifest last.

    Interrupted at any point, the manifest or the work folder is still there, so a rerun
    of --overwrite still recognises what is left as a conversion's and finishes the job.
    """
    order = {WORK_DIR: 2, VALIDATION_RECORD: 1, IMAGES_DIR: 1, MANIFEST: 3}
    removed: list[str] = []
    for path in sorted(ours, key=lambda path: (order.get(path.name, 0), path.name)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(f"{path.name}/")
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if not is_temporary_name(path.name):
                removed.append(path.name)
    return removed


def summary_from_manifest(out: Path, manifest: dict[str, Any]) -> ConversionSummary:
    return ConversionSummary(
        out_dir=out,
        splits={
            name: SplitSummary(
                file=split["file"],
                records=int(split.get("records", 0)),
                sha256=split["sha256"],
                inference_only=bool(split.get("inference_only", False)),
                skipped=dict(split.get("skipped", {})),
            )
            for name, split in manifest["splits"].items()
        },
        skips=[Skip(**skip) for skip in manifest.get("skips", [])],
        counters=manifest.get("counters", {}),
        already_complete=True,
    )


def record_validation(out: Path, passed: bool, errors: int, warnings: int) -> None:
    """Remember the convert-time validation verdict for this output's JSONL checksums."""
    manifest = _own_manifest(out)
    if manifest is None:
        return
    record = {
        "tool_version": __version__,
        "sha256": {name: split["sha256"] for name, split in manifest["splits"].items()},
        "passed": passed,
        "errors": errors,
        "warnings": warnings,
    }
    atomic_write_bytes(out / VALIDATION_RECORD, orjson.dumps(record, option=orjson.OPT_INDENT_2))


def recorded_validation(out: Path) -> dict[str, Any] | None:
    """The convert-time validation verdict, when it was made on exactly these JSONL files.

    Only meaningful after `run_conversion` returned `already_complete` (which checked the
    JSONL files against the manifest); None when there is no current record.
    """
    try:
        record = orjson.loads((out / VALIDATION_RECORD).read_bytes())
        manifest = orjson.loads((out / MANIFEST).read_bytes())
        current = {name: split["sha256"] for name, split in manifest["splits"].items()}
    except (OSError, orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None
    if not isinstance(record, dict) or record.get("tool_version") != __version__:
        return None
    if record.get("sha256") != current or not isinstance(record.get("passed"), bool):
        return None
    return record


def discard(out: Path, files: list[str], keep_out_dir: bool) -> None:
    """Undo a run that made no record: its empty JSONL files, work folder, empty folders.

    The work folder goes too, so that a rerun after fixing the input converts it afresh
    instead of resuming from shards that hold only skips.
    """
    for name in files:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):  # only when empty
        (out / IMAGES_DIR).rmdir()
    if not keep_out_dir:
        with contextlib.suppress(OSError):
            out.rmdir()
