"""`phi3v report`: sampling, labels, escaping, placeholders, size budget, CLI, a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest
from markupsafe import escape
from PIL import Image
from typer.testing import CliRunner

from phi3v_cli.app import app
from phi3v_data.report import (
    ReportOptions,
    SampledRecord,
    build_report,
    make_card,
    record_label,
    run_validation,
    scan_dataset,
    split_files,
)
from phi3v_data.validate import discover_inputs

# Each payload, if it ever ran, would mark the page; the browser test looks for the marks.
HOSTILE_USER = '<script>document.body.setAttribute("data-pwned", "script")</script> hello'
HOSTILE_ANSWER = "\"><img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"
HOSTILE_URL = "javascript:document.body.setAttribute('data-pwned','url')"
HOSTILE_ID = "</article><script>document.title='pwned'</script>"
HOSTILE_LABEL = r"$\frac{1}{$ broken mathtext"  # matplotlib must draw it as text
HOSTILE_PATH = '"><svg onload=alert(1)>.jpg'


def _picture(size: tuple[int, int], colour: str) -> Image.Image:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    return Image.blend(image, Image.new("RGB", size, colour), 0.6)


def _save(root: Path, rel: str, image: Image.Image, fmt: str = "JPEG") -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
    return rel


def _record(record_id: str, source: str, turns: list[dict], meta: dict | None = None) -> dict:
    record = {"id": record_id, "source": source, "conversations": turns}
    if meta is not None:
        record["meta"] = meta
    return record


def _turn(user: str, assistant: str, images: list[str] | tuple = ()) -> dict:
    return {"images": list(images), "user": user, "assistant": assistant}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def build_mixed_dataset(out: Path) -> Path:
    """A converted directory with one record of each kind and a few broken ones."""
    images = out / "images"
    frames = [
        _save(images, f"train/Juggling/v_Juggling_g01_c01.{i}.jpg", _picture((160, 120), c))
        for i, c in enumerate(["red", "orange", "gold", "green", "teal", "blue", "navy", "purple"])
    ]
    left = _save(images, "nlvr2/dev-1-0-img0.png", _picture((200, 150), "green"), "PNG")
    right = _save(images, "nlvr2/dev-1-0-img1.png", _picture((150, 200), "blue"), "PNG")
    page = _save(images, "docvqa/page.png", _picture((300, 400), "white"), "PNG")
    meme = _save(images, "memes/01234.png", _picture((220, 220), "pink"), "PNG")
    truncated = images / "broken/truncated.jpg"
    truncated.parent.mkdir(parents=True)
    buffer = _picture((300, 300), "red")
    buffer.save(truncated, "JPEG")
    truncated.write_bytes(truncated.read_bytes()[:400])
    (images / "broken/not_image.jpg").write_bytes(b"<html>404 Not Found</html>")
    outside = out / "outside.jpg"  # a real image, outside the image root: must never be read
    _picture((64, 64), "black").save(outside, "JPEG")
    (images / "broken/escape.jpg").symlink_to(outside)

    train = [
        _record(
            "train-0000000000",
            "ucf101",
            [
                _turn(
                    "Classify the video into one of the following classes: Juggling, Rowing.",
                    "Juggling",
                    frames,
                )
            ],
            {
                "label": "Juggling",
                "frame_indices": [0, 12, 25, 37, 50, 62, 75, 87],
                "timestamps": [i * 0.5 for i in range(8)],
            },
        ),
        _record(
            "dev-1-0-0",
            "nlvr2",
            [
                _turn(
                    "The first image is the image on the left. Does it hold? Answer yes or no.",
                    "Yes.",
                    [left, right],
                )
            ],
            {"label": "True", "left_image": "dev-1-0-img0.png", "right_image": "dev-1-0-img1.png"},
        ),
        _record(
            "docvqa-49153",
            "docvqa",
            [
                _turn("What is the date?\nAnswer briefly.", "1 May", [page]),
                _turn("Who signed?\nAnswer briefly.", "J. Smith"),
            ],
            {"answers": ["1 May", "May 1"]},
        ),
        _record(
            "memes-01234",
            "hateful-memes",
            [_turn("Is this meme hateful?\nAnswer yes or no.", "No.", [meme])],
        ),
        _record(
            HOSTILE_ID,
            "<style>body{display:none}</style>",
            [_turn(HOSTILE_USER, HOSTILE_ANSWER, [HOSTILE_PATH])],
            {"url": HOSTILE_URL, "label": HOSTILE_LABEL},
        ),
        _record("broken-truncated", "docvqa", [_turn("Q?", "A", ["broken/truncated.jpg"])]),
        _record("broken-not-image", "docvqa", [_turn("Q?", "A", ["broken/not_image.jpg"])]),
        _record("broken-escape", "docvqa", [_turn("Q?", "A", ["broken/escape.jpg"])]),
        _record("broken-dotdot", "docvqa", [_turn("Q?", "A", ["../outside.jpg"])]),
    ]
    val = [
        _record(
            f"val-{i}",
            "hateful-memes",
            [_turn("Is this meme hateful?\nAnswer yes or no.", answer, [meme])],
            {"label": int(answer == "Yes.")},
        )
        for i, answer in enumerate(["Yes.", "No.", "No."])
    ]
    _write_jsonl(out / "mix_train.jsonl", train)
    _write_jsonl(out / "mix_val.jsonl", val)
    splits = {
        "train": {"file": "mix_train.jsonl", "records": len(train), "inference_only": False},
        "val": {"file": "mix_val.jsonl", "records": len(val), "inference_only": False},
    }
    (out / "manifest.json").write_bytes(orjson.dumps({"source": "mix", "splits": splits}))
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mixed_dataset(tmp_path_factory.mktemp("mixed") / "out")


@pytest.fixture(scope="module")
def mixed_page(mixed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("page") / "report.html"
    summary = build_report(
        [mixed], out, ReportOptions(workers=1, max_length=4096, command="phi3v report x")
    )
    assert summary.path == out and summary.bytes == out.stat().st_size
    return out, out.read_text("utf-8")


def _cards(page: str) -> dict[str, str]:
    """card anchor -> its HTML."""
    return dict(
        re.findall(r'<article class="card[^"]*" id="(card-\d+)">(.*?)</article>', page, re.S)
    )


def _text_only_file(path: Path, count: int, source: str = "text") -> Path:
    _write_jsonl(
        path,
        [_record(f"{path.stem}-{i}", source, [_turn(f"q {i}", f"a {i}")]) for i in range(count)],
    )
    return path


# ---------------------------------------------------------------------------------------
# Sampling and counts


def test_sampling_is_deterministic_per_seed_and_split(tmp_path: Path) -> None:
    train = _text_only_file(tmp_path / "t_train.jsonl", 300)
    val = _text_only_file(tmp_path / "t_val.jsonl", 40)
    files = split_files(discover_inputs([train, val]))
    assert [f.split for f in files] == ["train", "val"]

    def lines(seed: int, chosen=files) -> dict[str, list[int]]:
        scan = scan_dataset(chosen, 10, seed, set())
        return {split: [r.line for r in records] for split, records in scan.samples.items()}

    first = lines(0)
    assert first == lines(0)
    assert len(first["train"]) == 10 and first["train"] == sorted(first["train"])
    assert len(set(first["train"])) == 10 and all(1 <= n <= 300 for n in first["train"])
    assert len(first["val"]) == 10
    assert lines(1)["train"] != first["train"]
    # A split's sample does not depend on the other splits being there.
    assert lines(0, files[:1])["train"] == first["train"]
    # Fewer records than samples: every record, in file order.
    assert (
        scan_dataset(files[1:], 100, 0, set()).samples["val"]
        == scan_dataset(files[1:], 100, 5, set()).samples["val"]
    )
    assert [r.line for r in scan_dataset(files[1:], 100, 0, set()).samples["val"]] == list(
        range(1, 41)
    )


def test_sampling_reaches_the_whole_file(tmp_path: Path) -> None:
    """The reservoir is uniform: over seeds, records from every part of the file appear."""
    train = _text_only_file(tmp_path / "t_train.jsonl", 200)
    files = split_files(discover_inputs([train]))
    seen = Counter()
    for seed in range(20):
        for record in scan_dataset(files, 10, seed, set()).samples["train"]:
            seen[(record.line - 1) // 50] += 1
    assert sorted(seen) == [0, 1, 2, 3]
    assert min(seen.values()) >= 25  # 50 expected per quarter


def test_counts_agree_with_the_validator(mixed: Path) -> None:
    files, report = run_validation([mixed], ReportOptions(workers=1))
    scan = scan_dataset(files, 4, 0, set())
    assert sum(scan.records_per_split_source.values()) == report.stats.records == 12
    assert scan.records_per_split_source[("val", "hateful-memes")] == 3
    assert {split: len(records) for split, records in scan.samples.items()} == {
        "train": 4,
        "val": 3,
    }
    assert scan.labels["ucf101"] == {"Juggling": Counter(train=1)}
    assert scan.labels["nlvr2"] == {"True · Yes": Counter(train=1)}
    # Labels come from meta alone: the train meme without one is not counted.
    assert scan.labels["hateful-memes"] == {"0 · No": Counter(val=2), "1 · Yes": Counter(val=1)}
    assert "docvqa" not in scan.labels


def test_record_label_rules() -> None:
    ucf = _record("a", "ucf101", [_turn("q", "Juggling")], {"label": "Juggling"})
    assert record_label(ucf) == "Juggling"
    assert (
        record_label(_record("a", "nlvr2", [_turn("q", "Yes.")], {"label": True})) == "true · Yes"
    )
    assert (
        record_label(_record("a", "hateful_memes", [_turn("q", "No.")], {"label": 0})) == "0 · No"
    )
    assert (
        record_label(_record("a", "x", [_turn("q", "a long free answer " * 3)], {"class": 3}))
        == "3"
    )
    # One rule for every source: no meta label, no label, whatever the answer or source.
    assert record_label(_record("a", "hateful-memes", [_turn("q", " Yes. ")])) is None
    assert record_label(_record("a", "ucf101", [_turn("q", "Juggling")])) is None
    assert record_label(_record("a", "any", [_turn("q", " Yes. ")], {"label": 1})) == "1 · Yes"
    assert record_label(_record("a", "any", [_turn("q", "x")], {"category": "cat"})) == "cat · x"
    assert record_label(_record("a", "hateful_memes", [_turn("q", "")], {"id": 5})) is None
    assert (
        record_label(_record("a", "docvqa", [_turn("q", "1 May")], {"answers": ["1 May"]})) is None
    )
    two_turns = [_turn("q", "Yes."), _turn("q", "No.")]
    assert record_label(_record("a", "nlvr2", two_turns)) is None
    assert record_label(_record("a", "nlvr2", two_turns, {"label": "False"})) == "False"


def test_image_captions_come_from_meta() -> None:
    """Frames, a left/right pair or numbers: read from the record's meta, never its source."""

    def captions(source: str, meta: dict | None, count: int = 2) -> list[str]:
        record = _record("a", source, [_turn("q", "a", [f"{i}.jpg" for i in range(count)])], meta)
        card = make_card("card-1", SampledRecord("train", "f", 1, record), "/nowhere", [], False)
        return [image.caption for turn in card.turns for image in turn.images]

    pair = {"left_image": "l.png", "right_image": "r.png"}
    assert captions("nlvr2", None) == ["image 1", "image 2"]
    assert captions("any", pair) == ["left", "right"]
    assert captions("any", pair, 3) == ["image 1", "image 2", "image 3"]
    frames = {"frame_indices": [3, 9], "timestamps": [0.1, 0.3], **pair}
    assert captions("any", frames) == ["frame 3 · 0.10 s", "frame 9 · 0.30 s"]


