"""Reader of the plain ``user item`` files of the SASRec and BERT4Rec repositories."""

from __future__ import annotations

from pathlib import Path

from ranking.data.dataset import Dataset
from ranking.data.interactions import build_interactions
from simulations.datasets._io import (
    file_stem,
    first_appearance,
    placeholder_catalog,
    read_records,
)


def read_user_item_pairs(path: str | Path) -> Dataset:
    """A dataset from a file of whitespace-separated ``user item`` pairs, one per line.

    Each user's lines are in time order; the timestamp of a pair is its 0-based line index.
    Items are numbered in order of first appearance, with text ``"item <id>"`` and no category.
    """
    records = read_records(path, sep=None, n_fields=2, layout="user item")
    users, items = records.columns
    distinct, dense = first_appearance(items)
    catalog = placeholder_catalog(distinct)
    interactions = build_interactions(users, dense, records.lines - 1.0, catalog.n_items)
    return Dataset(name=file_stem(path), catalog=catalog, interactions=interactions)
