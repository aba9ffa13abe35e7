"""Tiny tables for `phi3v convert table`, in every format it reads, with rows it must skip.

Kinds: `csv`, `tsv`, `jsonl`, `json` (a JSON array): `table.<ext>` beside `images/`;
`parquet`: one `table.parquet` file with the images embedded as `{"bytes", "path"}`
structs (written with pyarrow, no Hugging Face metadata); `disk`: a Hugging Face
`save_to_disk` DatasetDict; `parquet-folder`: Hugging Face parquet files in `data/`
(`disk` and `parquet-folder` have splits train/validation/test and are written with the
`datasets` package).

Columns: `id`, `image`, `question`, `answer`, `answers` (all gold answers: a list, a JSON
list in CSV/TSV), `split`, `topic` (for `--prompt "{topic}"`) and `note`; the embedded kinds
also have `pair`, a list of two images.

Rows of the file kinds, in order: train `r0`..`r7` then `extra` clean train rows, val `v0`,
`v1`, test `t0`, `t1` (test rows have no answer: an inference-only split when split by
the `split` column). Quirks in train: `r1` is a JPEG named `.png`, `r2` has two images
(a list), `r3` a URL, `r4` a missing file, `r5` a truncated PNG, `r6` an empty answer,
`r7` a path leading out of the folder (`../outside.png`).
Embedded kinds, train: `r0`..`r5` then `extra` clean rows: `r1` JPEG bytes, `r2` a
null image, `r3` truncated PNG bytes, `r4` an empty answer, `r5` (the `parquet` kind only)
an image struct whose path is a URL and has no bytes, elsewhere a clean row.
Run: `python -m converters.samples.table ROOT [--kind csv]`; prints the path to convert.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

import orjson

from converters.samples.still_images import image_bytes, save_hf_copy, write

KINDS = ("csv", "tsv", "jsonl", "json", "parquet", "disk", "parquet-folder")
FILE_KINDS = ("csv", "tsv", "jsonl", "json")
URL = "https://example.com/images/r3.png"


def _question(i: int, split: str) -> dict[str, Any]:
    return {
        "question": f"What is shown in {split} picture {i}?",
        "answer": f"gradient {i}",
        "answers": [f"gradient {i}", f"a gradient {i}"],
        "topic": f"{split} picture {i}",
    }


def _file_rows(extra: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(8):
        rows.append({"id": f"r{i}", "image": f"images/r{i}.png", "split": "train"})
        rows[-1].update(_question(i, "train"), note=f"row {i}")
    rows[2]["image"] = ["images/r2a.png", "images/sub/r2b.png"]
    rows[3]["image"] = URL
    rows[4]["image"] = "images/missing.png"
    rows[5]["image"] = "images/corrupt.png"
    rows[6].update(answer="", answers=[])
    rows[7]["image"] = "../outside.png"
    for i in range(extra):
        rows.append({"id": f"x{i}", "image": f"images/x{i}.png", "split": "train"})
        rows[-1].update(_question(100 + i, "train"), note=f"extra {i}")
    for prefix, split in (("v", "val"), ("t", "test")):
        for i in range(2):
            rows.append({"id": f"{prefix}{i}", "image": f"images/{prefix}{i}.png", "split": split})
            rows[-1].update(_question(i, split), note=f"{split} {i}")
            if split == "test":
                rows[-1].update(answer="", answers=[])
    return rows


def _picture(name: str, size: tuple[int, int]) -> bytes:
    width, height = size
    fmt = "JPEG" if name == "r1" else "PNG"
    return image_bytes(width, height, fmt, sum(ord(c) * 31**k for k, c in enumerate(name)))


def _truncated(size: tuple[int, int]) -> bytes:
    data = image_bytes(size[0], size[1], "PNG", 404)
    return data[: len(data) // 2]


def _write_images(root: Path, rows: list[dict[str, Any]], size: tuple[int, int]) -> None:
    for row in rows:
        cells = row["image"] if isinstance(row["image"], list) else [row["image"]]
        for cell in cells:
            if cell in (URL, "images/missing.png", "../outside.png"):
                continue
            path = root / cell
            data = _truncated(size) if cell == "images/corrupt.png" else None
            write(path, data or _picture(Path(cell).stem, size))


def _csv_text(rows: list[dict[str, Any]], delimiter: str) -> str:
    buffer = io.StringIO()
    columns = ["id", "image", "question", "answer", "answers", "split", "topic", "note"]
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            cells.append(orjson.dumps(value).decode() if isinstance(value, list) else value)
        writer.writerow(cells)
    return buffer.getvalue()


def _embedded_rows(kind: str, size: tuple[int, int], extra: int) -> dict[str, list[dict]]:
    def cell(name: str) -> dict[str, Any]:
        return {"bytes": _picture(name, size), "path": None}

    def row(name: str, i: int, split: str) -> dict[str, Any]:
        return {
            "id": name,
            "image": cell(name),
            "pair": [cell(f"{name}-left"), cell(f"{name}-right")],
            "split": split,
            "note": f"{split} {i}",
            **_question(i, split),
        }

    train = [row(f"r{i}", i, "train") for i in range(6)]
    train[2]["image"] = None
    train[3]["image"] = {"bytes": _truncated(size), "path": "corrupt.png"}
    train[4].update(answer="", answers=[])
    if kind == "parquet":
        train[5]["image"] = {"bytes": None, "path": URL}
    train += [row(f"x{i}", 100 + i, "train") for i in range(extra)]
    validation = [row(f"v{i}", i, "validation") for i in range(2)]
    test = [row(f"t{i}", i, "test") for i in range(2)]
    for entry in test:
        entry.update(answer="", answers=[])
    return {"train": train, "validation": validation, "test": test}


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", image),
            ("pair", pa.list_(image)),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("answers", pa.list_(pa.string())),
            ("split", pa.string()),
            ("topic", pa.string()),
            ("note", pa.string()),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=8)


def build_table_tree(
    root: Path, kind: str = "csv", size: tuple[int, int] = (32, 24), extra: int = 0
) -> Path:
    """Write a table of `kind` under `root`; return what to convert (a file or `root`).

    `extra` adds clean train rows.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    root.mkdir(parents=True, exist_ok=True)
    if kind in FILE_KINDS:
        rows = _file_rows(extra)
        _write_images(root, rows, size)
        target = root / f"table.{kind}"
        if kind in ("csv", "tsv"):
            target.write_text(_csv_text(rows, "," if kind == "csv" else "\t"), encoding="utf-8")
        elif kind == "jsonl":
            target.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        else:
            target.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
        return target
    splits = _embedded_rows(kind, size, extra)
    if kind == "parquet":
        target = root / "table.parquet"
        _write_parquet(target, [row for rows in splits.values() for row in rows])
        return target
    from datasets import Features, Image, List, Value

    features = Features(
        {
            "id": Value("string"),
            "image": Image(),
            "pair": List(Image()),
            "split": Value("string"),
            "note": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "answers": List(Value("string")),
            "topic": Value("string"),
        }
    )
    save_hf_copy(root, splits, features, "parquet" if kind == "parquet-folder" else "disk")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--kind", choices=KINDS, default="csv")
    parser.add_argument("--extra", type=int, default=0, help="clean train rows to add")
    args = parser.parse_args()
    print(build_table_tree(args.root, args.kind, extra=args.extra))


if __name__ == "__main__":
    main()
