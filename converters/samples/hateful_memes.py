"""A tiny Hateful Memes tree in one of the real layouts, with the quirks a converter must survive.

Layouts: `original` (`img/` + `train.jsonl`, `dev_seen.jsonl`, `dev_unseen.jsonl`,
`test_seen.jsonl`, `test_unseen.jsonl`), `phase1` (`img/` + `train.jsonl`, `dev.jsonl`,
`test.jsonl`), `parquet` (HF `data/<split>-00000-of-00001.parquet`, embedded bytes, splits
train/validation/test) and `disk` (HF `save_to_disk` DatasetDict).

Memes: train 6, each dev file 2, each test file 2 (test files carry no labels).
Quirks in train: a JPEG stored as `img/<id>.png`, a zero-padded file name (`img/0NNNN.png`
for id NNNN), a missing image (a null image cell in HF copies), label 2, a repeated id,
and (original layouts) a broken JSON line.
Run: `python -m converters.samples.hateful_memes ROOT [--layout original]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from converters.samples.still_images import image_bytes, save_hf_copy, write

LAYOUTS = ("original", "phase1", "parquet", "disk")
SPLITS = {
    "original": {"train": 6, "dev_seen": 2, "dev_unseen": 2, "test_seen": 2, "test_unseen": 2},
    "phase1": {"train": 6, "dev": 2, "test": 2},
    "parquet": {"train": 6, "validation": 2, "test": 2},
}
SPLITS["disk"] = SPLITS["parquet"]


def _memes(layout: str, size: tuple[int, int], extra: int) -> dict[str, list[dict[str, Any]]]:
    width, height = size
    out: dict[str, list[dict[str, Any]]] = {}
    for s, (split, count) in enumerate(SPLITS[layout].items()):
        memes = []
        for m in range(count + (extra if split == "train" else 0)):
            meme_id = 10000 * (s + 1) + m
            fmt = "JPEG" if split == "train" and m == 1 else "PNG"
            name = f"0{meme_id}" if split == "train" and m == 2 else str(meme_id)
            meme = {
                "id": meme_id,
                "img": f"img/{name}.png",
                "label": m % 2,
                "text": f"caption number {m} of {split}",
                "data": image_bytes(width, height, fmt, meme_id),
                "missing": split == "train" and m == 3,
            }
            if split.startswith("test"):
                del meme["label"]
            memes.append(meme)
        if split == "train":
            memes.append(dict(memes[0], id=90001, label=2, img="img/90001.png"))
            memes.append(dict(memes[4], text="the same id again"))
        out[split] = memes
    return out


def build_hateful_memes_tree(
    root: Path, layout: str = "original", size: tuple[int, int] = (64, 48), extra: int = 0
) -> Path:
    """Write the tree under `root` and return `root`. `extra` adds clean train memes."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    memes = _memes(layout, size, extra)
    if layout in ("original", "phase1"):
        for split, split_memes in memes.items():
            lines = []
            for meme in split_memes:
                if not meme["missing"]:
                    write(root / meme["img"], meme["data"])
                fields = {k: v for k, v in meme.items() if k not in ("data", "missing")}
                lines.append(orjson.dumps(fields))
            if split == "train":
                lines.insert(5, b'{"id": 77, "img": "img/77.png", "label": ')
            write(root / f"{split}.jsonl", b"\n".join(lines) + b"\n")
        return root
    from datasets import ClassLabel, Features, Image, Value

    features = Features(
        {
            "id": Value("int64"),
            "img": Image(),
            "label": ClassLabel(names=["not-hateful", "hateful"]),
            "text": Value("string"),
        }
    )
    rows = {
        split: [
            {
                "id": meme["id"],
                "img": None if meme["missing"] else {"bytes": meme["data"], "path": None},
                "label": min(meme.get("label", -1), 1),
                "text": meme["text"],
            }
            for meme in split_memes
        ]
        for split, split_memes in memes.items()
    }
    # A ClassLabel column cannot hold 2: there the bad row has -1 (no label) in a labelled split.
    rows["train"][-2]["label"] = -1
    return save_hf_copy(root, rows, features, layout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=LAYOUTS, default="original")
    args = parser.parse_args()
    print(build_hateful_memes_tree(args.root, args.layout))


if __name__ == "__main__":
    main()
