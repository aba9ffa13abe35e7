"""Chat-format files (LLaVA, ShareGPT, OpenAI messages) -> phi3v records: the shared part.

`phi3v convert llava` and `phi3v convert sharegpt` differ only in the row forms they
accept (see `ChatConverter.content_parts`); this module reads the file, checks every row
and imports its images (reading rows and mapping messages to turns: `converters/chat_rows.py`).

Input: one JSON array of rows, or JSONL (one row per line). A row is an object with
- the messages: `conversations` or `messages`, a list of `{"from", "value"}` (LLaVA,
  ShareGPT) or `{"role", "content"}` (OpenAI, LLaMA-Factory, ms-swift) objects. Roles:
  `human`/`user`, `gpt`/`assistant`, and `system` as the first message only;
- its images: `image` (one path or a list, LLaVA) or `images` (a list, ShareGPT), each a
  path (relative to the image folder, or absolute), a `file://` or `data:` URL, or an
  object with a `path`; an http(s) URL is never fetched (the row is skipped);
- optional `id` (a string or an integer; `<split>-<row:010d>` when absent), optional
  top-level `system` (LLaMA-Factory), and any other keys, which are kept in `meta`.

Message text refers to the row's images with `<image>` tokens, in order. With
`content_parts`, a message's content may also be a list of OpenAI-style parts:
`{"type": "text", "text"}`, `{"type": "image", "image": PATH}` and
`{"type": "image_url", "image_url": {"url": PATH}}` (an image part without a path takes the
row's next image, as `<image>` does).

Mapping (decided so that, under the default image layout, the training prompt is the
file's text with each `<image>` read as `<|image_k|>`, byte for byte):
- each `<image>` (or image part) becomes `<|image_k|>`, k numbered across the conversation,
  and the image goes to the turn whose user message holds it;
- a user message that *starts* with all of its `<image>` tokens, adjacent, followed by one
  newline (`"<image>\\n..."`, `"<image><image>\\n..."`: LLaVA's usual layout) becomes a
  tag-free turn: that prefix is dropped, since the default image layout (`seed`) puts
  `"<|image_1|>...<|image_n|>\\n"` back in front, so the prompt is unchanged. Anywhere else
  (`"<image>Who?"`, `"Q?\\n<image>"`, `"<image>\\n<image>\\nQ"`) the tags stay where the
  tokens were, newlines included. A message of parts that puts all its image parts before
  its text is tag-free as well (images first, then the text, as the default layout does);
  otherwise the tags sit between the text parts, which are joined as they are;
- the first `system` message (or the top-level `system`) is kept in `meta.system`.

Skipped, each with its row (`FILE: row N` in an array, `FILE: line N` in JSONL) and a
reason: bad JSON lines (`bad_line`), rows of the wrong shape (`bad_row`, `wrong_format`),
unknown roles such as tool calls (`unknown_role`), turns that do not alternate user,
assistant, ... or end without an answer (`turns_out_of_order`), `<image>` counts that do
not match the images (`image_count_mismatch`), images outside user messages
(`image_misplaced`), video or audio (`unsupported_media`), control tokens or phi3v image
tags in the text (`special_token_in_text`, `image_tag_in_text`), empty questions or answers
(`empty_question`, `empty_answer`), repeated ids (`duplicate_id`), remote URLs
(`image_remote`), bad image references (`bad_image_ref`) and missing or broken image files
(`image_missing`, `image_corrupt`, ... as in `converters.images`).

Images: a clean relative path keeps its place, `images/<path>` with the extension of its
real format (`coco/1.png` holding a JPEG is written as `coco/1.jpg`), so `phi3v
export-data` gives back the same paths; absolute paths, paths with `..` and `data:` URLs
get content-addressed names, `images/by_content/<sha256[:2]>/<sha256>.<ext>` (`--link`
hard-links mirrored files only). Unlike the other sources there is no `<source>/` prefix:
a chat file already names its own folders, and the paths survive a round trip.

Planning reads the whole file (a JSON array is parsed at once) and keeps every row in
memory (about 6x the file's size); the rows are checked and their images imported in
parallel.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from converters.chat_rows import (
    SYSTEM,
    ChatRow,
    ImageRef,
    PendingImage,
    Placeholder,
    RowProblem,
    check_text,
    checked_row_id,
    listed_images,
    messages_key,
    number_images,
    pair_turns,
    parse_parts,
    read_rows,
    split_tokens,
    text_only,
    user_text,
)
from converters.converter import (
    ConversionError,
    Converter,
    ItemResult,
    OutputContext,
    Plan,
    Skip,
    WorkItem,
)
from converters.images import (
    ImageFailure,
    ImportedImage,
    deep_check_flag,
    import_image_bytes,
    import_image_file,
    link_flag,
)
from phi3v_data.flags import FlagError, flag
from phi3v_data.records import Record, Turn

CONTENT_DIR = "by_content"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
# Keys a row's content is read from; every other key is kept in `meta`.
ROW_KEYS = ("id", "image", "images", "conversations", "messages", "system", "videos", "audios")
SPLIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_WINDOWS_PATH_RE = re.compile(r"[A-Za-z]:[\\/]")

FILE_HELP = "The annotation file: one JSON array of rows, or JSONL (one row per line)."


def check_split_name(split: str) -> str:
    if not SPLIT_RE.fullmatch(split):
        raise FlagError(
            "--split", f"{split!r}: use letters, digits, '_', '.' or '-' (it names the output file)"
        )
    return split


@dataclass(frozen=True)
class ChatOptions:
    """The options of `phi3v convert llava` and `sharegpt` (their flags); SRC is FILE."""

    image_folder: Path | None = flag(  # absolute; from the command line FILE's folder if None
        None,
        "--image-folder",
        help="The folder relative image paths start from (LLaVA's --image_folder, "
        "LLaMA-Factory's media_dir). Default: the folder FILE is in.",
        show_default=False,
    )
    split: str = flag(
        "train",
        "--split",
        help="The split FILE holds: written as OUT/<source>_<split>.jsonl. Convert each file "
        "into its own OUT.",
        parse=check_split_name,
    )
    link: bool = link_flag()
    deep_check: bool = deep_check_flag()

    @classmethod
    def from_flags(cls, src: Path, **values: Any) -> ChatOptions:
        """The options of a run on FILE `src`; the image folder defaults to FILE's folder."""
        folder = values.pop("image_folder", None)
        folder = folder if folder is not None else src.parent
        return cls(folder.resolve(), **values)