def test_split_names_from_manifest_or_file_name(tmp_path: Path) -> None:
    (tmp_path / "hateful-memes_dev_seen.jsonl").write_bytes(b"")
    (tmp_path / "plain.jsonl").write_bytes(b"")
    files = split_files(
        discover_inputs([tmp_path / "hateful-memes_dev_seen.jsonl", tmp_path / "plain.jsonl"])
    )
    assert [f.split for f in files] == ["dev_seen", "plain"]
    (tmp_path / "manifest.json").write_bytes(
        orjson.dumps({"splits": {"seen-dev": {"file": "hateful-memes_dev_seen.jsonl"}}})
    )
    files = split_files(discover_inputs([tmp_path / "hateful-memes_dev_seen.jsonl"]))
    assert [f.split for f in files] == ["seen-dev"]


# ---------------------------------------------------------------------------------------
# The page


def test_page_shows_cards_plots_and_problems(mixed_page: tuple[Path, str]) -> None:
    _, page = mixed_page
    cards = _cards(page)
    assert len(cards) == 12  # every record: fewer than 48 per split
    assert page.count('<figure class="plot"') == 5
    for anchor in ("plot-splits", "plot-labels", "plot-images", "plot-resolutions", "plot-tokens"):
        assert f'id="{anchor}"' in page
    # The clip is one contact-sheet row captioned with meta's frame indices and timestamps.
    clip = next(c for c in cards.values() if "train-0000000000" in c)
    assert 'class="images clip"' in clip
    assert clip.count('<figure class="image">') == 8
    assert "frame 12 · 0.50 s" in clip and "frame 87 · 3.50 s" in clip
    # NLVR2: left then right.
    pair = next(c for c in cards.values() if "dev-1-0-0" in c)
    assert pair.index(">left · 200x150<") < pair.index(">right · 150x200<")
    # DocVQA: both turns, meta folded.
    doc = next(c for c in cards.values() if "docvqa-49153" in c)
    assert "What is the date?\nAnswer briefly." in doc and "J. Smith" in doc
    assert '<details class="meta"><summary>meta</summary>' in doc and "May 1" in doc
    # Header numbers come from the validator.
    assert "phi3v report x" in page and ">12</b><span>records (12 schema-valid)" in page


