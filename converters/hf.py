"""Reading Hugging Face copies of a dataset from disk: parquet files or a `save_to_disk` folder.

Both are read with `pyarrow` (what `datasets` itself uses), so nothing is downloaded and
nothing is cached: `plan` streams the small columns (`iter_rows`), and a worker reads the
image cells of one row on demand (`read_row`), keeping the last parquet row group and the
memory-mapped Arrow files open per process.

- Parquet: every `*.parquet` under the folder; the split comes from the file name
  (`train-00000-of-00002.parquet`, `validation.parquet`) or, for names like
  `0000.parquet`, from the parent folder (`default/train/0000.parquet`).
- `save_to_disk`: `dataset_dict.json` + one folder per split, or one `state.json` folder;
  the data files are Arrow IPC streams listed in `state.json`.
- Feature specs come from the schema metadata key `huggingface` (or `dataset_info.json`);
  `"_type": "List"` and the older `"Sequence"` both mark a list. An `Image` cell is a
  `{"bytes": ..., "path": ...}` struct.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from converters.converter import ConversionError

_SHARD_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")
_LIST_TYPES = {"List", "Sequence", "LargeList"}


class RowRef(NamedTuple):
    """Where one row lives: a data file and the row's index in that file (small, picklable)."""

    file: str
    row: int


@dataclass(frozen=True)
class HFSplit:
    """One split of a Hugging Face copy: its data files (in order) and feature spec."""

    name: str
    kind: str  # "parquet" | "arrow"
    files: tuple[Path, ...]
    columns: tuple[str, ...]
    features: Mapping[str, Any] = field(default_factory=dict)
    image_columns: tuple[str, ...] = ()
    image_list_columns: tuple[str, ...] = ()

    def class_names(self, column: str) -> list[str] | None:
        """The names of a `ClassLabel` column (its integer values index them), else None."""
        spec = self.features.get(column)
        if isinstance(spec, Mapping) and spec.get("_type") == "ClassLabel":
            return list(spec.get("names") or [])
        return None


def split_name(file: Path, aliases: Mapping[str, str]) -> str:
    """The split a data file belongs to, with `aliases` applied (e.g. validation -> val)."""
    stem = file.name.split(".")[0]
    stem = _SHARD_SUFFIX.sub("", stem)
    if re.fullmatch(r"\d+|part-\d+.*|data", stem):
        stem = file.parent.name
    name = stem.split("-")[0].lower()
    return aliases.get(name, name)


