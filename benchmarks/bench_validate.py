"""Throughput and peak memory of `phi3v validate` (prints a table; asserts nothing).

Cases, each in a fresh process so that peak RSS is its own:
  records, no images   JSON + schema + record rules + path rules, no image touched (1 process)
  records, images      the same plus image checks (a pool of shared 640x480 JPEGs, each
                       checked once) and the estimated token length of every record
  images only          one record per distinct image: image checks per second
Targets (issue 2): >= 50,000 records/s on one core without images; peak RSS < 300 MB at
1M records; >= 2,000 header-checked images/s per core.

Usage: python benchmarks/bench_validate.py [--sizes 100000 1000000] [--images 2000]
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

_QUESTIONS = [
    "What is the person in this video doing?",
    "What is the title of the document shown in the image?",
    "Is the statement true for the pair of images: there are exactly two dogs on the left.",
    "Describe the scene in one sentence.",
]


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
        name = f"{i % 100:02d}/img_{i:06d}.jpg"
        (root / name).parent.mkdir(exist_ok=True)
        image.save(root / name, quality=90)
        names.append(name)
    return names


def write_records(path: Path, count: int, images: list[str]) -> int:
    """`count` records of about 600 bytes, 1-2 images each from `images`; returns bytes."""
    rng = random.Random(1)
    with path.open("wb") as stream:
        lines = []
        for i in range(count):
            n = 1 + (i % 2)
            turn = {
                "images": [images[(i * 7 + k) % len(images)] for k in range(n)],
                "user": _QUESTIONS[i % len(_QUESTIONS)] + f" (item {i})",
                "assistant": "Applying eye makeup in front of a mirror." if i % 3 else "True",
            }
            record = {
                "id": f"train-{i:09d}",
                "source": "bench",
                "conversations": [turn],
                "meta": {
                    "label": rng.randrange(101),
                    "frames": [0, 25, 50, 75],
                    "video": f"v_{i}.avi",
                },
            }
            lines.append(orjson.dumps(record))
            if len(lines) == 10_000:
                stream.write(b"\n".join(lines) + b"\n")
                lines = []
        if lines:
            stream.write(b"\n".join(lines) + b"\n")
    return path.stat().st_size


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from phi3v_data.validate import ValidateOptions, validate_paths
path, root, images, workers = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
options = ValidateOptions(image_root=Path(root), check_images=images, workers=workers)
start, cpu = time.perf_counter(), time.process_time()
report = validate_paths([Path(path)], options)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({
    "wall": wall, "cpu": cpu,
    "records": report.stats.records, "problems": len(report.problems),
    "checked": report.stats.image_files_checked,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def run_case(path: Path, root: Path, images: bool, workers: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(root), "1" if images else "0", str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--images", type=int, default=2000, help="distinct image files")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_validate_") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "images"
        start = time.perf_counter()
        names = write_images(root, args.images)
        print(
            f"wrote {len(names)} JPEGs 640x480 in {time.perf_counter() - start:.1f} s", flush=True
        )
        unique = tmp_path / "unique.jsonl"
        write_records(unique, len(names), names)  # record i uses image i (and i+1)
        for workers in sorted({1, args.workers}):
            result = run_case(unique, root, True, workers)
            rows.append(("images only", len(names), workers, result, "images"))
        for size in args.sizes:
            path = tmp_path / f"records_{size}.jsonl"
            start = time.perf_counter()
            size_bytes = write_records(path, size, names)
            print(
                f"wrote {size:,} records ({size_bytes / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s",
                flush=True,
            )
            rows.append(("records, no images", size, 1, run_case(path, root, False, 1), "records"))
            rows.append(
                (
                    "records, images",
                    size,
                    args.workers,
                    run_case(path, root, True, args.workers),
                    "records",
                )
            )
            path.unlink()
    header = (
        f"{'case':<20} {'items':>10} {'workers':>7} {'wall s':>8} {'items/s':>10}"
        f" {'main CPU us/item':>16} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for case, _, workers, r, unit in rows:
        count = r["checked"] if unit == "images" else r["records"]
        print(
            f"{case:<20} {count:>10,} {workers:>7} {r['wall']:>8.2f} {count / r['wall']:>10,.0f}"
            f" {1e6 * r['cpu'] / count:>16.1f} {r['rss_mb']:>11.0f}"
        )
    print(
        "items/s is wall-clock (noisy on a shared machine); CPU is the validating process's own"
        " (with workers > 1 the image checks run in pool processes, not counted there)."
    )


if __name__ == "__main__":
    main()
