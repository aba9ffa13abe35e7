"""`phi3v convert llava`: LLaVA instruction data (LLaVA-1.5/NeXT/OneVision style files).

FILE is one JSON array of rows (LLaVA's own `llava_v1_5_mix665k.json` form) or JSONL:

    {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is the bus doing?"},
                       {"from": "gpt", "value": "It is parked."}, ...]}

`image` is one path or a list (several `<image>` tokens), absent for text-only rows; paths
are relative to `--image-folder` (default: FILE's folder). Roles: human, gpt (also
user/assistant) and a first system message, kept in `meta.system`. Rows of role/content
messages or OpenAI content parts are `phi3v convert sharegpt`'s.

Records: id = the row's `id` (`<split>-<row:010d>` without one), one turn per human/gpt
pair, `<image>` -> `<|image_k|>`; `"<image>\\n..."` at the start of a message gives a
tag-free turn (the default layout puts the image there again); other keys of the row go
to `meta`. Every rule and skip reason: `converters/chat.py`.
"""

from __future__ import annotations

from converters.chat import FILE_HELP, ChatConverter, ChatOptions
from converters.registry import register_source

SOURCE = "llava"


class LlavaConverter(ChatConverter):
    name = SOURCE
    content_parts = False
    other_source = "sharegpt"


HELP = (
    'LLaVA conversations: {"id", "image", "conversations": [{"from", "value"}]}.\n\n'
    'FILE: a JSON array of rows or JSONL. "image" is one path or a list, relative to '
    "--image-folder (default: FILE's folder); <image> tokens in human messages mark where "
    "each image goes, in order. Multi-turn, multi-image and text-only rows are kept; a system "
    "message goes to meta.system. Rows whose turns do not alternate human/gpt, whose <image> "
    "count differs from their images, or whose images are missing or broken are skipped with "
    "the reason and row number.\n\n"
    "A message that starts with all of its <image> tokens and a newline becomes a turn "
    "without tags, whose images the default layout puts first: the training text is the "
    "file's text either way.\n\n"
    "Example: phi3v convert llava llava_v1_5_mix665k.json -o data/llava --image-folder ~/data\n"
)


register_source(
    SOURCE, help=HELP, options=ChatOptions, converter=LlavaConverter, src_help=FILE_HELP
)
