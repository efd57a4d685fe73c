"""The item catalog: dense item ids, their text, categories, attributes and images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ranking.errors import DataError

__all__ = ["Catalog"]


@dataclass(frozen=True, eq=False)
class Catalog:
    """Items with dense ids ``0 .. n_items-1``.

    Attributes
    ----------
    ids:
        External item ids (strings), indexed by dense id.
    text:
        Item text (title, genres, description) used by text encoders.
    category:
        Category code per item (``-1`` when unknown), indexing ``category_names``.
    category_names:
        Names of the category codes.
    attributes:
        Further per-item columns (numeric or string arrays of length ``n_items``).
    available:
        Whether an item may be recommended now (all ``True`` when the source has no such column;
        :meth:`ranking.rules.RerankContext.from_catalog` then treats availability as missing).
    created_at:
        Time (same unit as interaction timestamps) at which the item entered the catalog.
    image_paths:
        Optional path per item (``""`` where an item has none).
    image_renderer:
        Optional picklable callable ``(catalog, item) -> PIL.Image`` that draws images lazily
        (the synthetic world uses it). Takes precedence over ``image_paths``.
    """

    ids: np.ndarray
    text: np.ndarray
    category: np.ndarray
    category_names: tuple[str, ...]
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    available: np.ndarray | None = None
    created_at: np.ndarray | None = None
    image_paths: np.ndarray | None = None
    image_renderer: Callable[[Catalog, int], Any] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        object.__setattr__(self, "ids", np.asarray(self.ids, dtype=str))
        object.__setattr__(self, "text", np.asarray(self.text, dtype=str))
        object.__setattr__(self, "category", np.asarray(self.category, dtype=np.int32))
        if self.available is None:
            object.__setattr__(self, "available", np.ones(n, dtype=bool))
        if self.created_at is None:
            object.__setattr__(self, "created_at", np.zeros(n, dtype=np.float64))
        object.__setattr__(self, "available", np.asarray(self.available, dtype=bool))
        object.__setattr__(self, "created_at", np.asarray(self.created_at, dtype=np.float64))
        if self.image_paths is not None:
            object.__setattr__(self, "image_paths", np.asarray(self.image_paths, dtype=str))
        self._check()

    def _check(self) -> None:
        n = len(self.ids)
        if n == 0:
            raise DataError("the catalog is empty; expected at least one item")
        columns: dict[str, np.ndarray | None] = {
            "text": self.text,
            "category": self.category,
            "available": self.available,
            "created_at": self.created_at,
            "image_paths": self.image_paths,
            **{f"attributes.{k}": v for k, v in self.attributes.items()},
        }
        for name, col in columns.items():
            if col is not None and len(col) != n:
                raise DataError(f"catalog column has {len(col)} rows, expected {n}", column=name)
        if len(np.unique(self.ids)) != n:
            raise DataError("catalog item ids are not unique", column="ids")
        bad = (self.category < -1) | (self.category >= len(self.category_names))
        if bad.any():
            raise DataError(
                f"category code {int(self.category[bad][0])} outside 0..{len(self.category_names) - 1}",
                column="category",
            )

    @property
    def n_items(self) -> int:
        return len(self.ids)

    def index_of(
        self, external_ids: Sequence[str] | np.ndarray, *, source: str | None = None
    ) -> np.ndarray:
        """Dense ids for external ids; raises :class:`DataError` naming the first unknown id."""
        lookup = {item_id: i for i, item_id in enumerate(self.ids.tolist())}
        ext = np.asarray(external_ids, dtype=str)
        out = np.empty(len(ext), dtype=np.int32)
        for row, item_id in enumerate(ext.tolist()):
            dense = lookup.get(item_id)
            if dense is None:
                raise DataError(
                    f"unknown item id {item_id!r} (not in the catalog)", path=source, line=row + 1
                )
            out[row] = dense
        return out

    def image(self, item: int) -> Any:
        """The item's image as a PIL image, or ``None`` if it has none."""
        if self.image_renderer is not None:
            return self.image_renderer(self, int(item))
        if self.image_paths is not None and self.image_paths[item]:
            from PIL import Image

            with Image.open(self.image_paths[item]) as img:
                return img.convert("RGB")
        return None

    def take(self, items: np.ndarray) -> Catalog:
        """A catalog restricted to ``items`` (in that order), re-densified."""
        items = np.asarray(items)
        return replace(
            self,
            ids=self.ids[items],
            text=self.text[items],
            category=self.category[items],
            attributes={k: v[items] for k, v in self.attributes.items()},
            available=self.available[items],
            created_at=self.created_at[items],
            image_paths=None if self.image_paths is None else self.image_paths[items],
        )
