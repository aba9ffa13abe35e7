"""Reading HF copies: split names, parquet and save_to_disk, List and Sequence specs, rows."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from converters.converter import ConversionError
from converters.hf import RowRef, find_hf_copy, iter_rows, read_row, split_name
from converters.samples.still_images import image_bytes, save_hf_copy


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("data/train-00000-of-00002.parquet", "train"),
        ("data/validation-00001-of-00002.parquet", "val"),
        ("default/test/0000.parquet", "test"),
        ("dev_seen.parquet", "dev_seen"),
    ],
)
def test_split_names(name: str, split: str) -> None:
    assert split_name(Path(name), {"validation": "val"}) == split


def _old_style_parquet(path: Path, rows: int) -> None:
    """A parquet file written by an older `datasets`: `Sequence` spec, small row groups."""
    cell = {"bytes": image_bytes(4, 4), "path": None}
    table = pa.table({"id": list(range(rows)), "imgs": [[cell, cell]] * rows})
    spec = {
        "id": {"dtype": "int64", "_type": "Value"},
        "imgs": {"feature": {"_type": "Image"}, "_type": "Sequence"},
    }
    meta = {b"huggingface": orjson.dumps({"info": {"features": spec}})}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path, row_group_size=3)


def test_parquet_sequence_spec_and_rows_across_row_groups(tmp_path: Path) -> None:
    _old_style_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", 10)
    splits = find_hf_copy(tmp_path, {})
    assert splits is not None and list(splits) == ["train"]
    train = splits["train"]
    assert train.image_list_columns == ("imgs",) and train.image_columns == ()
    rows = list(iter_rows(train, ["id"]))
    assert [values["id"] for _, values in rows] == list(range(10))
    ref = rows[7][0]
    assert ref == RowRef(str(train.files[0]), 7)
    cells = read_row(ref, ("imgs",))["imgs"]
    assert len(cells) == 2 and cells[0]["bytes"] == image_bytes(4, 4)
    assert read_row(RowRef(ref.file, 2), ("id",)) == {"id": 2}


def test_save_to_disk_dict_with_list_spec_and_class_labels(tmp_path: Path) -> None:
    from datasets import ClassLabel, Features, Image, List, Value

    features = Features(
        {"label": ClassLabel(names=["no", "yes"]), "pics": List(Image()), "pic": Image()}
    )
    cell = {"bytes": image_bytes(4, 4), "path": None}
    rows = {
        "train": [{"label": 1, "pics": [cell], "pic": cell}],
        "validation": [{"label": 0, "pics": [], "pic": None}],
    }
    save_hf_copy(tmp_path, rows, features, "disk")
    splits = find_hf_copy(tmp_path, {"validation": "val"}, ("train", "val"))
    assert splits is not None and list(splits) == ["train", "val"]
    train = splits["train"]
    assert (
        train.kind == "arrow"
        and train.image_columns == ("pic",)
        and train.image_list_columns == ("pics",)
    )
    assert train.class_names("label") == ["no", "yes"]
    ((ref, values),) = iter_rows(train, ["label", "not-a-column"])
    assert values == {"label": 1}
    assert read_row(ref, ("pic",))["pic"]["bytes"] == cell["bytes"]
    assert Value("int64")  # features built with the real `datasets` types


def test_not_a_copy_and_broken_metadata(tmp_path: Path) -> None:
    assert find_hf_copy(tmp_path, {}) is None
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ConversionError, match=r"state\.json"):
        find_hf_copy(tmp_path, {})
