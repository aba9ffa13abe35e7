"""Time and peak memory of `phi3v report` (prints a table; asserts nothing).

A converted directory per size: `bench_train.jsonl` (90 %) and `bench_val.jsonl` (10 %),
records like UCF-101 clips (8 frames, `meta.frame_indices`, a class label) and NLVR2
pairs, drawing on a pool of shared 320x240 JPEGs. Cases, each in a fresh process so that
peak RSS is its own:
  validate   `validate_paths` alone: the part of the report that reads every record
  report     `build_report` with the default sample (48 per split): validation + the
             sampling pass + thumbnails of the sampled records + plots + the page
CPU s and peak RSS are the main process's (the validator's image-check pool runs under a
forkserver, outside this process's children).
Goal (issue 9): bounded memory and time on 100k records; only sampled images decoded.

Usage: python benchmarks/bench_report.py [--sizes 10000 100000] [--images 800]
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

CLASSES = ["ApplyEyeMakeup", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching"]


def write_images(root: Path, count: int) -> list[str]:
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    base = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    names = []
    for i in range(count):
        image = base.copy()
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y, r = rng.randrange(320), rng.randrange(240), rng.randrange(10, 60)
            colour = tuple(rng.randrange(256) for _ in "rgb")
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        name = f"{i % 50:02d}/frame_{i:06d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name, quality=85)
        names.append(name)
    return names


def _record(i: int, split: str, names: list[str]) -> dict:
    if i % 4:  # a clip: 8 frames
        frames = [names[(i * 8 + k) % len(names)] for k in range(8)]
        label = CLASSES[i % len(CLASSES)]
        user = "Classify the video into one of the following classes: " + ", ".join(CLASSES) + "."
        turn = {"images": frames, "user": user, "assistant": label}
        meta = {
            "label": label,
            "frame_indices": [k * 12 for k in range(8)],
            "timestamps": [k * 0.48 for k in range(8)],
        }
        return {
            "id": f"{split}-{i:010d}",
            "source": "ucf101",
            "conversations": [turn],
            "meta": meta,
        }
    pair = [names[i % len(names)], names[(i + 1) % len(names)]]
    truth = "True" if i % 3 else "False"
    user = 'Given the left and right images, does the statement "two dogs" hold true? Answer yes or no.'
    turn = {"images": pair, "user": user, "assistant": "Yes." if truth == "True" else "No."}
    return {
        "id": f"{split}-{i:010d}",
        "source": "nlvr2",
        "conversations": [turn],
        "meta": {"label": truth},
    }


def write_dataset(out: Path, count: int, names: list[str]) -> int:
    """A converted directory with `count` records; returns the JSONL bytes."""
    splits = {"train": count - count // 10, "val": count // 10}
    manifest = {"source": "bench", "splits": {}}
    total = 0
    for split, n in splits.items():
        path = out / f"bench_{split}.jsonl"
        with path.open("wb") as stream:
            for start in range(0, n, 10_000):
                stream.write(
                    b"".join(
                        orjson.dumps(_record(i, split, names)) + b"\n"
                        for i in range(start, min(n, start + 10_000))
                    )
                )
        manifest["splits"][split] = {"file": path.name, "records": n, "inference_only": False}
        total += path.stat().st_size
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))
    return total


_CHILD = """
import json, resource, sys, time
from pathlib import Path
case, data, out, max_length = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
start, cpu = time.perf_counter(), time.process_time()
if case == "validate":
    from phi3v_data.validate import ValidateOptions, validate_paths
    report = validate_paths([data], ValidateOptions(max_length=max_length))
    records, cards, page = report.stats.records, 0, 0
else:
    from phi3v_data.report import ReportOptions, build_report
    summary = build_report([data], out, ReportOptions(max_length=max_length))
    records, cards, page = summary.records, summary.cards, summary.bytes
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "wall": wall, "cpu": cpu + children.ru_utime + children.ru_stime,
    "records": records, "cards": cards, "page": page,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def run_case(case: str, data: Path, out: Path, max_length: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, case, str(data), str(out), str(max_length)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--images", type=int, default=800, help="distinct image files")
    parser.add_argument(
        "--max-length", type=int, default=8192, help="token budget (4096: every clip is over it)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        names = write_images(tmp_path / "images", args.images)
        print(
            f"wrote {len(names)} JPEGs 320x240 in {time.perf_counter() - start:.1f} s", flush=True
        )
        for size in args.sizes:
            data = tmp_path / f"data_{size}"
            data.mkdir()
            os.symlink(tmp_path / "images", data / "images")
            size_bytes = write_dataset(data, size, names)
            print(f"wrote {size:,} records ({size_bytes / 1e6:.0f} MB of JSONL)", flush=True)
            for case in ("validate", "report"):
                rows.append(
                    (
                        case,
                        size,
                        run_case(case, data, tmp_path / f"report_{size}.html", args.max_length),
                    )
                )
    header = f"{'case':<9} {'records':>8} {'wall s':>7} {'main CPU s':>10} {'records/s':>10} {'cards':>6} {'page MB':>8} {'peak RSS MB':>11}"
    print(header)
    print("-" * len(header))
    for case, _, r in rows:
        page = f"{r['page'] / 2**20:.1f}" if r["page"] else "-"
        print(
            f"{case:<9} {r['records']:>8,} {r['wall']:>7.1f} {r['cpu']:>10.1f} {r['records'] / r['wall']:>10,.0f}"
            f" {r['cards'] or '-':>6} {page:>8} {r['rss_mb']:>11.0f}"
        )


if __name__ == "__main__":
    main()