class ChatConverter(Converter):
    """A chat-format source; subclasses set `name` and the forms they accept."""

    progress_unit = "rows"
    # ShareGPT: `role`/`content` messages and OpenAI content parts too; LLaVA: from/value.
    content_parts: ClassVar[bool] = False
    other_source: ClassVar[str] = ""  # the source to name for rows of the other form

    def plan(self, src: Path) -> Plan:
        options: ChatOptions = self.options
        if src.is_dir():
            raise ConversionError(
                f"{src} is a folder: give the annotation file (a JSON array or JSONL) and the "
                "image folder with --image-folder"
            )
        if options.image_folder is None:  # the command line gives FILE's folder
            raise ConversionError("the image folder is not set: give --image-folder")
        if not options.image_folder.is_dir():
            raise ConversionError(f"--image-folder {options.image_folder} is not a folder")
        split = options.split
        items: list[WorkItem] = []
        skips: list[Skip] = []
        seen: set[str] = set()
        for where, number, value, error in read_rows(src):
            if error is not None:
                skips.append(Skip(split, where, "bad_line", error))
                continue
            try:
                if not isinstance(value, dict):
                    raise RowProblem(
                        "bad_row", f"expected a JSON object, got {type(value).__name__}"
                    )
                row_id = checked_row_id(value.get("id"), f"{split}-{number:010d}")
            except RowProblem as problem:
                skips.append(Skip(split, where, problem.reason, problem.detail))
                continue
            if row_id in seen:
                skips.append(Skip(split, where, "duplicate_id", f"id {row_id!r} appears again"))
                continue
            seen.add(row_id)
            items.append(WorkItem(split, len(items), where, (row_id, value)))
        return Plan(splits={split: items}, skips=skips)

    def process(self, item: WorkItem, output: OutputContext) -> ItemResult:
        # Rows are checked here, in the workers: planning only reads ids (for duplicates).
        row_id, value = item.payload
        try:
            row = self.parse_row(value, row_id)
        except RowProblem as problem:
            return ItemResult(skips=[Skip(item.split, item.key, problem.reason, problem.detail)])
        rels: list[str] = []
        for ref in row.images:
            imported = self.import_image(ref, output)
            if isinstance(imported, ImageFailure):
                skip = Skip(
                    item.split, item.key, imported.reason, f"{ref.where}: {imported.detail}"
                )
                return ItemResult(skips=[skip])
            rels.append(imported.rel)
        turns = tuple(
            Turn(
                user=user_text(turn.user),
                assistant=turn.assistant,
                images=tuple(rels[s.image] for s in turn.user if isinstance(s, Placeholder)),
            )
            for turn in row.turns
        )
        result = ItemResult(records=[Record(row.id, self.name, turns, row.meta)])
        result.counters["images"] += len(rels)
        return result

    # Rows

    def parse_row(self, value: Any, default_id: str) -> ChatRow:
        """Check one row and return it; raise `RowProblem` with the reason to skip it."""
        if not isinstance(value, dict):
            raise RowProblem("bad_row", f"expected a JSON object, got {type(value).__name__}")
        row_id = checked_row_id(value.get("id"), default_id)
        key = messages_key(value)
        messages = value[key]
        for media in ("videos", "audios"):
            if value.get(media):
                raise RowProblem("unsupported_media", f"the row has {media!r}: only images are")
        row_images = listed_images(value)
        system = value.get(SYSTEM)
        if system is not None and not isinstance(system, str):
            raise RowProblem("bad_row", f"'system' must be a string, got {system!r}")
        parsed = [self._message(message, f"{key}[{i}]") for i, message in enumerate(messages)]
        if parsed and parsed[0][0] == SYSTEM:
            first = text_only(parsed[0][1], f"{key}[0]", "a system message")
            if system not in (None, "", first):
                raise RowProblem("bad_row", "the row has both 'system' and a system message")
            system = first
            parsed = parsed[1:]
            offset = 1
        else:
            offset = 0
        turns = pair_turns(parsed, key, offset)
        images, numbered = number_images(turns, row_images, key)
        meta = {k: v for k, v in value.items() if k not in ROW_KEYS}
        if system:
            check_text(system, "the system message")
            meta[SYSTEM] = system
        return ChatRow(row_id, tuple(numbered), tuple(images), meta or None)

    def _message(self, message: Any, where: str) -> tuple[str, list[str | PendingImage]]:
        if not isinstance(message, dict):
            raise RowProblem("bad_row", f"{where} is not an object")
        if "from" in message and "value" in message:
            raw_role, content = message["from"], message["value"]
        elif "role" in message and "content" in message:
            if not self.content_parts:
                raise RowProblem(
                    "wrong_format",
                    f"{where} is a role/content message (ShareGPT / OpenAI messages): "
                    f"convert this file with phi3v convert {self.other_source}",
                )
            raw_role, content = message["role"], message["content"]
        else:
            raise RowProblem("bad_row", f"{where} has neither from/value nor role/content")
        role = raw_role.lower() if isinstance(raw_role, str) else None
        role = ROLES.get(role, role) if role is not None else None
        if role not in ("user", "assistant", SYSTEM):
            raise RowProblem(
                "unknown_role",
                f"{where} is from {raw_role!r}: only human/user, gpt/assistant and a first "
                "system message are supported (no tool calls or observations)",
            )
        return role, self._content(content, where)

    def _content(self, content: Any, where: str) -> list[str | PendingImage]:
        if content is None:
            return []
        if isinstance(content, str):
            return split_tokens(content)
        if isinstance(content, list) and self.content_parts:
            return parse_parts(content, where)
        if isinstance(content, list):
            raise RowProblem(
                "wrong_format",
                f"{where} has content parts (OpenAI messages): convert this file with "
                f"phi3v convert {self.other_source}",
            )
        raise RowProblem("bad_row", f"{where}: the text must be a string, got {content!r:.80}")

    # Images

    def import_image(self, ref: ImageRef, output: OutputContext) -> ImportedImage | ImageFailure:
        """Check and store one image; a failure names the reason (never raised)."""
        options: ChatOptions = self.options
        folder = options.image_folder
        assert folder is not None  # plan() checked it
        text = ref.text
        url = _URL_RE.match(text)
        if text[:5].lower() == "data:":
            data = _data_url_bytes(text)
            if isinstance(data, ImageFailure):
                return data
            return import_image_bytes(output, data, CONTENT_DIR, "data URL", options.deep_check)
        if url is not None and url.group(1).lower() != "file":
            scheme = url.group(1).lower()
            why = (
                "phi3v never downloads: download the image and give its local path"
                if scheme in ("http", "https")
                else "not a local file"
            )
            return ImageFailure("image_remote", f"{text} is a {scheme}:// URL: {why}")
        if url is not None:
            text = urllib.parse.unquote(urllib.parse.urlparse(text).path)
        if not (os.path.isabs(text) or _WINDOWS_PATH_RE.match(text)):
            rel = PurePosixPath(text.replace("\\", "/"))
            if ".." not in rel.parts and rel.name:
                stem = str(rel.with_suffix("")) if rel.suffix else str(rel)
                return import_image_file(
                    output, folder / rel, stem, options.link, options.deep_check
                )
            text = os.path.normpath(os.path.join(folder, text))
        data = _read_file(Path(text))
        if isinstance(data, ImageFailure):
            return data
        return import_image_bytes(output, data, CONTENT_DIR, text, options.deep_check)


def _read_file(path: Path) -> bytes | ImageFailure:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return ImageFailure("image_missing", f"{path} does not exist")
    except IsADirectoryError:
        return ImageFailure("image_not_file", f"{path} is a directory, not an image file")
    except OSError as exc:
        return ImageFailure("image_unreadable", f"{path} cannot be read: {exc.strerror}")


def _data_url_bytes(text: str) -> bytes | ImageFailure:
    header, comma, payload = text.partition(",")
    if not comma:
        return ImageFailure("bad_image_ref", "a data: URL without ',' before its data")
    try:
        if header.lower().endswith(";base64"):
            return base64.b64decode(payload, validate=True)
        return urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        return ImageFailure("bad_image_ref", f"a data: URL that does not decode: {exc}")
