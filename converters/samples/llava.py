"""A tiny LLaVA file (JSON array or JSONL) with its images, and the traps a converter must survive.

Layout: `ROOT/llava_instruct.json` (or `.jsonl`), images beside it under `coco/` and
`docs/` (so the default image folder, the file's folder, is right).

Rows, in order (`ROWS`): 7 good ones - one image and a second turn without one; two
images on two lines (`<image>\\n<image>\\n`); two adjacent images (`<image><image>\\n`); an
image token at the end of the text, whose `.png` file holds a JPEG; a text-only row with an
integer id; a system message, an extra key and an image in the second turn; a row without
an id - then 9 traps: turns out of order, more `<image>` tokens than images, fewer, a
missing image, a truncated JPEG, a repeated id, an image in an answer, a conversation that
ends with the user, and a role/content (ShareGPT) row. The JSONL file ends with a broken
line as well.
Run: `python -m converters.samples.llava ROOT [--container jsonl]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from converters.samples.still_images import image_bytes, write

CONTAINERS = ("json", "jsonl")
SIZE = (40, 30)


def _turns(*texts: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]


ROWS: list[dict[str, Any]] = [
    {
        "id": "single",
        "image": "coco/000001.jpg",
        "conversations": _turns(
            "<image>\nWhat is in the picture?", "A gradient.", "Which colours?", "Red and green."
        ),
    },
    {
        "id": "pair",
        "image": ["coco/000001.jpg", "coco/000002.png"],
        "conversations": _turns("<image>\n<image>\nAre the two pictures the same?", "No."),
    },
    {
        "id": "adjacent",
        "image": ["coco/000002.png", "docs/page.png"],
        "conversations": _turns("<image><image>\nCompare them.", "The second is a page."),
    },
    {
        "id": "trailing",
        "image": "coco/000003.png",  # a JPEG in a .png file
        "conversations": _turns("What colour dominates?\n<image>", "Blue."),
    },
    {"id": 5, "conversations": _turns("Tell me a joke.", "Why did the pixel blush? It saw RGB.")},
    {
        "id": "later-image",
        "image": "docs/page.png",
        "data_source": "docvqa",
        "conversations": [
            {"from": "system", "value": "You read documents."},
            *_turns("Hello.", "Hi.", "<image>\nWhat is the title?", "Report."),
        ],
    },
    {"image": "coco/000001.jpg", "conversations": _turns("<image>\nDescribe it.", "Colours.")},
    # Traps
    {"id": "out-of-order", "conversations": _turns("Q1", "A1")[:1] + _turns("Q2", "A2")},
    {
        "id": "too-many-tokens",
        "image": "coco/000001.jpg",
        "conversations": _turns("<image>\n<image>\nSame?", "Yes."),
    },
    {
        "id": "too-few-tokens",
        "image": ["coco/000001.jpg", "coco/000002.png"],
        "conversations": _turns("<image>\nWhat is this?", "A picture."),
    },
    {
        "id": "missing",
        "image": "coco/missing.jpg",
        "conversations": _turns("<image>\nWhat is this?", "Nothing."),
    },
    {
        "id": "broken",
        "image": "coco/broken.jpg",
        "conversations": _turns("<image>\nWhat is this?", "Half a picture."),
    },
    {"id": "single", "conversations": _turns("Again?", "The same id again.")},
    {
        "id": "answer-image",
        "image": "coco/000001.jpg",
        "conversations": _turns("Show me.", "<image>"),
    },
    {
        "id": "no-answer",
        "image": "coco/000001.jpg",
        "conversations": _turns("<image>\nWhat is this?"),
    },
    {
        "id": "messages-form",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi!"}],
    },
]
BROKEN_LINE = b'{"id": "cut", "conversations": [{"from": "human", "val'


def write_images(root: Path) -> None:
    width, height = SIZE
    write(root / "coco/000001.jpg", image_bytes(width, height, "JPEG", 1))
    write(root / "coco/000002.png", image_bytes(width, height, "PNG", 2))
    write(root / "coco/000003.png", image_bytes(width, height, "JPEG", 3))
    write(root / "docs/page.png", image_bytes(width * 2, height * 3, "PNG", 4))
    whole = image_bytes(width, height, "JPEG", 5)
    write(root / "coco/broken.jpg", whole[: len(whole) // 2])


def build_llava_tree(root: Path, container: str = "json") -> Path:
    """Write the images and the annotation file under `root`; return the file."""
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {CONTAINERS}")
    write_images(root)
    if container == "json":
        return write(root / "llava_instruct.json", orjson.dumps(ROWS, option=orjson.OPT_INDENT_2))
    lines = [orjson.dumps(row) for row in ROWS] + [BROKEN_LINE]
    return write(root / "llava_instruct.jsonl", b"\n".join(lines) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--container", choices=CONTAINERS, default="json")
    args = parser.parse_args()
    print(build_llava_tree(args.root, args.container))


if __name__ == "__main__":
    main()
