"""Throughput and peak memory of `phi3v validate`, beside plain reference loops (a table).

The file: `--records` records of about 870 bytes in a temporary directory, shaped like
converted data: 3 in 4 UCF-101 clips (8 frames, a class list in the question, `meta` with
the label and frame indices), the rest NLVR2 image pairs and DocVQA pages (1-2 images), a
second turn on every fifth record. Cases, each round in a fresh process so that peak RSS
is its own:
  validate --no-images      `validate_paths(check_images=False)`: JSON, schema, record and
                            path rules, duplicate ids (one process)
  orjson + jsonschema       reference: `orjson.loads` and `jsonschema`'s `is_valid` per line
  orjson + fastjsonschema   reference: the same with the compiled schema
  validate, images          with `--images N`: the image checks (N shared 640x480 JPEGs,
                            each checked once, in a pool of `--workers`) and token budget
Rounds run the cases interleaved and the table keeps each case's best round (the CPU is
shared); records/s is per CPU-second of the validating process (image checks in the pool
are not counted there), wall s is that round's clock time.
Target (#14): >= 200,000 records/s per CPU-second without images; peak RSS flat in the
record count (the duplicate-id index keeps 16 bytes per record): compare --records sizes.

Usage: python benchmarks/bench_validate.py [--records 300000] [--rounds 3] [--images 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

CLASSES = [
    "ApplyEyeMakeup",
    "ApplyLipstick",
    "Archery",
    "BabyCrawling",
    "BalanceBeam",
    "BandMarching",
    "BaseballPitch",
    "Basketball",
    "BasketballDunk",
    "BenchPress",
    "Biking",
    "Billiards",
    "BlowDryHair",
    "BlowingCandles",
    "BodyWeightSquats",
    "Bowling",
]
_CLIP_QUESTION = (
    "Classify the video into one of the following classes: "
    + ", ".join(CLASSES)
    + ". Answer with the class name only."
)
_PAIR_QUESTION = "Is the statement true for the pair of images: there are exactly two dogs."
_PAGE_QUESTION = "What is the date written at the top of the letter on this page?"
_ANSWERS = ["True", "March 14, 1998", "The report of the finance committee, page two."]


def write_images(root: Path, count: int) -> list[str]:
    from PIL import Image, ImageDraw

    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    base = Image.radial_gradient("L").resize((640, 480)).convert("RGB")
    names = []
    for i in range(count):
        image = base.copy()
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y, r = rng.randrange(640), rng.randrange(480), rng.randrange(10, 120)
            draw.ellipse(
                (x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in "rgb")
            )
        name = image_name(i)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name, quality=90)
        names.append(name)
    return names


def image_name(i: int) -> str:
    return f"ucf101/v_{CLASSES[i // 8 % len(CLASSES)]}_g{i // 8:05d}/frame_{i % 8:04d}.jpg"


def record(i: int, names: list[str]) -> dict:
    """Record `i`: a clip (8 frames) 3 times in 4, else a pair or a page; images from `names`."""
    if i % 4:
        label = CLASSES[i % len(CLASSES)]
        frames = [names[(i * 8 + k) % len(names)] for k in range(8)]
        turn = {"images": frames, "user": _CLIP_QUESTION, "assistant": label}
        meta = {
            "label": label,
            "video": f"v_{label}_g{i // 7 % 25 + 1:02d}_c{i % 7 + 1:02d}.avi",
            "frame_indices": [0, 23, 47, 71, 95, 119, 143, 166],
            "fps": 25.0,
            "split": "trainlist01",
            "source_path": f"UCF-101/{label}/v_{label}_g{i // 7 % 25 + 1:02d}_c{i % 7 + 1:02d}.avi",
            "duration_s": round(6.68 + i % 7 * 0.4, 2),
        }
    elif i % 8 == 0:
        pair = [names[i % len(names)], names[(i + 1) % len(names)]]
        turn = {"images": pair, "user": _PAIR_QUESTION, "assistant": "True"}
        meta = {"identifier": f"dev-{i}-0-1", "left_image": pair[0], "right_image": pair[1]}
        meta["sentence"] = "There are exactly two dogs in the two pictures combined."
    else:
        turn = {"images": [names[i % len(names)]], "user": _PAGE_QUESTION, "assistant": "1998"}
        meta = {"question_id": i, "answers": _ANSWERS, "doc_id": f"ffbf{i:08d}"}
    conversations = [turn]
    if i % 5 == 0:
        follow = {"images": [], "user": "Explain your answer in one sentence.", "assistant": ""}
        follow["assistant"] = _ANSWERS[i % len(_ANSWERS)]
        conversations.append(follow)
    return {"id": f"bench-{i:09d}", "source": "bench", "conversations": conversations, "meta": meta}


def write_records(path: Path, count: int, names: list[str]) -> int:
    """`count` records (`record`) to `path`; returns the file size in bytes."""
    with path.open("wb") as stream:
        lines = []
        for i in range(count):
            lines.append(orjson.dumps(record(i, names)))
            if len(lines) == 10_000:
                stream.write(b"\n".join(lines) + b"\n")
                lines = []
        if lines:
            stream.write(b"\n".join(lines) + b"\n")
    return path.stat().st_size


# Peak RSS of this process: VmHWM, since ru_maxrss keeps the parent's peak across exec.
_PEAK_RSS = """
import resource
def peak_rss_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
# Each case prints one JSON line: records, problems, CPU and wall seconds, peak RSS.
_VALIDATE = (
    _PEAK_RSS
    + """
import json, sys, time
from pathlib import Path
from phi3v_data.validate import ValidateOptions, validate_paths
path, root, images, workers = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
options = ValidateOptions(image_root=Path(root), check_images=images, workers=workers)
start, cpu = time.perf_counter(), time.process_time()
report = validate_paths([Path(path)], options)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({
    "records": report.stats.records, "problems": len(report.problems),
    "cpu": cpu, "wall": wall, "rss_mb": peak_rss_mb(),
}))
"""
)
_REFERENCE = (
    _PEAK_RSS
    + """
import json, sys, time
import orjson
from phi3v_data.schema import load_schema
path, kind = sys.argv[1], sys.argv[2]
if kind == "jsonschema":
    from jsonschema import Draft202012Validator
    is_valid = Draft202012Validator(load_schema()).is_valid
else:
    import fastjsonschema
    check = fastjsonschema.compile(load_schema())
    def is_valid(value):
        try:
            check(value)
        except fastjsonschema.JsonSchemaException:
            return False
        return True
start, cpu = time.perf_counter(), time.process_time()
records = invalid = 0
with open(path, "rb") as stream:
    for line in stream:
        records += 1
        invalid += not is_valid(orjson.loads(line))
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({
    "records": records, "problems": invalid, "cpu": cpu, "wall": wall, "rss_mb": peak_rss_mb(),
}))
"""
)


