"""A small generated dataset in the converted layout, and a copy with deliberate defects.

`python -m phi3v_data.sample_data OUT` writes `OUT/sample` (clean: real JPEG and PNG
files, single-image, two-image, video-frame, multi-turn and text-only records, an
inference-only split) and `OUT/sample_defects` (the same plus one instance of nearly every
problem `phi3v validate` reports). Used by `make demo`, the validator's tests and the
report's tests. Deterministic: the same bytes on every run.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import sys
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
from PIL import Image, ImageDraw

from phi3v_data.jsonl import atomic_write_bytes
from phi3v_data.records import Record, Turn

SOURCE = "sample"
# Options the defective copy is meant to be validated with (`make demo` uses them).
DEMO_MAX_LENGTH = 8192
DEMO_NUM_CROPS = 4

# Problems `validate_paths([OUT/sample_defects], ValidateOptions(max_length=DEMO_MAX_LENGTH,
# num_crops=DEMO_NUM_CROPS))` reports, by code. Every code except `line_too_long`
# (needs a 16 MB line) is here.
DEFECT_COUNTS: dict[str, int] = {
    "file_unreadable": 1,
    "file_empty": 1,
    "blank_line": 1,
    "bad_utf8": 1,
    "bad_json": 1,
    "schema": 2,
    "duplicate_id": 1,
    "too_many_images": 1,
    "user_blank": 1,
    "assistant_empty": 1,
    "tags_mismatch": 1,
    "special_token_in_text": 1,
    "foreign_image_tag": 1,
    "path_invalid": 1,
    "path_absolute": 1,
    "path_not_normalized": 1,
    "path_escapes_root": 2,
    "image_missing": 1,
    "image_not_file": 1,
    "image_empty": 1,
    "image_not_image": 1,
    "image_format_mismatch": 1,
    "image_corrupt": 2,
    "image_too_large": 1,
    "token_budget": 2,
    "manifest_invalid": 0,
    "manifest_missing_file": 1,
    "manifest_mismatch": 1,
}

_PHOTO_SIZES = [(320, 240), (240, 320), (300, 300), (400, 200), (256, 192), (200, 400)]
_COLOURS = ["tomato", "gold", "seagreen", "steelblue", "orchid", "sienna", "slategray"]


def _picture(size: tuple[int, int], seed: int, noise: bool = False) -> Image.Image:
    """A gradient with a few shapes; `noise` makes it incompressible (for truncation tests)."""
    rng = random.Random(seed)
    width, height = size
    if noise:
        return Image.frombytes("RGB", size, rng.randbytes(width * height * 3))
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = Image.new("L", size, rng.randrange(256))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(8, max(9, min(size) // 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.choice(_COLOURS))
    return image


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _write_image(root: Path, rel: str, image: Image.Image, fmt: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encode(image, fmt))


def _sample_records(images: Path) -> tuple[list[Record], list[Record]]:
    train: list[Record] = []
    for i, size in enumerate(_PHOTO_SIZES):
        rel = f"photos/photo_{i}.jpg"
        _write_image(images, rel, _picture(size, i), "JPEG")
        train.append(
            Record(
                f"train-{len(train):04d}",
                SOURCE,
                (
                    Turn(
                        "What is the largest shape in the picture?",
                        f"A circle, number {i}.",
                        (rel,),
                    ),
                ),
                {"size": list(size)},
            )
        )
    for i in range(3):
        rel = f"docs/page_{i}.png"
        _write_image(images, rel, _picture((200, 260), 100 + i), "PNG")
        train.append(
            Record(
                f"train-{len(train):04d}",
                SOURCE,
                (Turn("What is the title of this page?", f"Report {i}", (rel,)),),
                {"answers": [f"Report {i}", f"report {i}"]},
            )
        )
    for clip in range(2):
        frames = tuple(f"clips/clip_{clip}/frame_{k}.jpg" for k in range(4))
        for k, rel in enumerate(frames):
            _write_image(images, rel, _picture((160, 120), 200 + 10 * clip + k), "JPEG")
        train.append(
            Record(
                f"train-{len(train):04d}",
                SOURCE,
                (Turn("What is happening in this video?", ["Juggling", "Rowing"][clip], frames),),
                {"label": clip, "frame_indices": [0, 10, 20, 30]},
            )
        )
    for i in range(2):
        pair = (f"photos/photo_{i}.jpg", f"photos/photo_{i + 2}.jpg")
        user = "<|image_1|>\n<|image_2|>\nTrue or false: both images show a circle."
        train.append(Record(f"train-{len(train):04d}", SOURCE, (Turn(user, "True", pair),)))
    train.append(
        Record(
            f"train-{len(train):04d}",
            SOURCE,
            (
                Turn(
                    "Describe the first picture.",
                    "A gradient with circles.",
                    ("photos/photo_4.jpg",),
                ),
                Turn("<|image_2|>\nAnd this page?", "A report page.", ("docs/page_0.png",)),
            ),
        )
    )
    train.append(
        Record(f"train-{len(train):04d}", SOURCE, (Turn("Say hello without an image.", "Hello."),))
    )
    test = [
        Record(
            f"test-{i:04d}",
            SOURCE,
            (Turn("What is the title of this page?", "", (f"docs/page_{i}.png",)),),
            {"answers": [f"Report {i}"]},
        )
        for i in range(3)
    ]
    return train, test


def _write_jsonl(path: Path, lines: list[bytes]) -> str:
    data = b"".join(lines)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _manifest(splits: dict[str, dict[str, Any]]) -> bytes:
    from phi3v_data import __version__

    data = {
        "source": SOURCE,
        "tool_version": __version__,
        "options": {},
        "splits": splits,
        "skips": [],
    }
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_sample_dataset(out: Path) -> Path:
    """Write the clean sample as a converted directory at `out`; returns `out`."""
    out = Path(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    train, test = _sample_records(images)
    splits = {}
    for name, records, inference_only in (("train", train, False), ("test", test, True)):
        file = f"{SOURCE}_{name}.jsonl"
        digest = _write_jsonl(out / file, [r.to_json_line() for r in records])
        splits[name] = {
            "file": file,
            "records": len(records),
            "sha256": digest,
            "inference_only": inference_only,
            "skipped": {},
        }
    atomic_write_bytes(out / "manifest.json", _manifest(splits))
    return out


def _png_declaring(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header claims `width` x `height` (a decompression bomb's header)."""
    data = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8  # the IHDR chunk follows the 8-byte signature: length, type, data, CRC
    body = bytearray(data[ihdr + 8 : ihdr + 8 + 13])
    body[0:8] = struct.pack(">II", width, height)
    data[ihdr + 8 : ihdr + 8 + 13] = body
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)))
    return bytes(data)


