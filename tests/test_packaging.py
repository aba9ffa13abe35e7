"""The installed package (#13): a built wheel carries the schema and runs outside the repository.

`schemas/conversation.schema.json` at the repository root is the one source; setup.py copies
it into `phi3v_data/` when a wheel is built. The wheel is built from a copy of the working
tree in a temporary folder, so that runs side by side never share `build/` or `*.egg-info`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from converters.samples.docvqa import build_docvqa_tree

REPO = Path(__file__).resolve().parent.parent
SOURCE_SCHEMA = REPO / "schemas" / "conversation.schema.json"
PACKAGED_SCHEMA = "phi3v_data/conversation.schema.json"

# Never copied: the working tree's own environments, build outputs and caches.
_TOP_LEVEL_SKIP = {".git", ".venv", "build", "dist", "demo_out"}
_ANYWHERE_SKIP = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == REPO
    return {
        n
        for n in names
        if n in _ANYWHERE_SKIP or n.endswith(".egg-info") or (top and n in _TOP_LEVEL_SKIP)
    }


def _env() -> dict[str, str]:
    """The test's environment without anything that would put the repository on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def _build_wheel(source: Path, out: Path) -> Path:
    _ok(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--disable-pip-version-check",
                "-q",
                "-w",
                out,
                source,
            ],
            cwd=out.parent,
        )
    )
    (wheel,) = out.glob("phi3v-*.whl")
    return wheel


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("packaging") / "src"
    shutil.copytree(REPO, dst, ignore=_ignore)
    return dst


@pytest.fixture(scope="module")
def tree_wheel(source_copy: Path) -> Path:
    """The wheel `pip install .` and `pip install git+...` build: straight from the tree."""
    out = source_copy.parent / "wheel"
    out.mkdir()
    return _build_wheel(source_copy, out)


def test_packaged_schema_is_the_source_schema(tree_wheel: Path) -> None:
    source = SOURCE_SCHEMA.read_bytes()
    with zipfile.ZipFile(tree_wheel) as wheel:
        assert wheel.read(PACKAGED_SCHEMA) == source
        assert not any(name.startswith("schemas/") for name in wheel.namelist())
    # The editable install the tests run against reads the source itself.
    from phi3v_data import schema

    assert schema.SCHEMA_PATH.read_bytes() == source


@pytest.mark.slow
def test_wheel_from_sdist_converts_validates_and_reports_outside_the_repo(
    source_copy: Path, tmp_path: Path
) -> None:
    assert not tmp_path.resolve().is_relative_to(REPO), "run from outside the repository"
    # sdist -> wheel, as `python -m build` does: the sdist must carry the schema (MANIFEST.in).
    sdist_dir = tmp_path / "sdist"
    _ok(
        _run(
            [
                sys.executable,
                "-c",
                "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
                sdist_dir,
            ],
            cwd=source_copy,
        )
    )
    (sdist,) = sdist_dir.glob("phi3v-*.tar.gz")
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "unpacked", **safe)
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    assert (unpacked / "schemas" / "conversation.schema.json").read_bytes() == (
        SOURCE_SCHEMA.read_bytes()
    )
    wheel_dir = tmp_path / "wheel"
    wheel_dir.mkdir()
    wheel = _build_wheel(unpacked, wheel_dir)
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(PACKAGED_SCHEMA) == SOURCE_SCHEMA.read_bytes()

    # A fresh venv with the wheel installed; its dependencies come from this test's environment
    # through a .pth appended after the venv's own site-packages, so the wheel's packages win
    # (the .pth files of the test's environment, the editable finder among them, are not run).
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path))
    python = venv / "bin" / "python"
    site = Path(_ok(_run([python, "-c", _PURELIB], cwd=tmp_path)).stdout.strip())
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site / "zz_phi3v_test_dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    _ok(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                python,
                "install",
                "--no-deps",
                "--no-index",
                "--disable-pip-version-check",
                "-q",
                wheel,
            ],
            cwd=tmp_path,
        )
    )
    work = tmp_path / "work"
    work.mkdir()
    where = json.loads(_ok(_run([python, "-c", _WHERE], cwd=work)).stdout)
    assert where["phi3v_data"] == str(site / "phi3v_data" / "__init__.py")
    assert where["converters"] == str(site / "converters" / "__init__.py")
    assert where["schema"] == str(site / "phi3v_data" / "conversation.schema.json")
    assert where["dist"] == str(site)

    build_docvqa_tree(work / "src", "current")
    phi3v = venv / "bin" / "phi3v"
    _ok(_run([phi3v, "convert", "docvqa", "src", "-o", "out"], cwd=work))
    lines = {
        split: len((work / "out" / f"docvqa_{split}.jsonl").read_bytes().splitlines())
        for split in ("train", "val", "test")
    }
    assert lines == {"train": 6, "val": 2, "test": 2}
    _ok(_run([phi3v, "validate", "out"], cwd=work))
    _ok(_run([phi3v, "report", "out", "-o", "report.html"], cwd=work))
    report = (work / "report.html").read_text(encoding="utf-8")
    assert report.lstrip().lower().startswith("<!doctype html")


_PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"
_WHERE = """
import json, importlib.metadata as md
import converters, phi3v_data
from phi3v_data import schema
print(json.dumps({
    "phi3v_data": phi3v_data.__file__,
    "converters": converters.__file__,
    "schema": str(schema.SCHEMA_PATH),
    "dist": str(md.distribution("phi3v").locate_file("")),
}))
"""
