"""A named dataset: a catalog plus the interaction log over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ranking.data.catalog import Catalog
from ranking.data.interactions import Interactions
from ranking.errors import DataError

__all__ = ["Dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A catalog plus the interaction log over it."""

    name: str
    catalog: Catalog
    interactions: Interactions

    def __post_init__(self) -> None:
        if self.interactions.n_items != self.catalog.n_items:
            raise DataError(
                f"interactions index {self.interactions.n_items} items but the catalog has "
                f"{self.catalog.n_items}"
            )
        if len(self.interactions) == 0:
            raise DataError(f"dataset {self.name!r} has no interactions; expected at least one")

    def summary(self) -> dict[str, Any]:
        """Counts describing the dataset, for tables and logs."""
        inter = self.interactions
        n_active_items = int((inter.item_counts() > 0).sum())
        lengths = inter.sequences().lengths
        return {
            "dataset": self.name,
            "users": inter.n_users,
            "items": self.catalog.n_items,
            "interactions": len(inter),
            "active_items": n_active_items,
            "density": len(inter) / max(1, inter.n_users * self.catalog.n_items),
            "mean_seq_len": float(lengths.mean()) if len(lengths) else 0.0,
        }
