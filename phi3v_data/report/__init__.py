"""`phi3v report`: a self-contained HTML page showing what the model will see.

Data flow (one module per step, `build.build_report` runs them in order):
  `inputs` (the files, their splits from `phi3v_data.dataset_dir`, and the validator's
  problems and stats, reused as they are) -> `sampling` (one streaming pass over the JSONL:
  a seeded reservoir sample per split, the records of the first problems, per-split/source
  counts and `labels`) -> `cards` (the chosen records) -> `thumbnails` (the chosen records'
  images only, resolved with the validator's path rules; broken files become placeholders)
  -> `plots` (matplotlib) -> `page` (one Jinja2 template with autoescaping) -> `report.html`
  (written atomically).

Memory is bounded by the sample size, not the dataset: the validator streams, the
sampling pass keeps `samples` records per split, and only the chosen images are decoded.
The page is self-contained (thumbnails as JPEG data URIs within a byte budget) unless
`assets_dir` is given, and it loads nothing from the network; a Content-Security-Policy
allows only its own inline script, so even a templating slip could not run dataset text.
No module here knows a source by name: labels, clips and image pairs are read from the
record's own `meta` (`label`, `frame_indices`, `left_image`/`right_image`).
"""

from phi3v_data.report.build import build_report
from phi3v_data.report.cards import Card, ImageView, TurnView, make_card, make_cards
from phi3v_data.report.inputs import SplitFile, run_validation, split_files
from phi3v_data.report.labels import LABEL_KEYS, record_label
from phi3v_data.report.options import (
    DEFAULT_MAX_BYTES,
    ReportOptions,
    ReportSummary,
    UnknownSplitError,
)
from phi3v_data.report.page import ProblemGroup, render_page
from phi3v_data.report.plots import Plot, make_plots
from phi3v_data.report.sampling import (
    DatasetPass,
    SampledRecord,
    problem_record_lines,
    scan_dataset,
)
from phi3v_data.report.thumbnails import attach_images

__all__ = [
    "DEFAULT_MAX_BYTES",
    "LABEL_KEYS",
    "Card",
    "DatasetPass",
    "ImageView",
    "Plot",
    "ProblemGroup",
    "ReportOptions",
    "ReportSummary",
    "SampledRecord",
    "SplitFile",
    "TurnView",
    "UnknownSplitError",
    "attach_images",
    "build_report",
    "make_card",
    "make_cards",
    "make_plots",
    "problem_record_lines",
    "record_label",
    "render_page",
    "run_validation",
    "scan_dataset",
    "split_files",
]