def _defect(record_id: str, turns: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"id": record_id, "source": SOURCE, "conversations": turns}) + b"\n"


def _turn(
    user: str = "What is shown?", assistant: str = "A circle.", images: list[str] | None = None
) -> dict[str, Any]:
    return {
        "images": images if images is not None else ["photos/photo_0.jpg"],
        "user": user,
        "assistant": assistant,
    }


def write_defective_dataset(clean: Path, out: Path) -> Path:
    """Copy the clean sample at `clean` to `out` and break it in every way in `DEFECT_COUNTS`."""
    clean, out = Path(clean), Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(clean, out, symlinks=True)
    images = out / "images"
    broken = images / "broken"
    broken.mkdir()
    (broken / "empty.jpg").write_bytes(b"")
    (broken / "html.jpg").write_bytes(b"<html><body>404 Not Found</body></html>\n")
    (broken / "really_png.jpg").write_bytes(_encode(_picture((64, 48), 7), "PNG"))
    jpeg = _encode(_picture((320, 240), 8, noise=True), "JPEG")
    (broken / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = _encode(_picture((160, 120), 9, noise=True), "PNG")
    (broken / "truncated.png").write_bytes(png[: len(png) * 2 // 3])
    (broken / "bomb.png").write_bytes(_png_declaring(20_000, 20_000))
    (out / "outside.jpg").write_bytes(jpeg)
    (images / "escape.jpg").symlink_to(Path("..") / "outside.jpg")
    frames = [f"clips/clip_0/frame_{k % 4}.jpg" for k in range(12)]
    defects = [
        b'{"id": "d-json", "source": "sample", "conversations": [\n',
        b'{"id": "d-utf8", "source": "sample", "note": "\xff\xfe"}\n',
        b"\n",
        orjson.dumps({"id": "d-schema-missing", "source": SOURCE}) + b"\n",
        orjson.dumps(
            {
                "id": "d-schema-type",
                "source": SOURCE,
                "conversations": [{**_turn(), "images": "photos/photo_0.jpg"}],
            }
        )
        + b"\n",
        _defect("train-0000", [_turn()]),
        _defect("d-path-nul", [_turn(images=["photos/photo\u00000.jpg"])]),
        _defect("d-path-absolute", [_turn(images=["/etc/hostname"])]),
        _defect("d-path-normalise", [_turn(images=["photos//photo_0.jpg"])]),
        _defect("d-path-dotdot", [_turn(images=["../outside.jpg"])]),
        _defect("d-path-symlink", [_turn(images=["escape.jpg"])]),
        _defect("d-image-missing", [_turn(images=["photos/missing.jpg"])]),
        _defect("d-image-directory", [_turn(images=["photos"])]),
        _defect("d-image-empty", [_turn(images=["broken/empty.jpg"])]),
        _defect("d-image-html", [_turn(images=["broken/html.jpg"])]),
        _defect("d-image-png-as-jpg", [_turn(images=["broken/really_png.jpg"])]),
        _defect("d-image-truncated-jpeg", [_turn(images=["broken/truncated.jpg"])]),
        _defect("d-image-truncated-png", [_turn(images=["broken/truncated.png"])]),
        _defect("d-image-bomb", [_turn(images=["broken/bomb.png"])]),
        _defect(
            "d-tags",
            [
                _turn(
                    "<|image_2|> and <|image_1|>: same?",
                    images=["photos/photo_0.jpg", "photos/photo_1.jpg"],
                )
            ],
        ),
        _defect("d-user-blank", [_turn("   \n")]),
        _defect("d-assistant-empty", [_turn(assistant="")]),
        _defect("d-control-token", [_turn(assistant="Yes<|end|>")]),
        _defect("d-llava-tag", [_turn("<image>\nWhat is shown?")]),
        _defect("d-too-many-images", [_turn(images=["photos/photo_0.jpg"] * 70)]),
        _defect("d-over-budget", [_turn("What happens?", "Juggling.", frames)]),
    ]
    train = out / f"{SOURCE}_train.jsonl"
    _write_jsonl(train, [train.read_bytes(), *defects])
    (out / "empty.jsonl").write_bytes(b"")
    (out / "unreadable.jsonl").mkdir()  # a directory where a file should be
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    manifest["splits"]["val"] = {
        "file": f"{SOURCE}_val.jsonl",
        "records": 5,
        "inference_only": False,
    }
    atomic_write_bytes(
        out / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m phi3v_data.sample_data OUT", file=sys.stderr)
        return 2
    out = Path(args[0])
    clean = write_sample_dataset(out / "sample")
    defects = write_defective_dataset(clean, out / "sample_defects")
    print(f"wrote {clean} (clean) and {defects} (with deliberate defects)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