def test_problems_are_grouped_and_linked_to_cards(
    mixed: Path, mixed_page: tuple[Path, str]
) -> None:
    _, page = mixed_page
    _, report = run_validation([mixed], ReportOptions(workers=1, max_length=4096))
    counts = report.counts_by_code()
    assert {"image_corrupt", "image_not_image", "path_escapes_root", "image_missing"} <= set(counts)
    for code, count in counts.items():
        assert f'<details class="code" id="code-{code}"' in page
        assert re.search(
            rf"<code>{code}</code> <span class=\"sev-\w+\">\w+</span> × {count}\b", page
        )
    cards = _cards(page)
    for problem in report.problems:
        assert problem.line is not None
        where = f'title="{problem.file}">{Path(problem.file).name}:{problem.line}</span>'
        anchor = next(a for a, c in cards.items() if where in c)
        assert f'href="#{anchor}"' in page
        assert str(escape(problem.message)) in cards[anchor]


def test_hostile_text_is_escaped(mixed_page: tuple[Path, str]) -> None:
    _, page = mixed_page
    assert page.count("<script") == 1  # only the page's own, with the nonce
    assert re.search(r"<script nonce=\"[\w-]+\">", page)
    assert "&lt;script&gt;document.body.setAttribute" in page
    assert "&lt;/article&gt;&lt;script&gt;document.title=" in page
    assert "&#34;&gt;&lt;img src=x onerror=" in page
    assert "&lt;style&gt;body{display:none}&lt;/style&gt;" in page
    assert "<img src=x" not in page and "<svg" not in page and "<style>body{display" not in page
    # No link or image source from the data, and nothing from the network.
    assert not re.search(r"(?:src|href)=\"(?!data:image/(?:jpeg|png);base64,|#)", page)
    assert not re.search(r"https?://|//cdn|@import|url\(", page)
    assert "default-src 'none'" in page


