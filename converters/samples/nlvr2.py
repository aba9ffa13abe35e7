"""A tiny NLVR2 tree in one of the real layouts, with the quirks a converter must survive.

Layouts: `lil-lab` (`data/{train,dev,test1}.json` JSON lines; images in
`images/train/<directory>/`, `dev/` and `test1/` beside `data/`), `parquet` (HF parquet
with `left_image`/`right_image` columns and string labels) and `disk` (HF `save_to_disk`
with one `images` list column and a ClassLabel `label` named False/True).

Statements: train 6, dev 2, test1 2. Quirks in train: a left image that is a JPEG in a
`.png` file, a missing right image (a pair with a null image in HF copies), the label
"Maybe" (HF: an empty sentence), a repeated identifier, and (lil-lab) a broken JSON line.
Run: `python -m converters.samples.nlvr2 ROOT [--layout lil-lab]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from converters.samples.still_images import image_bytes, save_hf_copy, write

LAYOUTS = ("lil-lab", "parquet", "disk")
COUNTS = {"train": 6, "dev": 2, "test1": 2}


def _statements(size: tuple[int, int], extra: int) -> dict[str, list[dict[str, Any]]]:
    width, height = size
    out: dict[str, list[dict[str, Any]]] = {}
    for split, count in COUNTS.items():
        rows = []
        for n in range(count + (extra if split == "train" else 0)):
            pair_set = 100 + n // 2
            identifier = f"{split}-{pair_set}-{n % 2}-0"
            stem = "-".join(identifier.split("-")[:3])
            row = {
                "identifier": identifier,
                "sentence": f"There are {n + 1} animals in the pair of pictures.",
                "label": "True" if n % 3 else "False",
                "left_url": f"https://example.invalid/{stem}/0.jpg",
                "right_url": f"https://example.invalid/{stem}/1.jpg",
                "writer": "7",
                "synset": "dog",
                "query": "dogs playing",
                "validation": {},
                "extra_validations": {},
            }
            if split == "train":
                row["directory"] = str(n % 3)
            images = [
                image_bytes(
                    width,
                    height,
                    "JPEG" if (split, n, side) == ("train", 1, 0) else "PNG",
                    n * 2 + side,
                )
                for side in (0, 1)
            ]
            rows.append({"row": row, "images": images, "missing_right": (split, n) == ("train", 2)})
        if split == "train":
            bad = dict(rows[0], row=dict(rows[0]["row"], identifier="train-900-0-0", label="Maybe"))
            twin = dict(rows[3], row=dict(rows[3]["row"], sentence="The same identifier again."))
            rows += [bad, twin]
        out[split] = rows
    return out


def build_nlvr2_tree(
    root: Path, layout: str = "lil-lab", size: tuple[int, int] = (64, 48), extra: int = 0
) -> Path:
    """Write the tree under `root` and return `root`. `extra` adds clean train statements."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    statements = _statements(size, extra)
    if layout == "lil-lab":
        for split, rows in statements.items():
            lines = []
            for entry in rows:
                row = entry["row"]
                stem = "-".join(row["identifier"].split("-")[:3])
                folder = root / ("images/train/" + row["directory"] if split == "train" else split)
                write(folder / f"{stem}-img0.png", entry["images"][0])
                if not entry["missing_right"]:
                    write(folder / f"{stem}-img1.png", entry["images"][1])
                lines.append(orjson.dumps(row))
            if split == "train":
                lines.insert(4, b'{"identifier": "train-5-0-0", "sentence": ')
            write(root / "data" / f"{split}.json", b"\n".join(lines) + b"\n")
        return root
    from datasets import ClassLabel, Features, Image, List, Value

    def cell(entry: dict[str, Any], side: int) -> dict[str, Any] | None:
        if side == 1 and entry["missing_right"]:
            return None
        return {"bytes": entry["images"][side], "path": None}

    names = {"train": "train", "dev": "validation", "test1": "test"}
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, entries in statements.items():
        split_rows = []
        for entry in entries:
            row = entry["row"]
            bad = row["label"] == "Maybe"
            common = {"identifier": row["identifier"], "sentence": "" if bad else row["sentence"]}
            if layout == "parquet":
                common.update(label="True" if bad else row["label"])
                common.update(left_image=cell(entry, 0), right_image=cell(entry, 1))
            else:
                common.update(label=int(row["label"] == "True"))
                common.update(images=[cell(entry, 0), cell(entry, 1)])
            split_rows.append(common)
        rows[names[split]] = split_rows
    base = {"identifier": Value("string"), "sentence": Value("string")}
    if layout == "parquet":
        features = Features(
            {**base, "label": Value("string"), "left_image": Image(), "right_image": Image()}
        )
    else:
        features = Features(
            {**base, "label": ClassLabel(names=["False", "True"]), "images": List(Image())}
        )
    return save_hf_copy(root, rows, features, layout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=LAYOUTS, default="lil-lab")
    args = parser.parse_args()
    print(build_nlvr2_tree(args.root, args.layout))


if __name__ == "__main__":
    main()
