"""A tiny ShareGPT / OpenAI-messages file (JSON array or JSONL) with its images and traps.

Layout: `ROOT/annotations/sharegpt.json` (or `.jsonl`) and the images under `ROOT/media/`
(pass `--image-folder ROOT/media`); one row names an image by its absolute path, one by a
`file://` URL and one embeds a PNG as a `data:` URL.

Rows, in order (`rows(root)`): 7 good ones - LLaMA-Factory `messages` with `<image>` and no
newline, then a second turn; ms-swift with a system message and an absolute image path; the
`conversations`/`from`/`value` spelling with a top-level `system`; OpenAI content parts with
the images first; parts with images between texts (a `file://` URL and a bare
`{"type": "image"}` taking the row's `images`); a `data:` URL; a text-only conversation -
then 9 traps: an https URL, a tool call, an answer first, an `<image>` without an image, a
missing image, a truncated PNG, a video part, a chat control token, an empty answer. The
JSONL file ends with a broken line as well.
Run: `python -m converters.samples.sharegpt ROOT [--container jsonl]`.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import orjson

from converters.samples.still_images import image_bytes, write

CONTAINERS = ("json", "jsonl")
SIZE = (36, 24)
ANNOTATION = {"json": "annotations/sharegpt.json", "jsonl": "annotations/sharegpt.jsonl"}


def _messages(*contents: Any) -> list[dict[str, Any]]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def tiny_png() -> bytes:
    return image_bytes(8, 8, "PNG", 9)


def rows(root: Path) -> list[dict[str, Any]]:
    """The rows; absolute paths point into `root/media`."""
    media = (root / "media").resolve()
    data_url = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    return [
        {
            "messages": _messages(
                "<image>Who are they?", "Two gradients.", "What are they doing?", "Nothing."
            ),
            "images": ["mllm/1.jpg"],
        },
        {
            "messages": [
                {"role": "system", "content": "You are helpful."},
                *_messages("<image>\nDescribe.", "A picture."),
            ],
            "images": [str(media / "abs/outside.png")],
        },
        {
            "id": "sg-3",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is it?"},
                {"from": "gpt", "value": "A gradient."},
            ],
            "system": "Be brief.",
            "images": ["mllm/2.png"],
        },
        {
            "id": "parts-first",
            "messages": _messages(
                [
                    {"type": "image", "image": "mllm/1.jpg"},
                    {"type": "image_url", "image_url": {"url": "mllm/2.png"}},
                    _text("Which is brighter?"),
                ],
                [_text("The second.")],
            ),
        },
        {
            "id": "interleaved",
            "messages": _messages(
                [
                    _text("Left: "),
                    {"type": "image_url", "image_url": {"url": (media / "mllm/1.jpg").as_uri()}},
                    _text(" Right: "),
                    {"type": "image"},
                    _text(" Same?"),
                ],
                "No.",
            ),
            "images": ["mllm/2.png"],
        },
        {
            "id": "data-url",
            "messages": _messages(
                [{"type": "image_url", "image_url": {"url": data_url}}, _text("What is this?")],
                "A tiny picture.",
            ),
        },
        {"id": "text-only", "messages": _messages("Hello.", "Hi.", "Bye.", "Goodbye.")},
        # Traps
        {
            "id": "remote",
            "messages": _messages(
                [
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    _text("What is this?"),
                ],
                "A cat.",
            ),
        },
        {
            "id": "tools",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "function_call", "content": '{"name": "weather"}'},
                {"role": "observation", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."},
            ],
        },
        {"id": "assistant-first", "messages": _messages("Hi.", "Hello.")[::-1]},
        {"id": "mismatch", "messages": _messages("<image>\nWhat is this?", "Nothing.")},
        {
            "id": "missing",
            "messages": _messages("<image>\nWhat is this?", "Nothing."),
            "images": ["mllm/none.jpg"],
        },
        {
            "id": "broken",
            "messages": _messages("<image>\nWhat is this?", "Half a picture."),
            "images": ["broken.png"],
        },
        {
            "id": "video",
            "messages": _messages(
                [{"type": "video", "video": "clip.mp4"}, _text("What happens?")], "A jump."
            ),
        },
        {"id": "control", "messages": _messages("Say <|end|> twice.", "No.")},
        {"id": "empty-answer", "messages": _messages("Anything?", "")},
    ]


BROKEN_LINE = b'{"messages": [{"role": "user", "cont'


def write_images(root: Path) -> None:
    width, height = SIZE
    media = root / "media"
    write(media / "mllm/1.jpg", image_bytes(width, height, "JPEG", 11))
    write(media / "mllm/2.png", image_bytes(width, height, "PNG", 12))
    write(media / "abs/outside.png", image_bytes(height, width, "PNG", 13))
    whole = image_bytes(width, height, "PNG", 14)
    write(media / "broken.png", whole[: len(whole) // 2])


def build_sharegpt_tree(root: Path, container: str = "json") -> Path:
    """Write the images and the annotation file under `root`; return the file."""
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {CONTAINERS}")
    write_images(root)
    target = root / ANNOTATION[container]
    if container == "json":
        return write(target, orjson.dumps(rows(root), option=orjson.OPT_INDENT_2))
    lines = [orjson.dumps(row) for row in rows(root)] + [BROKEN_LINE]
    return write(target, b"\n".join(lines) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--container", choices=CONTAINERS, default="json")
    args = parser.parse_args()
    print(build_sharegpt_tree(args.root, args.container))


if __name__ == "__main__":
    main()
