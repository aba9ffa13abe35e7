"""`build_report`: validate, sample, draw and write the page, one step per module.

inputs.run_validation      files and their splits, the validator's problems and stats
sampling.scan_dataset      one streaming pass: a seeded sample per split, the records
                           of the first problems, counts and labels
cards.make_cards           the chosen records as cards (text only)
plots.make_plots           matplotlib figures as PNG data URIs
thumbnails.attach_images   the cards' images, within the page's byte budget
page.render_page           one Jinja2 template -> `report.html`, written atomically
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from phi3v_data.jsonl import atomic_write_bytes
from phi3v_data.report.cards import make_cards
from phi3v_data.report.inputs import run_validation
from phi3v_data.report.options import ReportOptions, ReportSummary
from phi3v_data.report.page import human_bytes, page_context, problem_groups, render_page
from phi3v_data.report.plots import make_plots
from phi3v_data.report.sampling import problem_record_lines, scan_dataset
from phi3v_data.report.thumbnails import AssetWriter, attach_images

# Room kept for the page's text and plots when deciding which images fit the budget.
PAGE_RESERVE_BYTES = 512 * 1024


def build_report(paths: Sequence[str | Path], out: Path, options: ReportOptions) -> ReportSummary:
    """Validate, sample, draw and write the report page to `out`.

    Raises FileNotFoundError / ValueError for usage errors (a missing path, a directory
    without JSONL files, an unknown split); bad data never raises.
    """
    out = Path(out)
    files, report = run_validation(paths, options)
    bad_lines = problem_record_lines(report, options.bad_records)
    scan = scan_dataset(files, options.samples, options.seed, set(bad_lines))
    cards, anchors = make_cards(files, report, scan, bad_lines)

    plots = make_plots(report, scan, options.max_length)
    assets = AssetWriter(options.assets_dir, out) if options.assets_dir else None
    plot_bytes = sum(len(p.uri) for p in plots)
    budget = max(0, options.max_bytes - plot_bytes - PAGE_RESERVE_BYTES)
    left_out = attach_images(cards, budget, assets)
    hidden_problems = sum(
        max(0, count - options.examples_per_code) for count in report.counts_by_code().values()
    )
    if hidden_problems:
        left_out.append(
            f"{hidden_problems:,} problems beyond the first {options.examples_per_code} of each"
            " code are counted but not listed (`phi3v validate --format json --output FILE` lists them all)"
        )

    groups = problem_groups(report, anchors, options.examples_per_code)
    context = page_context(paths, options, files, report, scan, cards, plots, groups, left_out)
    html = render_page(context).encode("utf-8")
    atomic_write_bytes(out, html)
    out.chmod(0o644)  # a page to share, not a secret (the temporary file was 0600)
    if assets is None and len(html) > options.max_bytes:
        left_out.append(f"the page is {human_bytes(len(html))}, over the budget (long texts)")
    return ReportSummary(
        path=out,
        bytes=len(html),
        cards=len(cards),
        records=report.stats.records,
        errors=report.errors,
        warnings=report.warnings,
        left_out=tuple(left_out),
    )
