"""`phi3v validate`: prove a dataset is trainable before a GPU is spent on it.

Stages, all streaming (memory flat in the file size but for the duplicate-id index, 16
bytes per record), one module each:
  `run` reads the JSONL lines: a typed msgspec decode (`shape`) parses a line and checks
  the schema in one step; a line it refuses is read as `iter_jsonl` reads it (UTF-8, JSON)
  and checked with the compiled schema, `jsonschema` explaining every error with its field
  -> `rules`: the record rules (image path rules, tags, turns, image count) as a list of
  small functions -> duplicate ids (`ids`) -> `images`: image checks in a process pool, in
  batches, each distinct file once (`phi3v_data.images.check_image`) -> `tokens`: the token
  budget from the prompt layout and the image sizes in the headers -> `report`: a
  `ValidationReport` with every problem and the stats.

Every problem has a code from `codes.CODES`, with its severity and a hint. Errors make a
dataset fail; warnings are reported but fail only under `--strict`.

Common mistakes get one clear problem instead of a flood (`formats`), found only on the
slow path (after a line or record has already failed): a whole file that is one JSON array
(`json_array`, one problem for the file) and records in another dataset's format such as
LLaVA or ShareGPT (`foreign_format`, one problem per record, naming the converter).
`inputs` finds the files of converted directories and reads their manifests; `options`
holds what to check (`ValidateOptions`).
"""

from phi3v_data.validate.codes import CODES, CodeInfo
from phi3v_data.validate.formats import foreign_format, json_array_message
from phi3v_data.validate.inputs import discover_inputs
from phi3v_data.validate.options import ValidateOptions
from phi3v_data.validate.report import (
    DatasetStats,
    InputFile,
    Problem,
    ValidationReport,
    iter_problem_examples,
)
from phi3v_data.validate.run import validate_paths
from phi3v_data.validate.tokens import ESTIMATE_BYTES_PER_TOKEN

__all__ = [
    "CODES",
    "ESTIMATE_BYTES_PER_TOKEN",
    "CodeInfo",
    "DatasetStats",
    "InputFile",
    "Problem",
    "ValidateOptions",
    "ValidationReport",
    "discover_inputs",
    "foreign_format",
    "iter_problem_examples",
    "json_array_message",
    "validate_paths",
]
