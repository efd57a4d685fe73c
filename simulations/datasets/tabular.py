"""Reader of generic interaction tables (CSV or Parquet) with a column mapping."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import build_interactions
from ranking.errors import ConfigError, DataError
from simulations.datasets._io import (
    Rows,
    encode_labels,
    file_stem,
    first_appearance,
    index_items,
    placeholder_catalog,
    read_csv_records,
    require_file,
    to_floats,
    to_ids,
    to_seconds,
    unique_lookup,
)

INTERACTION_FIELDS = ("user", "item", "timestamp", "rating", "session", "event")
"""Our names of the interaction columns ``read_table``'s ``columns`` may map."""

ITEM_FIELDS = ("item", "text", "category", "created_at", "available", "image_path")
"""Our names of the item columns ``read_table``'s ``item_columns`` may map."""

PARQUET_SUFFIXES = (".parquet", ".pq")

_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})


@dataclass(frozen=True, eq=False)
class _Table:
    """A CSV or Parquet table whose columns are read on demand."""

    rows: Rows
    names: tuple[str, ...]
    read: Callable[[str], Sequence[Any]]

    def column(self, name: str, ours: str) -> Sequence[Any]:
        if name not in self.names:
            raise DataError(
                f"missing column {name!r} (mapped from {ours!r}); the file has columns "
                f"{', '.join(repr(n) for n in self.names)}",
                path=self.rows.path,
                column=name,
            )
        return self.read(name)


def _open_parquet(path: Path) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def wrap(exc: Exception) -> DataError:
        return DataError(f"cannot read the Parquet file: {exc}", path=path)

    try:
        meta = pq.ParquetFile(path)
        names = tuple(meta.schema_arrow.names)
        n_rows = meta.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise wrap(exc) from exc
    if n_rows == 0:
        raise DataError("the table has no rows", path=path)

    def read(name: str) -> Sequence[Any]:
        try:
            return pq.read_table(path, columns=[name]).column(name).to_numpy()
        except (pa.ArrowException, OSError) as exc:
            raise wrap(exc) from exc

    return _Table(rows=Rows(path=path, lines=None), names=names, read=read)


def _open_table(path: str | Path, sep: str) -> _Table:
    """A table by suffix: Parquet for ``.parquet``/``.pq``, otherwise delimited text."""
    path = require_file(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _open_parquet(path)
    records = read_csv_records(path, sep=sep)
    header = records.header or ()
    return _Table(rows=records, names=header, read=lambda name: records.columns[header.index(name)])


def _check_mapping(
    mapping: Mapping[str, str], allowed: tuple[str, ...], required: tuple[str, ...], what: str
) -> dict[str, str]:
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{what}: unknown key {unknown[0]!r}; expected keys among {', '.join(allowed)}"
        )
    for key in required:
        if key not in mapping:
            raise ConfigError(f"{what}: the key {key!r} is required (the file column holding it)")
    for key, value in mapping.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{what}: {key!r} must name a column, got {value!r}")
    return dict(mapping)


def _to_text(values: Sequence[Any]) -> list[str]:
    return [
        "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
        for v in values
    ]


def _to_bool(values: Sequence[Any], rows: Rows, column: str) -> np.ndarray:
    out = np.empty(len(values), dtype=bool)
    for row, value in enumerate(values):
        if isinstance(value, bool | np.bool_):
            out[row] = bool(value)
            continue
        key = str(value).strip().lower()
        if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
            key = str(int(value))
        if key in _TRUE:
            out[row] = True
        elif key in _FALSE:
            out[row] = False
        else:
            raise rows.error(
                row, f"expected a boolean (true/false, 1/0, yes/no), got {value!r}", column
            )
    return out


