"""The page's plots: matplotlib figures drawn off-screen and embedded as PNG data URIs.

Records per split and source, labels per source (`phi3v_data.report.labels`), images per
record, image resolutions and token lengths; a plot without data is left out.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from phi3v_data.report.sampling import DatasetPass
from phi3v_data.validate import ValidationReport

LABELS_PLOTTED = 25  # most frequent labels drawn per source


@dataclass
class Plot:
    anchor: str
    title: str
    note: str
    uri: str


def _png_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plain(text: str, limit: int = 40) -> str:
    """Dataset text as a matplotlib label: shortened, and `$` not read as mathtext."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def make_plots(report: ValidationReport, scan: DatasetPass, max_length: int | None) -> list[Plot]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plots: list[Plot] = []
    with plt.rc_context({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False}):
        for build in (_plot_splits, _plot_labels, _plot_images_per_record, _plot_resolutions):
            plot = build(plt, report, scan)
            if plot is not None:
                plots.append(plot)
        tokens = _plot_tokens(plt, report, max_length)
        if tokens is not None:
            plots.append(tokens)
    return plots


def _finish(plt: Any, figure: Any, anchor: str, title: str, note: str = "") -> Plot:
    uri = _png_uri(figure)
    plt.close(figure)
    return Plot(anchor, title, note, uri)


def _plot_splits(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    counts = scan.records_per_split_source
    if not counts:
        return None
    splits = sorted({split for split, _ in counts})
    sources = sorted({source for _, source in counts})
    figure, axes = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(splits)))
    left = [0] * len(splits)
    for source in sources:
        values = [counts.get((split, source), 0) for split in splits]
        bars = axes.barh([_plain(s) for s in splits], values, left=left, label=_plain(source))
        axes.bar_label(
            bars, labels=[f"{v:,}" if v else "" for v in values], label_type="center", fontsize=8
        )
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.invert_yaxis()
    axes.set_xlabel("records")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(
        title="source", fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    return _finish(plt, figure, "plot-splits", "Records per split and source")


def _plot_labels(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    sources = [s for s in sorted(scan.labels) if scan.labels[s]]
    if not sources:
        return None
    shown = {
        s: sorted(scan.labels[s].items(), key=lambda kv: -sum(kv[1].values()))[:LABELS_PLOTTED]
        for s in sources
    }
    all_splits = sorted(
        {split for s in sources for _, per_split in shown[s] for split in per_split}
    )
    colours = {split: f"C{i % 10}" for i, split in enumerate(all_splits)}  # one colour per split
    heights = [1.0 + 0.25 * len(shown[s]) for s in sources]
    figure, axes_list = plt.subplots(
        len(sources),
        1,
        figsize=(6.4, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    notes = []
    for source, (axes,) in zip(sources, axes_list, strict=True):
        labels = shown[source]
        splits = sorted({split for _, per_split in labels for split in per_split})
        names = [_plain(label) for label, _ in labels]
        left = [0] * len(labels)
        for split in splits:
            values = [per_split.get(split, 0) for _, per_split in labels]
            axes.barh(names, values, left=left, label=_plain(split), color=colours[split])
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.invert_yaxis()
        axes.set_title(_plain(source), loc="left", fontsize=9)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(
            title="split", fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1)
        )
        hidden = len(scan.labels[source]) - len(labels)
        if hidden > 0:
            notes.append(f"{source}: {hidden} less frequent labels not shown")
    axes_list[-1][0].set_xlabel("records")
    figure.tight_layout()
    note = (
        "Label: meta.label (or class), with the answer when it says it differently"
        ' ("0 · No"); records without one are not counted. '
    )
    return _finish(plt, figure, "plot-labels", "Label distribution", note + "; ".join(notes))


def _plot_images_per_record(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    counts = report.stats.images_per_record
    if not counts:
        return None
    figure, axes = plt.subplots(figsize=(6.4, 2.6))
    keys = sorted(counts)
    bars = axes.bar([str(k) for k in keys], [counts[k] for k in keys], color="#4c72b0")
    axes.bar_label(bars, labels=[f"{counts[k]:,}" for k in keys], fontsize=8)
    axes.set_xlabel("images in the record")
    axes.set_ylabel("records")
    return _finish(plt, figure, "plot-images", "Images per record", "Schema-valid records.")


def _plot_resolutions(plt: Any, report: ValidationReport, scan: DatasetPass) -> Plot | None:
    resolutions = report.stats.resolutions
    if not resolutions:
        return None
    points = []
    for text, count in resolutions.items():
        width, _, height = text.partition("x")
        if width.isdigit() and height.isdigit():
            points.append((int(width), int(height), count))
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(5.2, 4.2))
    largest = max(c for _, _, c in points)
    axes.scatter(
        [p[0] for p in points],
        [p[1] for p in points],
        s=[12 + 200 * (c / largest) ** 0.5 for _, _, c in points],
        alpha=0.55,
        color="#dd8452",
        edgecolors="#8c4a1c",
    )
    axes.set_xlabel("width (px)")
    axes.set_ylabel("height (px)")
    for width, height, count in sorted(points, key=lambda p: -p[2])[:5]:
        axes.annotate(
            f"{width}x{height} ×{count:,}",
            (width, height),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=7,
            color="#57606a",
        )
    axes.set_xlim(0, max(p[0] for p in points) * 1.25)
    axes.set_ylim(0, max(p[1] for p in points) * 1.15)
    note = f"{sum(c for *_, c in points):,} distinct image files; point area grows with the count."
    return _finish(plt, figure, "plot-resolutions", "Image resolutions", note)


def _plot_tokens(plt: Any, report: ValidationReport, max_length: int | None) -> Plot | None:
    stats = report.stats
    if not stats.token_lengths:
        return None
    import numpy as np

    lengths = np.frombuffer(stats.token_lengths, dtype=np.uint32)
    figure, axes = plt.subplots(figsize=(6.4, 2.8))
    axes.hist(lengths, bins=min(60, max(5, len(np.unique(lengths)))), color="#55a868")
    axes.set_xlabel(f"tokens per sample (text + image tokens at num_crops={stats.num_crops})")
    axes.set_ylabel("records")
    kind = "exact (tokenizer)" if stats.tokens_exact else "estimated from text bytes"
    percentiles = stats.token_percentiles()
    note = f"Text tokens {kind}. " + ", ".join(f"{k} {v:,}" for k, v in percentiles.items())
    if max_length is not None:
        over = int((lengths > max_length).sum())
        axes.axvline(max_length, color="#c44e52", linestyle="--", linewidth=1.5)
        axes.annotate(
            f"--max-length {max_length}",
            (max_length, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            color="#c44e52",
            fontsize=8,
        )
        note += f"; {over:,} of {len(lengths):,} samples over --max-length {max_length}."
    return _finish(plt, figure, "plot-tokens", "Token lengths", note)
