"""Small interaction logs and synthetic-world runs the tests build for themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ranking.data.interactions import Interactions


def log_from_sequences(sequences: list[list[int]], n_items: int) -> Interactions:
    """User ``u`` consumes ``sequences[u]`` in order (timestamps 0, 1, 2...)."""
    users = [u for u, seq in enumerate(sequences) for _ in seq]
    items = [i for seq in sequences for i in seq]
    times = [float(t) for seq in sequences for t in range(len(seq))]
    return Interactions(
        user=np.array(users, dtype=np.int64),
        item=np.array(items, dtype=np.int64),
        timestamp=np.array(times),
        user_ids=np.array([f"u{u}" for u in range(len(sequences))]),
        n_items=n_items,
    )


def rule_log(
    n_items: int, n_users: int, seed: int = 0, lengths: tuple[int, int] = (6, 16)
) -> Interactions:
    """Every sequence follows the deterministic rule ``i -> (i + 1) % n_items`` from a random start."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(n_users):
        start = int(rng.integers(n_items))
        sequences.append([(start + t) % n_items for t in range(int(rng.integers(*lengths)))])
    log = log_from_sequences(sequences, n_items)
    return Interactions(
        user=log.user,
        item=log.item,
        timestamp=log.timestamp,
        user_ids=np.array([f"u{u:03d}" for u in range(n_users)]),
        n_items=n_items,
    )


def world_settings(root: Path, *, n_items: int, n_users: int, seed: int, **settings: Any) -> Any:
    """Federated settings over a synthetic world of ``n_items`` x ``n_users`` saved under
    ``root`` (``root/data.npz``); ``settings`` are the other ``FederatedSettings`` fields."""
    from fl.settings import FederatedSettings
    from ranking.storage import save_dataset
    from simulations.datasets.synthetic import generate_world

    data = root / "data.npz"
    save_dataset(generate_world(n_items=n_items, n_users=n_users, seed=seed).dataset, data)
    return FederatedSettings.create(data_path=str(data), **settings)
