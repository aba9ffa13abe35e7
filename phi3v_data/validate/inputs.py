"""Which JSONL files to validate, each with its image root and inference-only flag."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from phi3v_data.jsonl import is_temporary_name
from phi3v_data.validate.report import InputFile, Problem, make_problem


def discover_inputs(paths: Sequence[str | Path], image_root: Path | None = None) -> list[InputFile]:
    """The JSONL files to validate, each with its image root and inference-only flag.

    A file stands for itself (images under `<its dir>/images`); a directory (a converted
    dataset) for all its `*.jsonl`, images under `<dir>/images`, with the manifest's
    `inference_only` splits allowed empty answers. Raises FileNotFoundError for a path
    that does not exist and ValueError for a directory without JSONL files.
    """
    return discover(paths, image_root)[0]


def discover(
    paths: Sequence[str | Path], image_root: Path | None
) -> tuple[list[InputFile], list[Problem], dict[str, int]]:
    """Inputs, manifest problems, and each file's record count according to its manifest."""
    inputs: list[InputFile] = []
    problems: list[Problem] = []
    expected_counts: dict[str, int] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if not path.is_dir():
            inputs.append(InputFile(path, image_root or path.parent / "images", False))
            continue
        files = sorted(p for p in path.glob("*.jsonl") if not is_temporary_name(p.name))
        inference_only: dict[str, bool] = {}
        manifest = path / "manifest.json"
        if manifest.exists():
            splits = _read_manifest(manifest, problems)
            for split in splits:
                name = split["file"]
                inference_only[name] = bool(split.get("inference_only", False))
                if isinstance(split.get("records"), int):
                    expected_counts[str(path / name)] = split["records"]
                if not (path / name).exists():
                    problems.append(
                        make_problem(
                            "manifest_missing_file",
                            str(manifest),
                            None,
                            None,
                            f"splits.{split['name']}.file",
                            f"manifest lists {name!r}, which is not in {path}",
                        )
                    )
        if not files and not problems:
            raise ValueError(f"{path} has no *.jsonl files to validate")
        root = image_root or path / "images"
        inputs.extend(InputFile(f, root, inference_only.get(f.name, False)) for f in files)
    return inputs, problems, expected_counts


def _read_manifest(manifest: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    """The manifest's splits as dicts with 'name' and 'file'; problems for a broken one."""
    try:
        data = orjson.loads(manifest.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        problems.append(
            make_problem("manifest_invalid", str(manifest), None, None, None, f"cannot read: {exc}")
        )
        return []
    splits = data.get("splits") if isinstance(data, dict) else None
    good = isinstance(splits, dict) and all(
        isinstance(s, dict) and isinstance(s.get("file"), str) and "/" not in s["file"]
        for s in splits.values()
    )
    if not good:
        problems.append(
            make_problem(
                "manifest_invalid",
                str(manifest),
                None,
                None,
                "splits",
                "'splits' must map each split name to an object with a 'file' name",
            )
        )
        return []
    return [{**split, "name": name} for name, split in splits.items()]
