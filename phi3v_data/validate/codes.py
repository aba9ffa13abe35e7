"""Every problem `phi3v validate` can report: its code, severity, summary and hint.

A new rule adds its code here (and its check to `rules.py`); `phi3v validate --list-codes`
prints this table, and a test plants every code in the sample with defects.
"""

from __future__ import annotations

from typing import NamedTuple


class CodeInfo(NamedTuple):
    severity: str  # "error" | "warning"
    summary: str
    hint: str


# Every problem `phi3v validate` can report. `phi3v validate --list-codes` prints this.
CODES: dict[str, CodeInfo] = {
    # Files and lines
    "file_unreadable": CodeInfo(
        "error", "a JSONL file cannot be opened or read", "Check the path and its permissions."
    ),
    "file_empty": CodeInfo(
        "warning", "a JSONL file has no records", "Remove the file or re-run the conversion."
    ),
    "blank_line": CodeInfo(
        "warning", "a blank line between records", "Remove blank lines (readers skip them)."
    ),
    "bad_utf8": CodeInfo(
        "error", "a line is not valid UTF-8", "Re-encode the file as UTF-8 (e.g. `iconv -t UTF-8`)."
    ),
    "bad_json": CodeInfo(
        "error",
        "a line is not one complete JSON value",
        "Write one JSON object per line; no pretty-printing, no trailing commas.",
    ),
    "line_too_long": CodeInfo(
        "error",
        "a line is over the line-size limit",
        "A record is a few kB: a line this large is a broken file (missing newlines?).",
    ),
    "json_array": CodeInfo(
        "error",
        "a file is one JSON array, not JSONL (one JSON object per line)",
        "Rewrite it one record per line: `jq -c '.[]' IN.json > OUT.jsonl`, or without jq"
        " `python -c \"import json,sys; sys.stdout.writelines(json.dumps(r) + '\\n' for r in"
        " json.load(open(sys.argv[1], encoding='utf-8-sig')))\" IN.json > OUT.jsonl`.",
    ),
    # Records
    "schema": CodeInfo(
        "error",
        "a record does not match schemas/conversation.schema.json",
        "Fix the field named; required: id, source, conversations[{images, user, assistant}];"
        " extra data goes in 'meta'.",
    ),
    "foreign_format": CodeInfo(
        "error",
        "a record is in another dataset format (LLaVA, ShareGPT / OpenAI messages)",
        "Convert the file with the converter the message names (`phi3v convert --help` lists"
        " them). Ours is one JSON object per line: id, source, conversations: [{images, user,"
        " assistant}], optional meta; see README.md, 'The record format'.",
    ),
    "duplicate_id": CodeInfo(
        "error",
        "an id is used by more than one record (across all files validated together)",
        "Give every record a unique id, e.g. '<split>-<index>'.",
    ),
    "too_many_images": CodeInfo(
        "error",
        "a record has more images than --max-images",
        "Sample fewer frames per clip, split the conversation, or raise --max-images.",
    ),
    "user_blank": CodeInfo(
        "error", "a user message is only whitespace", "Every turn needs a question or instruction."
    ),
    "assistant_empty": CodeInfo(
        "error",
        "an assistant answer is empty in training data",
        "Fill in the answer; for inference-only data pass --allow-empty-assistant"
        " (a converted split marked inference_only in manifest.json is allowed).",
    ),
    "tags_mismatch": CodeInfo(
        "error",
        "the <|image_k|> tags of a turn do not match its images",
        "Use no tags (images go first) or exactly one tag per image of the turn,"
        " numbered across the conversation: turn 1 <|image_1|>.., turn 2 continues.",
    ),
    "special_token_in_text": CodeInfo(
        "error",
        "a message contains a chat control token (<|end|>, <|user|>, <s>, ...)",
        "The tokenizer turns these into control tokens and breaks the prompt; remove"
        " or escape them in the text.",
    ),
    "foreign_image_tag": CodeInfo(
        "warning",
        "a message contains an <image>-style tag from another format",
        "Phi-3.5-vision uses <|image_k|>; remove the tag (images go first) or rename it.",
    ),
    # Image paths (text only, no disk access)
    "path_invalid": CodeInfo(
        "error", "an image path contains a NUL byte", "Write the path as plain relative text."
    ),
    "path_absolute": CodeInfo(
        "error",
        "an image path is absolute",
        "Write paths relative to the image root (OUT/images), e.g. 'clip/frame_0.jpg'.",
    ),
    "path_not_normalized": CodeInfo(
        "error",
        "an image path has '.', empty parts or backslashes",
        "Use normalised POSIX paths: 'a/b.jpg', not './a//b.jpg' or 'a\\b.jpg'.",
    ),
    "path_escapes_root": CodeInfo(
        "error",
        "an image path leads outside the image root ('..' or a symlink)",
        "Copy the image under the image root; data paths may never leave it.",
    ),
    # Image files
    "image_missing": CodeInfo(
        "error",
        "an image file does not exist",
        "Check --image-root (default: <jsonl dir>/images) or re-run the conversion.",
    ),
    "image_not_file": CodeInfo(
        "error", "an image path is a directory or special file", "Point the path at the image file."
    ),
    "image_empty": CodeInfo(
        "error",
        "an image file is 0 bytes",
        "Re-extract or re-download the image (interrupted copy?).",
    ),
    "image_not_image": CodeInfo(
        "error",
        "an image file's bytes are not a supported image",
        "Formats: JPEG, PNG, GIF, WEBP, BMP, TIFF. An HTML error page saved as .jpg? Re-download.",
    ),
    "image_format_mismatch": CodeInfo(
        "warning",
        "an image file's bytes do not match its extension",
        "It still decodes; rename it so tools that trust extensions do not trip.",
    ),
    "image_corrupt": CodeInfo(
        "error",
        "an image file does not decode (truncated or damaged)",
        "Re-extract the image; `--deep` decodes every image fully.",
    ),
    "image_too_large": CodeInfo(
        "error",
        "an image is over the pixel limit (decompression-bomb guard)",
        "Downscale it (the HD transform resizes to at most 16 crops of 336 px anyway).",
    ),
    # Token budget
    "token_budget": CodeInfo(
        "error",
        "a sample is longer than --max-length tokens (text + image tokens)",
        "Lower --num-crops, use fewer images/frames per sample, shorten the text,"
        " or raise --max-length.",
    ),
    # Converted directories
    "manifest_invalid": CodeInfo(
        "error",
        "manifest.json is not valid JSON or lacks 'splits'",
        "Re-run the conversion: the manifest is written last, when it finished.",
    ),
    "manifest_missing_file": CodeInfo(
        "error",
        "manifest.json lists a split file that does not exist",
        "Re-run the conversion, or restore the missing file.",
    ),
    "manifest_mismatch": CodeInfo(
        "warning",
        "a file's record count differs from manifest.json",
        "The file changed after conversion; re-run the conversion if that was not intended.",
    ),
}
