"""The validator library on real files: every problem code, stats, tokens, inputs, the pool."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from PIL import Image

from phi3v_data.images import check_image
from phi3v_data.records import Record, Turn
from phi3v_data.sample_data import (
    DEFECT_COUNTS,
    DEMO_MAX_LENGTH,
    DEMO_NUM_CROPS,
    write_defective_dataset,
    write_sample_dataset,
)
from phi3v_data.validate import (
    CODES,
    InputFile,
    ValidateOptions,
    discover_inputs,
    validate_paths,
)
from phi3v_data.validate import formats as validate_formats
from phi3v_data.validate import images as validate_images

# The project's shared/ folder sits beside the repository (CI lays a copy there too).
TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "shared/assets/phi-3.5-vision-instruct"
DEMO = ValidateOptions(max_length=DEMO_MAX_LENGTH, num_crops=DEMO_NUM_CROPS, workers=1)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("validate")
    clean = write_sample_dataset(out / "sample")
    return clean, write_defective_dataset(clean, out / "sample_defects")


def _write_lines(path: Path, records: list[dict | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"".join(r if isinstance(r, bytes) else orjson.dumps(r) + b"\n" for r in records)
    )
    return path


def _record(record_id: str, images: list[str] | None = None, **turn: str) -> dict:
    return {
        "id": record_id,
        "source": "t",
        "conversations": [
            {
                "images": images or [],
                "user": turn.get("user", "Q?"),
                "assistant": turn.get("assistant", "A."),
            }
        ],
    }


def test_clean_sample_has_no_problems_and_exact_stats(datasets: tuple[Path, Path]) -> None:
    report = validate_paths([datasets[0]], DEMO)
    assert report.problems == [] and report.ok and report.passed(strict=True)
    stats = report.stats
    assert (stats.files, stats.records, stats.valid_records, stats.turns) == (2, 18, 18, 19)
    assert (stats.images, stats.image_files_checked) == (26, 17)
    assert dict(stats.images_per_record) == {0: 1, 1: 12, 2: 3, 4: 2}
    assert dict(stats.image_formats) == {"JPEG": 14, "PNG": 3}
    assert stats.resolutions["160x120"] == 8
    assert len(stats.token_lengths) == 18 and not stats.tokens_exact
    # Four 4:3 frames at num_crops=4 cost 4 * 757 image tokens plus the text.
    assert 4 * 757 < stats.token_percentiles()["max"] < 4 * 757 + 40


# The record each code is planted in (`sample_data.write_defective_dataset`).
PLANTED = {
    "schema": {"d-schema-missing", "d-schema-type"},
    "duplicate_id": {"train-0000"},
    "path_invalid": {"d-path-nul"},
    "path_absolute": {"d-path-absolute"},
    "path_not_normalized": {"d-path-normalise"},
    "path_escapes_root": {"d-path-dotdot", "d-path-symlink"},
    "image_missing": {"d-image-missing"},
    "image_not_file": {"d-image-directory"},
    "image_empty": {"d-image-empty"},
    "image_not_image": {"d-image-html"},
    "image_format_mismatch": {"d-image-png-as-jpg"},
    "image_corrupt": {"d-image-truncated-jpeg", "d-image-truncated-png"},
    "image_too_large": {"d-image-bomb"},
    "tags_mismatch": {"d-tags"},
    "user_blank": {"d-user-blank"},
    "assistant_empty": {"d-assistant-empty"},
    "special_token_in_text": {"d-control-token"},
    "foreign_image_tag": {"d-llava-tag"},
    "too_many_images": {"d-too-many-images"},
    "token_budget": {"d-too-many-images", "d-over-budget"},
}


def test_every_planted_defect_is_reported_with_its_place(datasets: tuple[Path, Path]) -> None:
    report = validate_paths([datasets[1]], DEMO)
    assert report.counts_by_code() == {c: n for c, n in DEFECT_COUNTS.items() if n}
    for problem in report.problems:
        assert (problem.severity, problem.hint) == (
            CODES[problem.code].severity,
            CODES[problem.code].hint,
        )
    for code, ids in PLANTED.items():
        assert {p.record_id for p in report.problems if p.code == code} == ids, code
    by_code = {p.code: p for p in reversed(report.problems)}  # the first of each code
    train = str(datasets[1] / "sample_train.jsonl")
    assert (by_code["bad_json"].file, by_code["bad_json"].line) == (train, 16)
    assert (by_code["bad_utf8"].line, by_code["blank_line"].line) == (17, 18)
    assert by_code["duplicate_id"].message.endswith("sample_train.jsonl:1")
    assert by_code["image_missing"].field == "conversations[0].images[0]"
    assert by_code["schema"].field == "(record)"
    budget = next(p for p in report.problems if p.record_id == "d-over-budget").message
    assert "+ 9084 image tokens from 12 images at num_crops=4), over --max-length 8192" in budget
    assert by_code["file_unreadable"].file.endswith("unreadable.jsonl")
    assert by_code["manifest_missing_file"].field == "splits.val.file"
    assert report.errors == 26 and report.warnings == 5 and not report.ok


def test_codes_not_planted_in_the_sample(tmp_path: Path) -> None:
    long_line = _record("long", user="x" * 500)
    path = _write_lines(tmp_path / "d.jsonl", [_record("a"), long_line, _record("b")])
    options = ValidateOptions(check_images=False, max_line_bytes=200)
    report = validate_paths([path], options)
    assert [(p.code, p.line) for p in report.problems] == [("line_too_long", 2)]
    assert report.stats.records == 2
    converted = tmp_path / "converted"
    _write_lines(converted / "x_train.jsonl", [_record("a")])
    (converted / "manifest.json").write_text("{not json")
    report = validate_paths([converted], ValidateOptions(check_images=False))
    assert [p.code for p in report.problems] == ["manifest_invalid"]
    (converted / "manifest.json").write_text('{"splits": {"train": {"records": 1}}}')
    report = validate_paths([converted], ValidateOptions(check_images=False))
    assert [(p.code, p.field) for p in report.problems] == [("manifest_invalid", "splits")]
    assert report.stats.records == 1
    assert set(CODES) == {c for c, n in DEFECT_COUNTS.items() if n} | {
        "line_too_long",
        "manifest_invalid",
        "json_array",  # test_json_array_*
        "foreign_format",  # test_foreign_formats_*
    }


def test_inference_only_split_allows_empty_answers(datasets: tuple[Path, Path]) -> None:
    test_file = datasets[0] / "sample_test.jsonl"
    alone = validate_paths([test_file], DEMO)
    assert [p.code for p in alone.problems] == ["assistant_empty"] * 3
    allowed = ValidateOptions(allow_empty_assistant=True, workers=1)
    assert validate_paths([test_file], allowed).problems == []
    inputs = discover_inputs([datasets[0]])
    assert [(i.path.name, i.inference_only) for i in inputs] == [
        ("sample_test.jsonl", True),
        ("sample_train.jsonl", False),
    ]
    assert {i.image_root for i in inputs} == {datasets[0] / "images"}


def test_discover_inputs_usage_errors(tmp_path: Path) -> None:
    single = _write_lines(tmp_path / "a.jsonl", [_record("a")])
    assert discover_inputs([single]) == [InputFile(single, tmp_path / "images", False)]
    assert discover_inputs([single], image_root=tmp_path)[0].image_root == tmp_path
    with pytest.raises(FileNotFoundError):
        discover_inputs([tmp_path / "missing.jsonl"])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match=r"no \*\.jsonl"):
        discover_inputs([tmp_path / "empty_dir"])


def test_duplicate_ids_across_files_name_the_first(tmp_path: Path) -> None:
    first = _write_lines(tmp_path / "a.jsonl", [_record("x"), _record("y")])
    bad_schema_dup = {"id": "y", "source": 3, "conversations": []}
    second = _write_lines(tmp_path / "b.jsonl", [_record("z"), _record("x"), bad_schema_dup])
    report = validate_paths([first, second], ValidateOptions(check_images=False))
    duplicates = [(p.file, p.line, p.message) for p in report.problems if p.code == "duplicate_id"]
    assert duplicates == [
        (str(second), 2, f"id 'x' is already used at {first}:1"),
        (str(second), 3, f"id 'y' is already used at {first}:2"),
    ]


def test_ids_per_folder_allow_an_id_in_another_data_set(tmp_path: Path) -> None:
    # train -d A -d B: each folder is a data set; an id repeats across them, not within one.
    a = _write_lines(tmp_path / "A" / "a.jsonl", [_record("x"), _record("y")])
    a2 = _write_lines(tmp_path / "A" / "a2.jsonl", [_record("y")])
    b = _write_lines(tmp_path / "B" / "b.jsonl", [_record("x")])
    options = ValidateOptions(check_images=False)

    def duplicates(report) -> list[tuple[str, int]]:
        return [(p.file, p.line) for p in report.problems if p.code == "duplicate_id"]

    assert duplicates(validate_paths([a, a2, b], options, ids_per_folder=True)) == [(str(a2), 1)]
    assert duplicates(validate_paths([a, a2, b], options)) == [(str(a2), 1), (str(b), 1)]


def test_warnings_fail_only_when_strict(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "a.jsonl", [_record("a"), b"\n", _record("b")])
    report = validate_paths([path], ValidateOptions(check_images=False))
    assert [(p.code, p.severity, p.line) for p in report.problems] == [("blank_line", "warning", 2)]
    assert report.ok and report.passed() and not report.passed(strict=True)


def test_no_images_mode_touches_no_image(datasets: tuple[Path, Path]) -> None:
    report = validate_paths([datasets[1]], ValidateOptions(check_images=False))
    codes = set(report.counts_by_code())
    assert not {c for c in codes if c.startswith("image_")} and "token_budget" not in codes
    assert {"path_absolute", "path_escapes_root", "duplicate_id", "schema"} <= codes
    assert report.stats.image_files_checked == 0 and not report.stats.token_lengths


def _one_image_dataset(tmp_path: Path, size: tuple[int, int]) -> Path:
    (tmp_path / "images").mkdir()
    Image.new("RGB", size, "white").save(tmp_path / "images" / "a.png")
    record = Record("r", "t", (Turn("What colour is it?", "White.", ("a.png",)),))
    return _write_lines(tmp_path / "d.jsonl", [record.to_json_line()])


@pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").exists(), reason="no tokenizer asset")
def test_exact_token_budget_with_the_real_tokenizer(tmp_path: Path) -> None:
    path = _one_image_dataset(tmp_path, (320, 240))
    exact = ValidateOptions(tokenizer=TOKENIZER_DIR, num_crops=4, workers=1)
    report = validate_paths([path], exact)
    # <s> + "<|user|>\n" (3) + 757 image tokens + <s> (after every image) +
    # "\nWhat colour is it?<|end|>\n<|assistant|>\n" (11) + "White.<|end|>\n<|endoftext|>" (6),
    # as tokenizer.json splits them.
    lengths = list(report.stats.token_lengths)
    assert report.stats.tokens_exact and lengths == [1 + 3 + 757 + 1 + 11 + 6]
    length = report.stats.token_lengths[0]
    at_limit = ValidateOptions(tokenizer=TOKENIZER_DIR, max_length=length, workers=1)
    assert validate_paths([path], at_limit).problems == []
    over = validate_paths([path], ValidateOptions(tokenizer=TOKENIZER_DIR, max_length=length - 1))
    assert [p.code for p in over.problems] == ["token_budget"]
    assert f"sample is {length} tokens" in over.problems[0].message


@pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").exists(), reason="no tokenizer asset")
def test_estimate_errs_slightly_high(datasets: tuple[Path, Path]) -> None:
    exact = validate_paths([datasets[0]], ValidateOptions(tokenizer=TOKENIZER_DIR, workers=1))
    estimate = validate_paths([datasets[0]], ValidateOptions(workers=1))
    pairs = list(zip(estimate.stats.token_lengths, exact.stats.token_lengths, strict=True))
    assert len(pairs) == 18 and all(0 <= e - x <= 10 for e, x in pairs), pairs


def test_num_crops_changes_image_tokens(tmp_path: Path) -> None:
    path = _one_image_dataset(tmp_path, (500, 500))
    four = validate_paths([path], ValidateOptions(num_crops=4)).stats.token_lengths[0]
    sixteen = validate_paths([path], ValidateOptions(num_crops=16)).stats.token_lengths[0]
    assert sixteen - four == 2509 - 757


def test_options_reject_usage_errors() -> None:
    with pytest.raises(ValueError, match="num_crops"):
        ValidateOptions(num_crops=0)
    with pytest.raises(ValueError, match="image sizes"):
        ValidateOptions(check_images=False, max_length=100)
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        ValidateOptions(tokenizer=Path("/nonexistent"))


def test_process_pool_gives_the_same_report(
    datasets: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_process = validate_paths([datasets[1]], DEMO)
    monkeypatch.setattr(validate_images, "_BATCH_RECORDS", 4)
    monkeypatch.setattr(validate_images, "_CHUNK_IMAGES", 3)
    pooled = validate_paths([datasets[1]], ValidateOptions(max_length=DEMO_MAX_LENGTH, workers=2))
    assert pooled.problems == in_process.problems
    assert list(pooled.stats.token_lengths) != [] and sorted(pooled.stats.token_lengths) == sorted(
        in_process.stats.token_lengths
    )


def test_shared_images_are_checked_once(tmp_path: Path) -> None:
    path = _one_image_dataset(tmp_path, (64, 64))
    line = path.read_bytes()
    path.write_bytes(b"".join(line.replace(b'"r"', f'"r{i}"'.encode()) for i in range(50)))
    report = validate_paths([path], ValidateOptions(workers=1))
    assert report.problems == [] and report.stats.image_files_checked == 1
    assert report.stats.images == 50 and report.stats.resolutions == {"64x64": 1}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_image_check_reads_sizes_of_every_format(tmp_path: Path, fmt: str) -> None:
    name = f"a.{fmt.lower()}"
    Image.new("RGB", (30, 20), "red").save(tmp_path / name, format=fmt)
    for deep in (False, True):
        check = check_image(str(tmp_path), name, deep=deep)
        assert (check.code, check.width, check.height, check.format) == (None, 30, 20, fmt)
        assert check.warning is None


def test_flipped_png_byte_is_caught(tmp_path: Path) -> None:
    Image.new("RGB", (40, 40), "blue").save(tmp_path / "a.png")
    data = bytearray((tmp_path / "a.png").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "a.png").write_bytes(bytes(data))
    assert check_image(str(tmp_path), "a.png").code == "image_corrupt"


def test_pixel_limit_is_an_option(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    check = check_image(str(tmp_path), "a.png", max_pixels=9_999)
    assert (check.code, check.width) == ("image_too_large", 100)


def test_json_report_lists_every_problem(datasets: tuple[Path, Path]) -> None:
    report = validate_paths([datasets[1]], DEMO)
    data = orjson.loads(report.to_json())
    assert len(data["problems"]) == len(report.problems) == 31
    assert set(data["problems"][0]) == {
        "code",
        "severity",
        "file",
        "line",
        "record_id",
        "field",
        "message",
        "hint",
    }
    assert data["counts_by_code"] == report.counts_by_code()
    assert data["stats"]["records"] == report.stats.records and data["ok"] is False
    assert data["stats"]["tokens"]["samples"] == len(report.stats.token_lengths)


NO_IMAGES = ValidateOptions(check_images=False)
LLAVA = {
    "id": "llava-1",
    "image": "coco/000000033471.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus?"},
        {"from": "gpt", "value": "White and red."},
        {"from": "human", "value": "What feature can be seen on the back of the bus?"},
        {"from": "gpt", "value": "An advertisement."},
    ],
}
SHAREGPT = {
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "<image>What is in the picture?"},
        {"role": "assistant", "content": "A cat."},
    ],
    "images": ["pics/cat.jpg"],
}
OPENAI_PARTS = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "a.jpg"}},
                {"type": "text", "text": "Q?"},
            ],
        },
        {"role": "assistant", "content": "A."},
    ]
}


def _only_problem(path: Path, options: ValidateOptions = NO_IMAGES):
    report = validate_paths([path], options)
    assert len(report.problems) == 1, [(p.code, p.line, p.message) for p in report.problems]
    return report, report.problems[0]


def test_json_array_pretty_printed_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    # A leading blank line too: its warning would only add noise to a file that is not JSONL.
    path.write_bytes(b"\n" + orjson.dumps([_record("a"), _record("b")], option=orjson.OPT_INDENT_2))
    assert len(path.read_bytes().splitlines()) > 14
    report, problem = _only_problem(path)
    assert (problem.code, problem.severity, problem.file, problem.line) == (
        "json_array",
        "error",
        str(path),
        None,
    )
    assert problem.message == (
        "the file is one JSON array of 2 records, not JSONL: JSONL needs one JSON object per"
        f" line. Rewrite it: jq -c '.[]' {path} > {tmp_path / 'data.jsonl'}"
    )
    assert problem.hint == CODES["json_array"].hint and "python -c" in problem.hint
    assert not report.ok and report.stats.records == 0


def test_json_array_on_one_line_is_one_problem(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "data.jsonl", [[_record("a"), _record("b"), _record("c")]])
    report, problem = _only_problem(path)
    assert problem.code == "json_array" and problem.line is None
    assert problem.message.startswith("the file is one JSON array of 3 records, not JSONL")
    # The output name never overwrites the input, which jq would truncate first.
    assert problem.message.endswith(f"> {tmp_path / 'data-lines.jsonl'}")
    assert report.stats.records == 1  # the one line holds a JSON value


def test_json_array_broken_or_too_large_to_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trailing_comma = tmp_path / "broken.json"
    trailing_comma.write_bytes(b'[\n  {"id": "a"},\n  {"id": "b"},\n]\n')
    _, problem = _only_problem(trailing_comma)
    assert problem.code == "json_array"
    assert "starts like a JSON array (and is not valid JSON either: trailing comma" in (
        problem.message
    )
    assert "at line 3, column 14)" in problem.message
    # Over the parse limit the first two lines decide: the file is never loaded.
    monkeypatch.setattr(validate_formats, "_ARRAY_PARSE_BYTES", 10)
    per_line = tmp_path / "per_line.json"
    per_line.write_bytes(b"[" + b",\n".join(orjson.dumps(_record(i)) for i in "abc") + b"]\n")
    _, problem = _only_problem(per_line)
    assert problem.code == "json_array"
    assert problem.message.startswith("the file starts like a JSON array, not JSONL")


def test_jsonl_that_only_starts_with_a_bracket_is_read_line_by_line(tmp_path: Path) -> None:
    arrays = _write_lines(tmp_path / "arrays.jsonl", [[1], [_record("a")], _record("b")])
    report = validate_paths([arrays], NO_IMAGES)
    assert {(p.code, p.line) for p in report.problems} == {("schema", 1), ("schema", 2)}
    broken_first = _write_lines(tmp_path / "broken.jsonl", [b"[oops\n", _record("a")])
    report = validate_paths([broken_first], NO_IMAGES)
    assert [(p.code, p.line) for p in report.problems] == [("bad_json", 1)]
    assert report.stats.valid_records == 1


def test_json_array_of_llava_records_names_the_converter(tmp_path: Path) -> None:
    path = tmp_path / "llava_instruct.json"
    path.write_bytes(orjson.dumps([LLAVA, LLAVA], option=orjson.OPT_INDENT_2))
    _, problem = _only_problem(path)
    assert problem.code == "json_array"
    assert problem.message.endswith(
        "Its records look like LLaVA ('conversations' of from/value turns and 'image'): then"
        f" convert the result with phi3v convert llava {tmp_path / 'llava_instruct.jsonl'} -o OUT"
    )


@pytest.mark.parametrize(
    ("record", "converter", "looks_like"),
    [
        (LLAVA, "llava", "LLaVA ('conversations' of from/value turns and 'image')"),
        (SHAREGPT, "sharegpt", "ShareGPT / OpenAI messages ('messages' of role/content turns)"),
        (OPENAI_PARTS, "sharegpt", "ShareGPT / OpenAI messages"),
    ],
)
def test_foreign_formats_are_one_problem_per_record(
    tmp_path: Path, record: dict, converter: str, looks_like: str
) -> None:
    path = _write_lines(tmp_path / "foreign.jsonl", [record])
    report, problem = _only_problem(path)
    assert (problem.code, problem.severity, problem.line, problem.field) == (
        "foreign_format",
        "error",
        1,
        None,
    )
    assert problem.record_id == record.get("id")
    assert f"record looks like {looks_like}" in problem.message
    assert problem.message.endswith(f"convert the file: phi3v convert {converter} {path} -o OUT")
    assert "'The record format'" in problem.hint
    assert report.stats.records == 1 and report.stats.valid_records == 0


def test_foreign_formats_leave_other_records_alone(tmp_path: Path) -> None:
    not_llava = {"id": "n", "source": "s", "conversations": [{"from": "human"}]}
    path = _write_lines(
        tmp_path / "mixed.jsonl", [_record("a"), LLAVA, SHAREGPT, not_llava, _record("b")]
    )
    report = validate_paths([path], NO_IMAGES)
    assert [(p.code, p.line) for p in report.problems if p.code != "schema"] == [
        ("foreign_format", 2),
        ("foreign_format", 3),
    ]
    assert {p.line for p in report.problems if p.code == "schema"} == {4}
    assert report.stats.valid_records == 2