def find_hf_copy(
    src: Path, aliases: Mapping[str, str], order: Sequence[str] = ()
) -> dict[str, HFSplit] | None:
    """The splits of a Hugging Face copy under `src` (known names first, in `order`), or None."""
    found = _find_splits(src, aliases)
    if found is None:
        return None
    rank = {name: i for i, name in enumerate(order)}
    return dict(sorted(found.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def _find_splits(src: Path, aliases: Mapping[str, str]) -> dict[str, HFSplit] | None:
    if (src / "dataset_dict.json").is_file():
        names = _json(src / "dataset_dict.json").get("splits", [])
        splits = [_disk_split(src / name, aliases.get(name, name)) for name in names]
        return {split.name: split for split in splits}
    if (src / "state.json").is_file():
        state = _json(src / "state.json")
        name = state.get("_split") or "train"
        split = _disk_split(src, aliases.get(name, name))
        return {split.name: split}
    files = sorted(path for path in src.rglob("*.parquet") if path.is_file())
    if not files:
        return None
    grouped: dict[str, list[Path]] = {}
    for path in files:
        grouped.setdefault(split_name(path.relative_to(src), aliases), []).append(path)
    return {name: _parquet_split(name, paths) for name, paths in grouped.items()}


def _json(path: Path) -> dict[str, Any]:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConversionError(
            f"{path}: cannot read this Hugging Face metadata file: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return value


def _features_from_schema(schema: Any) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        info = orjson.loads(raw).get("info", {})
    except orjson.JSONDecodeError:
        return {}
    return info.get("features") or {}


def _is_image_struct(arrow_type: Any) -> bool:
    import pyarrow as pa

    if not pa.types.is_struct(arrow_type):
        return False
    names = {arrow_type.field(i).name for i in range(arrow_type.num_fields)}
    return {"bytes", "path"} <= names


def _image_columns(schema: Any, features: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    """(single-image columns, image-list columns), by feature spec or by Arrow type."""
    import pyarrow as pa

    singles, lists = [], []
    for arrow_field in schema:
        spec = features.get(arrow_field.name)
        kind = spec.get("_type") if isinstance(spec, Mapping) else None
        inner = spec.get("feature") if isinstance(spec, Mapping) else None
        if kind == "Image" or (kind is None and _is_image_struct(arrow_field.type)):
            singles.append(arrow_field.name)
        elif (
            kind in _LIST_TYPES and isinstance(inner, Mapping) and inner.get("_type") == "Image"
        ) or (
            kind is None
            and pa.types.is_list(arrow_field.type)
            and _is_image_struct(arrow_field.type.value_type)
        ):
            lists.append(arrow_field.name)
    return tuple(singles), tuple(lists)


def _parquet_split(name: str, files: list[Path]) -> HFSplit:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(files[0])
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ConversionError(f"{files[0]}: not a readable parquet file: {exc}") from exc
    features = _features_from_schema(schema)
    singles, lists = _image_columns(schema, features)
    return HFSplit(name, "parquet", tuple(files), tuple(schema.names), features, singles, lists)


def _disk_split(folder: Path, name: str) -> HFSplit:
    state = _json(folder / "state.json")
    files = tuple(folder / entry["filename"] for entry in state.get("_data_files", []))
    if not files:
        raise ConversionError(f"{folder / 'state.json'} lists no data files")
    schema = _arrow_table(str(files[0])).schema
    features = _features_from_schema(schema)
    if not features and (folder / "dataset_info.json").is_file():
        features = _json(folder / "dataset_info.json").get("features") or {}
    singles, lists = _image_columns(schema, features)
    return HFSplit(name, "arrow", files, tuple(schema.names), features, singles, lists)


def iter_rows(split: HFSplit, columns: list[str]) -> Iterator[tuple[RowRef, dict[str, Any]]]:
    """Every row of the split (only `columns` read, the others never touched), in order."""
    import pyarrow.parquet as pq

    wanted = [column for column in columns if column in split.columns]
    for path in split.files:
        row = 0
        if split.kind == "parquet":
            try:
                batches = pq.ParquetFile(path).iter_batches(batch_size=4096, columns=wanted)
                for batch in batches:
                    for values in batch.to_pylist():
                        yield RowRef(str(path), row), values
                        row += 1
            except OSError as exc:
                raise ConversionError(f"{path}: cannot read this parquet file: {exc}") from exc
        else:
            for batch in _arrow_table(str(path)).select(wanted).to_batches():
                for values in batch.to_pylist():
                    yield RowRef(str(path), row), values
                    row += 1


# Per-process caches used by workers: open Arrow tables (memory-mapped, cheap) and the
# last parquet row group read, since consecutive items usually share a row group.
_ARROW_TABLES: OrderedDict[str, Any] = OrderedDict()
_PARQUET: OrderedDict[str, tuple[Any, list[int]]] = OrderedDict()
_ROW_GROUP: dict[str, Any] = {}
_CACHE_FILES = 8


def _arrow_table(path: str) -> Any:
    import pyarrow as pa

    table = _ARROW_TABLES.get(path)
    if table is None:
        try:
            with pa.memory_map(path) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise ConversionError(f"{path}: not a readable Arrow stream file: {exc}") from exc
        _ARROW_TABLES[path] = table
        while len(_ARROW_TABLES) > _CACHE_FILES:
            _ARROW_TABLES.popitem(last=False)
    return table


def read_row(ref: RowRef, columns: tuple[str, ...]) -> dict[str, Any]:
    """The values of `columns` in one row (image cells as `{"bytes", "path"}` dicts)."""
    if ref.file.endswith(".parquet"):
        return _read_parquet_row(ref, columns)
    return _arrow_table(ref.file).select(list(columns)).slice(ref.row, 1).to_pylist()[0]


def _read_parquet_row(ref: RowRef, columns: tuple[str, ...]) -> dict[str, Any]:
    import bisect

    import pyarrow.parquet as pq

    if ref.file not in _PARQUET:
        handle = pq.ParquetFile(ref.file)
        starts, total = [], 0
        for index in range(handle.metadata.num_row_groups):
            starts.append(total)
            total += handle.metadata.row_group(index).num_rows
        _PARQUET[ref.file] = (handle, starts)
        while len(_PARQUET) > _CACHE_FILES:
            _PARQUET.popitem(last=False)
    handle, starts = _PARQUET[ref.file]
    group = bisect.bisect_right(starts, ref.row) - 1
    key = (ref.file, group, columns)
    if _ROW_GROUP.get("key") != key:
        _ROW_GROUP.clear()
        _ROW_GROUP["table"] = handle.read_row_group(group, columns=list(columns))
        _ROW_GROUP["key"] = key
    return _ROW_GROUP["table"].slice(ref.row - starts[group], 1).to_pylist()[0]
