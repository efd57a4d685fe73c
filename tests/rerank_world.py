"""A small re-ranking world for the hybrid re-ranker tests: 40 items, their context and requests."""

from __future__ import annotations

import numpy as np

from ranking.hybrid import RerankContext

N_ITEMS = 40


def world(seed: int = 0, **overrides: object) -> RerankContext:
    """40 items in 4 categories, with availability, creation times, popularity, prices, vectors."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    settings: dict[str, object] = {
        "n_items": N_ITEMS,
        "category": (np.arange(N_ITEMS) % 4).astype(np.int32),
        "n_categories": 4,
        "category_names": ("mug", "lamp", "hat", "rug"),
        "available": np.arange(N_ITEMS) % 7 != 3,
        "created_at": rng.uniform(0, 100, N_ITEMS),
        "popularity": rng.integers(0, 50, N_ITEMS).astype(np.float64),
        "attributes": {"price": rng.uniform(1, 10, N_ITEMS)},
        "item_vectors": vectors,
        "k": 5,
    }
    settings.update(overrides)
    return RerankContext(**settings)  # type: ignore[arg-type]


def request(rng: np.random.Generator, n: int = 20, pad: int = 3) -> tuple[np.ndarray, np.ndarray]:
    items = rng.choice(N_ITEMS, n, replace=False).astype(np.int64)
    scores = rng.normal(size=n).astype(np.float32)
    items[n - pad :] = -1
    scores[n - pad :] = -np.inf
    return items, scores


FULL_RULES = [
    {"name": "seen"},
    {"name": "availability"},
    {"name": "block_list", "items": [0, 1, 2, 5]},
    {"name": "category_cap", "max_per_category": 2},
]