def _read_items(path: str | Path, item_columns: Mapping[str, str] | None, sep: str) -> Catalog:
    """The catalog of an item table, in file order."""
    table = _open_table(path, sep)
    if item_columns is None:
        item_columns = {"item": "item", **{f: f for f in ITEM_FIELDS[1:] if f in table.names}}
    cols = _check_mapping(item_columns, ITEM_FIELDS, ("item",), "item_columns")
    rows = table.rows
    ids = to_ids(table.column(cols["item"], "item"), rows, cols["item"])
    unique_lookup(ids, rows, cols["item"])
    n = len(ids)
    text = [f"item {i}" for i in ids]
    if "text" in cols:
        given = _to_text(table.column(cols["text"], "text"))
        text = [t or default for t, default in zip(given, text, strict=True)]
    category, names = np.full(n, -1, dtype=np.int32), ()
    if "category" in cols:
        category, names = encode_labels(_to_text(table.column(cols["category"], "category")))
    created_at = None
    if "created_at" in cols:
        created_at = to_seconds(
            table.column(cols["created_at"], "created_at"), rows, cols["created_at"]
        )
    available = None
    if "available" in cols:
        available = _to_bool(table.column(cols["available"], "available"), rows, cols["available"])
    image_paths = None
    if "image_path" in cols:
        base = rows.path.parent
        given = _to_text(table.column(cols["image_path"], "image_path"))
        image_paths = np.asarray([str(base / p) if p else "" for p in given], dtype=str)
    return Catalog(
        ids=np.asarray(ids, dtype=str),
        text=np.asarray(text, dtype=str),
        category=category,
        category_names=names,
        available=available,
        created_at=created_at,
        image_paths=image_paths,
    )


def read_table(
    path: str | Path,
    columns: Mapping[str, str],
    items_path: str | Path | None = None,
    item_columns: Mapping[str, str] | None = None,
    sep: str = ",",
) -> Dataset:
    """A dataset from a CSV or Parquet interaction table (chosen by the file suffix).

    ``columns`` maps our names (:data:`INTERACTION_FIELDS`; ``user`` and ``item`` required) to
    the file's columns. Timestamps may be numbers (seconds) or ISO 8601 date-times; without a
    timestamp the row order is the time order. Sessions and event names are coded in sorted
    order of their values.

    ``items_path`` is an optional item table, mapped by ``item_columns`` (:data:`ITEM_FIELDS`;
    by default every column named like one of them). Its order numbers the items, and every
    interaction must refer to one of its items; relative image paths are taken relative to the
    item table's directory. Without it, items are numbered in order of first appearance.
    """
    cols = _check_mapping(columns, INTERACTION_FIELDS, ("user", "item"), "columns")
    if items_path is None and item_columns is not None:
        raise ConfigError("item_columns given without items_path")
    table = _open_table(path, sep)
    rows = table.rows

    def column(ours: str) -> Sequence[Any]:
        return table.column(cols[ours], ours)

    item_ids = to_ids(column("item"), rows, cols["item"])
    if items_path is not None:
        catalog = _read_items(items_path, item_columns, sep)
        lookup = {item_id: i for i, item_id in enumerate(catalog.ids.tolist())}
        dense = index_items(item_ids, lookup, rows, cols["item"], Path(items_path))
    else:
        distinct, dense = first_appearance(item_ids)
        catalog = placeholder_catalog(distinct)
    users = to_ids(column("user"), rows, cols["user"])
    if "timestamp" in cols:
        stamps = to_seconds(column("timestamp"), rows, cols["timestamp"])
    else:
        stamps = np.arange(len(users), dtype=np.float64)
    extra: dict[str, Any] = {}
    if "rating" in cols:
        extra["rating"] = to_floats(column("rating"), rows, cols["rating"])
    if "session" in cols:
        sessions = to_ids(column("session"), rows, cols["session"])
        extra["session"] = np.unique(np.asarray(sessions, dtype=str), return_inverse=True)[1]
    if "event" in cols:
        codes, extra["event_names"] = encode_labels(to_ids(column("event"), rows, cols["event"]))
        extra["event"] = codes
    interactions = build_interactions(users, dense, stamps, catalog.n_items, **extra)
    return Dataset(name=file_stem(path), catalog=catalog, interactions=interactions)
