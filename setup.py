"""Build hook: ship `schemas/conversation.schema.json` inside the `phi3v_data` package.

The file at the repository root stays the one source. Every wheel (`pip install .`,
`pip install git+...`, `pip wheel`, `python -m build`) gets a copy at
`phi3v_data/conversation.schema.json`, which `phi3v_data.schema` reads first; an
editable install has no copy and reads the source file directly.
All other metadata lives in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SCHEMA = Path(__file__).resolve().parent / "schemas" / "conversation.schema.json"
PACKAGED = Path("phi3v_data") / SCHEMA.name


class BuildPyWithSchema(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / PACKAGED
        self.mkpath(str(target.parent))
        self.copy_file(str(SCHEMA), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PACKAGED)]


setup(cmdclass={"build_py": BuildPyWithSchema})
