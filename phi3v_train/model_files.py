"""The files beside the weights that other tools need: remote code, processor, tokenizer.

The official code (`trust_remote_code=True`) and vLLM load a Phi-3.5-vision folder through
the `auto_map` of its `config.json` and `preprocessor_config.json`, which name remote-code
modules (`configuration_phi3_v.py`, `modeling_phi3_v.py`, `processing_phi3_v.py`, ...)
that must lie beside them, and read the original tokenizer and processor files, which our
`transformers` would rewrite in its own (5.x-only) style if it saved them.

`copy_companion_files(base, out, num_crops)` is the one place that gives a model folder
phi3v writes (final model, `checkpoint-N`, LoRA adapter, `phi3v export` output) those
files: the base checkpoint's `*.py` and processor/tokenizer files, byte for byte. The only
edit is `num_crops` in `preprocessor_config.json` when the run used another value, and
that edit changes the number alone, leaving every other byte of the file as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

PREPROCESSOR_CONFIG = "preprocessor_config.json"
# The tokenizer and processor files of a checkpoint, in the names transformers 4.x and the
# remote code read (whichever of them the base has are copied).
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "processor_config.json",
    PREPROCESSOR_CONFIG,
    "chat_template.json",
    "chat_template.jinja",
)
CHAT_TEMPLATES_DIR = "additional_chat_templates"
# Any of these means the base carries its own tokenizer (else: the processor's save).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
_NUM_CROPS_RE = re.compile(r'("num_crops"\s*:\s*)(-?\d+)')
_INDENT_RE = re.compile(r"\A\{[ \t]*\r?\n([ \t]+)\"")


def remote_code_files(base_dir: Path) -> list[Path]:
    """The remote-code modules (`*.py`) beside the base checkpoint's config.json."""
    return sorted(path for path in Path(base_dir).glob("*.py") if path.is_file())


def has_tokenizer_files(base_dir: Path) -> bool:
    return any((Path(base_dir) / name).is_file() for name in TOKENIZER_FILES)


def copy_companion_files(
    base_dir: str | Path,
    out_dir: str | Path,
    num_crops: int | None = None,
    *,
    processor: Any = None,
) -> list[str]:
    """Copy the base's remote code and processor/tokenizer files into `out_dir`.

    Args:
        base_dir: the checkpoint the model in `out_dir` was trained or derived from.
        out_dir: the model (or adapter) folder being written.
        num_crops: the crops the run used; written into `preprocessor_config.json` when
            the base's value differs (the only change made to any copied file).
        processor: saved with its own `save_pretrained` only when the base has no
            tokenizer files at all (then the base's other files still go on top of it).

    Processor files that an earlier save left in `out_dir` but the base does not have (a
    `chat_template.jinja` written by our `transformers`, say) are removed, so that the
    folder's processor files are the base's and nothing else. Returns the names written.
    """
    base, out = Path(base_dir), Path(out_dir)
    if not base.is_dir():
        raise FileNotFoundError(f"base checkpoint {base} is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    if has_tokenizer_files(base):
        for name in PROCESSOR_FILES:
            if not (base / name).is_file() and (out / name).is_file():
                (out / name).unlink()
        if not (base / CHAT_TEMPLATES_DIR).is_dir() and (out / CHAT_TEMPLATES_DIR).is_dir():
            shutil.rmtree(out / CHAT_TEMPLATES_DIR)
    elif processor is not None:
        processor.save_pretrained(out)
        written.extend(name for name in PROCESSOR_FILES if (out / name).is_file())
    for source in remote_code_files(base):
        _copy(source, out / source.name)
        written.append(source.name)
    for name in PROCESSOR_FILES:
        source = base / name
        if not source.is_file():
            continue
        if name == PREPROCESSOR_CONFIG and num_crops is not None:
            text = source.read_text(encoding="utf-8")
            _write_bytes(out / name, with_num_crops(text, num_crops).encode("utf-8"))
        else:
            _copy(source, out / name)
        written.append(name)
    if (base / CHAT_TEMPLATES_DIR).is_dir():
        target = out / CHAT_TEMPLATES_DIR
        if not _same(base / CHAT_TEMPLATES_DIR, target):
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(base / CHAT_TEMPLATES_DIR, target, copy_function=shutil.copyfile)
        written.append(CHAT_TEMPLATES_DIR)
    if num_crops is not None and not (base / PREPROCESSOR_CONFIG).is_file():
        # No file to keep: record the run's num_crops in the official layout.
        from phi3v_train.init_model import preprocessor_config

        data = preprocessor_config(num_crops)
        _write_bytes(out / PREPROCESSOR_CONFIG, (json.dumps(data, indent=2) + "\n").encode())
        written.append(PREPROCESSOR_CONFIG)
    return sorted(set(written))


def with_num_crops(text: str, num_crops: int) -> str:
    """`preprocessor_config.json` text with `num_crops` set, every other byte unchanged.

    The number is replaced in place; only a file where that is not possible (no
    `num_crops` key yet) is re-dumped, keeping key order, values and indentation (floats
    go through Python's exact repr, never float32)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("preprocessor_config.json is not a JSON object")
    if data.get("num_crops") == num_crops and type(data.get("num_crops")) is int:
        return text
    expected = {**data, "num_crops": num_crops}
    matches = list(_NUM_CROPS_RE.finditer(text))
    if len(matches) == 1:
        match = matches[0]
        edited = text[: match.start(2)] + str(num_crops) + text[match.end(2) :]
        if json.loads(edited) == expected:
            return edited
    indent_match = _INDENT_RE.match(text)
    indent: int | str = 2
    if indent_match:
        spaces = indent_match.group(1)
        indent = len(spaces) if set(spaces) == {" "} else spaces
    dumped = json.dumps(expected, indent=indent, ensure_ascii=text.isascii())
    return dumped + ("\n" if text.endswith("\n") else "")


def _same(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _copy(source: Path, target: Path) -> None:
    """Byte-for-byte copy (not the mode: the base may be read-only), atomically."""
    if _same(source, target):
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def _write_bytes(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)