def test_broken_images_get_placeholders_with_reasons(
    mixed: Path, mixed_page: tuple[Path, str]
) -> None:
    _, page = mixed_page
    cards = _cards(page)

    def placeholder(record_id: str) -> str:
        card = next(c for c in cards.values() if f'<span class="id">{record_id}</span>' in c)
        assert "<img" not in card
        return re.search(
            r'<div class="placeholder"[^>]*><b>no image</b>(.*?)</div>', card, re.S
        ).group(1)

    assert "does not decode" in placeholder("broken-truncated")
    assert "is not a JPEG/PNG" in placeholder("broken-not-image")
    assert "symlink leading outside the image root" in placeholder("broken-escape")
    assert "contains &#39;..&#39;" in placeholder("broken-dotdot")
    assert "does not exist" in placeholder(str(escape(HOSTILE_ID)))


def test_size_budget_is_honoured(tmp_path: Path) -> None:
    import random

    out = tmp_path / "noisy"
    rng = random.Random(0)
    records = []
    for i in range(24):  # incompressible images: every thumbnail and full view is large
        rel = f"n/{i}.png"
        (out / "images/n").mkdir(parents=True, exist_ok=True)
        Image.frombytes("RGB", (900, 700), rng.randbytes(900 * 700 * 3)).save(
            out / "images" / rel, compress_level=1
        )
        records.append(_record(f"n-{i}", "noise", [_turn("What is this?", "Noise.", [rel])]))
    _write_jsonl(out / "noise_train.jsonl", records)

    budget = 2 * 1024 * 1024
    small = build_report([out], tmp_path / "small.html", ReportOptions(workers=1, max_bytes=budget))
    assert small.bytes <= budget
    assert any("full-size views left out" in line for line in small.left_out)
    page = (tmp_path / "small.html").read_text("utf-8")
    assert "full-size views left out" in page and page.count('<a class="zoom"') == 24
    large = build_report(
        [out], tmp_path / "large.html", ReportOptions(workers=1, max_bytes=64 * 1024 * 1024)
    )
    assert large.left_out == () and large.bytes > budget


