"""`phi3v convert sharegpt`: ShareGPT / OpenAI-messages files (LLaMA-Factory, ms-swift, TRL).

FILE is one JSON array of rows or JSONL. Accepted rows:

    {"messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "<image>What is this?"},
                  {"role": "assistant", "content": "A cat."}],
     "images": ["pics/cat.jpg"]}                              # LLaMA-Factory, ms-swift
    {"conversations": [{"from": "human", "value": "<image>..."}, {"from": "gpt", ...}],
     "system": "...", "images": [...]}                        # ShareGPT spelling
    {"messages": [{"role": "user", "content": [
        {"type": "image", "image": "pics/cat.jpg"},           # or {"type": "image"} + "images"
        {"type": "image_url", "image_url": {"url": "file:///data/dog.png"}},
        {"type": "text", "text": "Compare them."}]}, ...]}     # OpenAI content parts

Paths are relative to `--image-folder` (default: FILE's folder) or absolute; `data:` URLs
are decoded; http(s) URLs are never fetched (the row is skipped with that reason).
Records: as `phi3v convert llava` (see `converters/chat.py`); the system message (first
message or top-level `system`) goes to `meta.system`.
"""

from __future__ import annotations

from converters.chat import FILE_HELP, ChatConverter, ChatOptions
from converters.registry import register_source

SOURCE = "sharegpt"


class ShareGPTConverter(ChatConverter):
    name = SOURCE
    content_parts = True
    other_source = "llava"


HELP = (
    "ShareGPT / OpenAI messages (LLaMA-Factory, ms-swift, TRL): messages + images.\n\n"
    'FILE: a JSON array of rows or JSONL. Rows: {"messages": [{"role", "content"}], '
    '"images": [...]} with <image> placeholders (LLaMA-Factory, ms-swift), the '
    '{"conversations": [{"from", "value"}]} spelling with human/gpt, or OpenAI content parts '
    '({"type": "text" | "image" | "image_url"}). Paths are relative to --image-folder '
    "(default: FILE's folder) or absolute; data: URLs are decoded, http(s) URLs are never "
    "fetched (skipped with that reason). A system message goes to meta.system. Rows with "
    "turns out of order, <image> counts that differ from their images, tool calls, "
    "video/audio, or missing or broken images are skipped with the reason and row number."
    "\n\n"
    "Example: phi3v convert sharegpt mllm_demo.json -o data/demo --image-folder "
    "~/LLaMA-Factory/data\n"
)


register_source(
    SOURCE, help=HELP, options=ChatOptions, converter=ShareGPTConverter, src_help=FILE_HELP
)
