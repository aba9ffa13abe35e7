"""Rules for image paths in records: relative, normalised, and inside the image root."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class PathProblem:
    code: str
    message: str


def lexical_path_problem(rel: str) -> PathProblem | None:
    """Check a record's image path as text, without touching the disk.

    Allowed: POSIX-style relative paths of non-empty components, none of them `.` or
    `..`, no backslashes, no NUL bytes, no leading or trailing slash.
    """
    if not rel:
        return PathProblem("path_empty", "image path is empty")
    if "\x00" in rel:
        return PathProblem("path_invalid", "image path contains a NUL byte")
    if rel.startswith("/") or _WINDOWS_DRIVE.match(rel):
        return PathProblem("path_absolute", f"image path {rel!r} is absolute")
    if "\\" in rel:
        return PathProblem("path_not_normalized", f"image path {rel!r} uses backslashes")
    parts = rel.split("/")
    if ".." in parts:
        return PathProblem("path_escapes_root", f"image path {rel!r} contains '..'")
    if any(part in ("", ".") for part in parts):
        return PathProblem("path_not_normalized", f"image path {rel!r} is not normalised")
    return None


def resolve_image_path(root: Path, rel: str, real_root: str | None = None) -> Path | PathProblem:
    """The file a record's image path names, or the rule it breaks.

    Follows symlinks and refuses any that lead outside `root`. `real_root` is
    `os.path.realpath(root)`, passed in by callers that resolve many paths.
    """
    problem = lexical_path_problem(rel)
    if problem is not None:
        return problem
    real_root = real_root or os.path.realpath(root)
    full = os.path.join(real_root, rel)
    real = os.path.realpath(full)
    if real != real_root and not real.startswith(real_root + os.sep):
        return PathProblem(
            "path_escapes_root", f"image path {rel!r} is a symlink leading outside the image root"
        )
    return Path(real)