def test_assets_dir_writes_linked_files(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "site" / "report.html"
    build_report(
        [mixed], out, ReportOptions(workers=1, assets_dir=tmp_path / "site" / "report_files")
    )
    page = out.read_text("utf-8")
    assert "data:image/jpeg" not in page
    links = re.findall(r'<img src="(report_files/thumbs/[0-9a-f]+\.jpg)"', page)
    assert len(links) == 8 + 2 + 1 + 1 + 3  # clip, pair, page, meme, val memes
    assert all((out.parent / link).is_file() for link in links)
    full = re.findall(r'href="(report_files/full/[0-9a-f]+\.jpg)"', page)
    with Image.open(out.parent / full[0]) as image:
        assert image.size == (160, 120)  # originals under 2048 px keep their size


def test_split_option_limits_the_report(mixed: Path, tmp_path: Path) -> None:
    summary = build_report(
        [mixed], tmp_path / "val.html", ReportOptions(workers=1, splits=("val",))
    )
    page = (tmp_path / "val.html").read_text("utf-8")
    assert summary.records == 3 and summary.cards == 3
    assert "Samples: val" in page and "Samples: train" not in page
    with pytest.raises(ValueError, match="no input file belongs to split"):
        build_report([mixed], tmp_path / "x.html", ReportOptions(workers=1, splits=("nope",)))


def test_bad_records_get_cards_when_not_sampled(tmp_path: Path) -> None:
    out = tmp_path / "many"
    records = [_record(f"r-{i}", "text", [_turn(f"q {i}", f"a {i}")]) for i in range(60)]
    records[57]["conversations"][0]["assistant"] = ""
    out.mkdir()
    _write_jsonl(out / "t_train.jsonl", records)
    summary = build_report([out], tmp_path / "r.html", ReportOptions(workers=1, samples=3, seed=1))
    page = (tmp_path / "r.html").read_text("utf-8")
    assert summary.cards == 4 and summary.errors == 1
    bad = page.split('id="bad-records"')[1]
    assert '<span class="id">r-57</span>' in bad and "assistant_empty" in bad


def test_defective_sample_dataset_renders(tmp_path: Path) -> None:
    from phi3v_data.sample_data import write_defective_dataset, write_sample_dataset

    clean = write_sample_dataset(tmp_path / "sample")
    defects = write_defective_dataset(clean, tmp_path / "sample_defects")
    summary = build_report(
        [defects], tmp_path / "d.html", ReportOptions(workers=1, max_length=8192)
    )
    page = (tmp_path / "d.html").read_text("utf-8")
    assert summary.errors > 10 and summary.cards == summary.records
    assert page.count('<div class="placeholder"') >= 8


# ---------------------------------------------------------------------------------------
# CLI


def test_cli_writes_the_page_and_prints_its_path(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        app, ["report", str(mixed), "--out", str(out), "--samples", "2", "-j", "1", "--open"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out.resolve())
    page = out.read_text("utf-8")
    assert len(_cards(page)) >= 4 and "--samples 2 --seed 0 --num-crops 4" in page


def test_cli_errors_say_what_is_wrong(tmp_path: Path) -> None:
    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["report", *args, "--out", str(out)])
        return result.exit_code, " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())

    out = tmp_path / "r.html"
    code, output = invoke(str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in output
    _text_only_file(tmp_path / "t_train.jsonl", 3)
    code, output = invoke(str(tmp_path / "t_train.jsonl"), "--split", "val")
    assert (
        code == 2
        and "Invalid value for --split" in output
        and "no input file belongs to split(s) val; splits: train" in output
    )
    assert not out.exists()


@pytest.fixture(autouse=True)
def _no_real_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--open` must not start a browser during tests."""
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda url: True)


# ---------------------------------------------------------------------------------------
# A real browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (`make browser` installs it with apt-get)")
    return path


def _run_chromium(args: list[str], profile: Path) -> str:
    result = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HOME": str(profile)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.browser
def test_page_in_a_real_browser(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_report([mixed], out, ReportOptions(workers=1, max_length=4096))
    dom = _run_chromium(["--dump-dom", out.as_uri()], tmp_path / "profile")

    # Our script ran (it marks the body when the page has loaded) and nothing injected did.
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-loaded="true"' in body and "data-pwned" not in body
    assert "<title>phi3v report:" in dom and "pwned</title>" not in dom
    assert "<svg" not in dom and not re.search(r"<img[^>]+src=\"x\"", dom)
    assert "&lt;script&gt;document.body.setAttribute" in dom
    # Every card, plot and thumbnail is there and decoded (natural width > 0).
    assert len(_cards(dom)) == 12
    widths = re.findall(r'<img[^>]*data-natural-width="(\d+)"', dom)
    plots = re.findall(r'<img src="data:image/png[^"]*"[^>]*data-natural-width="(\d+)"', dom)
    assert len(plots) == 5 and all(int(w) > 300 for w in plots)
    assert len(widths) == 5 + 15 and all(int(w) > 0 for w in widths)
    assert 'class="broken"' not in dom
    assert dom.count('<div class="placeholder"') == 5

    screenshot = Path(os.environ.get("PHI3V_TEST_ARTIFACTS", tmp_path)) / "report-screenshot.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    _run_chromium(
        ["--window-size=1400,2400", f"--screenshot={screenshot}", out.as_uri()],
        tmp_path / "profile",
    )
    with Image.open(screenshot) as image:
        assert image.size == (1400, 2400)
        assert len(set(image.convert("L").resize((64, 64)).getdata())) > 20  # not a blank page
    print(f"screenshot: {screenshot}")


@pytest.mark.browser
def test_assets_page_in_a_real_browser(mixed: Path, tmp_path: Path) -> None:
    """Thumbnails linked from --assets-dir load under the page's Content-Security-Policy."""
    out = tmp_path / "report.html"
    build_report([mixed], out, ReportOptions(workers=1, assets_dir=tmp_path / "assets"))
    dom = _run_chromium(["--dump-dom", out.as_uri()], tmp_path / "profile")
    thumbs = re.findall(r'<img src="assets/thumbs/[^"]+"[^>]*data-natural-width="(\d+)"', dom)
    assert len(thumbs) == 15 and all(int(w) > 0 for w in thumbs)