def run_child(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[300_000])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument(
        "--images", type=int, default=0, help="distinct JPEGs for the images case (0: skip it)"
    )
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the orjson + jsonschema loops"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_validate_") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "images"
        if args.images:
            start = time.perf_counter()
            names = write_images(root, args.images)
            print(f"wrote {len(names)} JPEGs 640x480 in {time.perf_counter() - start:.1f} s")
        else:
            names = [image_name(i) for i in range(2000)]  # never opened
        for size in args.records:
            path = tmp_path / f"records_{size}.jsonl"
            start = time.perf_counter()
            size_bytes = write_records(path, size, names)
            print(
                f"wrote {size:,} records of {size_bytes / size:.0f} bytes"
                f" ({size_bytes / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s",
                flush=True,
            )
            cases = {"validate --no-images": (_VALIDATE, str(path), str(root), "0", "1")}
            if not args.no_reference:
                cases["orjson + jsonschema"] = (_REFERENCE, str(path), "jsonschema")
                cases["orjson + fastjsonschema"] = (_REFERENCE, str(path), "fastjsonschema")
            if args.images:
                workers = str(args.workers)
                cases["validate, images"] = (_VALIDATE, str(path), str(root), "1", workers)
            best: dict[str, dict] = {}
            for round_ in range(args.rounds):
                for case, (code, *case_args) in cases.items():
                    result = run_child(code, *case_args)
                    print(
                        f"  round {round_ + 1} {case}: {result['records'] / result['cpu']:,.0f}"
                        " records/s per CPU-second",
                        flush=True,
                    )
                    if case not in best or result["cpu"] < best[case]["cpu"]:
                        best[case] = result
            rows += [(case, size, best[case]) for case in cases]
            path.unlink()
    header = (
        f"{'case':<24} {'records':>9} {'problems':>8} {'records/s per CPU-s':>19}"
        f" {'CPU us/record':>13} {'wall s':>7} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for case, size, r in rows:
        print(
            f"{case:<24} {size:>9,} {r['problems']:>8,} {r['records'] / r['cpu']:>19,.0f}"
            f" {1e6 * r['cpu'] / r['records']:>13.2f} {r['wall']:>7.2f} {r['rss_mb']:>11.0f}"
        )
    print(
        f"best of {args.rounds} interleaved rounds per case; CPU is the measuring process's"
        " own (with images, the pool's processes are not counted)."
    )


if __name__ == "__main__":
    main()
