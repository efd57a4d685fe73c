"""Item vectors from the catalog's categorical attributes: one one-hot block per attribute.

Catalog metadata (category, colour, pattern, price band...) is public, like the items' images and
titles, so a model can take it as a frozen content input (``fl.content_vectors``, or a checkpoint's
``content``): every item vector is then its ID row plus a learned embedding of each of its
attribute values, summed (the projection of the one-hot blocks). Those few value embeddings are
shared by every item that has the value, so every client's update moves them; under DP they learn
through the noise where single item rows cannot.

``python -m ranking.data.attribute_vectors <dataset.npz> <out.npy> [column ...]`` writes the
vectors of a dataset written by :func:`ranking.storage.save_dataset`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranking.data.catalog import Catalog
from ranking.errors import ConfigError

__all__ = ["attribute_vectors", "categorical_columns", "write_attribute_vectors"]

CATEGORY = "category"
"""The catalog's category codes (``Catalog.category``; ``-1`` = unknown)."""


def categorical_columns(catalog: Catalog) -> list[str]:
    """``category`` (when any item has one) and every string attribute column, in catalog order."""
    names = [CATEGORY] if (catalog.category >= 0).any() else []
    return names + [
        name for name, values in catalog.attributes.items() if np.asarray(values).dtype.kind in "US"
    ]


def _column(catalog: Catalog, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values, known)`` of one categorical column (values are strings)."""
    if name == CATEGORY:
        return catalog.category.astype(str), catalog.category >= 0
    if name not in catalog.attributes:
        raise ConfigError(
            f"attribute column {name!r} is not in the catalog; its categorical columns are "
            f"{categorical_columns(catalog)}"
        )
    values = np.asarray(catalog.attributes[name])
    if values.dtype.kind not in "US":
        raise ConfigError(
            f"attribute column {name!r} holds {values.dtype} values, not categories; its "
            f"categorical columns are {categorical_columns(catalog)}"
        )
    values = values.astype(str)
    return values, values != ""


def attribute_vectors(catalog: Catalog, columns: Sequence[str] | None = None) -> np.ndarray:
    """``float32 [n_items, sum of the columns' value counts]``: one-hot blocks, one per column.

    ``columns`` defaults to :func:`categorical_columns`. An item without a value for a column
    (category ``-1``, or an empty string) has an all-zero block. Values are ordered by their
    sorted names, so the same catalog always gives the same vectors.
    """
    names = categorical_columns(catalog) if columns is None else list(columns)
    if not names:
        raise ConfigError("the catalog has no categorical attribute columns to encode")
    blocks = []
    for name in names:
        values, known = _column(catalog, name)
        levels = np.unique(values[known])
        blocks.append(((values[:, None] == levels[None, :]) & known[:, None]).astype(np.float32))
    return np.concatenate(blocks, axis=1)


def write_attribute_vectors(
    dataset: Path, out: Path, columns: Sequence[str] | None = None
) -> np.ndarray:
    """The :func:`attribute_vectors` of a dataset file's catalog, written to ``out`` (``.npy``,
    atomically: never a half-written file); returns them."""
    from ranking.storage import atomic_path, load_dataset

    vectors = attribute_vectors(load_dataset(dataset).catalog, columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, vectors)
    return vectors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a dataset file (ranking.storage.save_dataset)")
    parser.add_argument("out", type=Path, help="the .npy file to write")
    parser.add_argument("columns", nargs="*", help="columns to encode (default: all categorical)")
    args = parser.parse_args(argv)
    vectors = write_attribute_vectors(args.dataset, args.out, args.columns or None)
    print(f"{args.out}: {vectors.shape[0]} items x {vectors.shape[1]} attribute values")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
