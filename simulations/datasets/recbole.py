"""Reader of RecBole atomic files (``<name>.inter`` and an optional ``<name>.item``).

Atomic files are tab-separated with a header of ``field:type`` entries, ``type`` being one of
``token``, ``token_seq``, ``float`` and ``float_seq`` (sequences are space-separated).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import build_interactions
from ranking.errors import DataError
from simulations.datasets._io import (
    Records,
    encode_labels,
    first_appearance,
    index_items,
    placeholder_catalog,
    read_records,
    require_dir,
    to_floats,
    to_ids,
    unique_lookup,
)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
"""The field types of the atomic-file header."""

CATEGORY_FIELDS = ("class", "genre", "genres", "categories", "category")
"""Item fields, in order of preference, whose first token is the item's category."""

USER, ITEM, RATING, TIMESTAMP = "user_id", "item_id", "rating", "timestamp"


def _parse_header(path: Path, header: tuple[str, ...]) -> dict[str, str]:
    """``{field name: type}`` of an atomic-file header; raises :class:`DataError` if malformed."""
    types: dict[str, str] = {}
    for entry in header:
        name, colon, kind = entry.rpartition(":")
        if not colon or not name or kind not in FIELD_TYPES:
            raise DataError(
                f"malformed header field {entry!r}; expected 'name:type' with type one of "
                f"{', '.join(FIELD_TYPES)}",
                path=path,
                line=1,
                column=entry,
            )
        if name in types:
            raise DataError(
                f"field {name!r} appears twice in the header", path=path, line=1, column=name
            )
        types[name] = kind
    return types


def _read_atomic(
    path: Path, required: tuple[str, ...], layout: str
) -> tuple[Records, dict[str, str]]:
    """An atomic file's records (columns keyed by bare field name) and its field types."""

    def check(path: Path, header: tuple[str, ...]) -> None:
        types = _parse_header(path, header)
        for name in required:
            if name not in types:
                raise DataError(
                    f"missing field {name!r} in the header; expected {layout}",
                    path=path,
                    line=1,
                    column=name,
                )

    records = read_records(path, sep="\t", header=True, layout=layout, check_header=check)
    types = _parse_header(path, records.header or ())
    bare = tuple(types)
    return Records(
        path=records.path, lines=records.lines, header=bare, columns=records.columns
    ), types


def _item_catalog(records: Records, types: dict[str, str]) -> Catalog:
    """The catalog of an ``.item`` file, in file order."""
    ids = to_ids(records.column(ITEM), records, ITEM)
    unique_lookup(ids, records, ITEM)
    category_field = next(
        (f for f in CATEGORY_FIELDS if types.get(f) in ("token", "token_seq")), None
    )
    text_fields = [f for f, t in types.items() if f != ITEM and t in ("token", "token_seq")]
    parts: list[list[str]] = [[] for _ in ids]
    for field in text_fields:
        for row, value in enumerate(records.column(field)):
            if value:
                parts[row].append(", ".join(value.split()) if field == category_field else value)
    text = [" | ".join(p) if p else f"item {i}" for p, i in zip(parts, ids, strict=True)]
    if category_field is None:
        category, names = np.full(len(ids), -1, dtype=np.int32), ()
    else:
        first = [value.split()[0] if value else "" for value in records.column(category_field)]
        category, names = encode_labels(first)
    attributes: dict[str, np.ndarray] = {}
    for field, kind in types.items():
        if field == ITEM:
            continue
        values = records.column(field)
        if kind == "float":
            attributes[field] = to_floats(values, records, field, allow_missing=True)
        else:
            attributes[field] = np.asarray(values, dtype=str)
    return Catalog(
        ids=np.asarray(ids, dtype=str),
        text=np.asarray(text, dtype=str),
        category=category,
        category_names=names,
        attributes=attributes,
    )


def read_recbole_atomic(directory: str | Path, name: str | None = None) -> Dataset:
    """A dataset from RecBole atomic files ``<directory>/<name>.inter`` and ``.item``.

    ``name`` defaults to the directory's name. The ``.inter`` file needs ``user_id`` and
    ``item_id`` fields; ``rating`` and ``timestamp`` are optional (without a timestamp the line
    order is the time order). Without an ``.item`` file items are numbered in order of first
    appearance. Item text joins the item's token fields with ``" | "``; the category is the first
    token of the first of :data:`CATEGORY_FIELDS` present.
    """
    directory = require_dir(directory)
    name = name or directory.name
    inter_path = directory / f"{name}.inter"
    item_path = directory / f"{name}.item"
    inter, inter_types = _read_atomic(
        inter_path, (USER, ITEM), "a tab-separated header with user_id:token and item_id:token"
    )
    item_ids = to_ids(inter.column(ITEM), inter, ITEM)
    if item_path.exists():
        items, item_types = _read_atomic(
            item_path, (ITEM,), "a tab-separated header with item_id:token"
        )
        catalog = _item_catalog(items, item_types)
        lookup = {item_id: i for i, item_id in enumerate(catalog.ids.tolist())}
        dense = index_items(item_ids, lookup, inter, ITEM, item_path)
    else:
        distinct, dense = first_appearance(item_ids)
        catalog = placeholder_catalog(distinct)
    if TIMESTAMP in inter_types:
        stamps = to_floats(inter.column(TIMESTAMP), inter, TIMESTAMP, expected="a number (seconds)")
    else:
        stamps = np.arange(len(inter), dtype=np.float64)
    columns = {}
    if RATING in inter_types:
        columns["rating"] = to_floats(inter.column(RATING), inter, RATING)
    interactions = build_interactions(
        to_ids(inter.column(USER), inter, USER), dense, stamps, catalog.n_items, **columns
    )
    return Dataset(name=name, catalog=catalog, interactions=interactions)
