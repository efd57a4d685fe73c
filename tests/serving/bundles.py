"""A tiny trained bundle for the service tests: items follow ``i -> i + 1``, so a session ending in
``i`` should be answered with ``i + 1`` first, and an event that moves the session elsewhere moves
the answer with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import rule_log

from ranking.data import Catalog
from ranking.recommender import SequenceRecommender
from ranking.two_tower import TwoTowerRetriever
from serving.bundle import export_bundle

N_ITEMS = 60
RERANKERS = {
    "neural": {"name": "neural"},
    "blend": {"name": "blend", "weights": {"l2": 1.0, "popularity": 0.1}},
}


def tiny_catalog(n_items: int = N_ITEMS) -> Catalog:
    return Catalog(
        ids=np.array([f"item-{i}" for i in range(n_items)]),
        text=np.array([f"title {i}" for i in range(n_items)]),
        category=np.arange(n_items) % 4,
        category_names=("a", "b", "c", "d"),
    )


def build_tiny_bundle(path: Path, *, seed: int = 0, version: str | None = None) -> Path:
    log = rule_log(N_ITEMS, n_users=150, seed=seed)
    rng = np.random.default_rng(seed)
    retriever = TwoTowerRetriever(
        n_items=N_ITEMS,
        text=rng.normal(size=(N_ITEMS, 16)).astype(np.float32),
        dim=16,
        model={"n_blocks": 1},
        train={"epochs": 30, "seed": seed, "max_len": 10, "n_negatives": 32, "lr": 0.01},
        index={"factory": "Flat"},
    )
    retriever.fit(log)
    l2 = SequenceRecommender(
        "sasrec",
        model={"hidden": 16, "n_blocks": 1},
        train={"epochs": 60, "max_len": 10, "seed": seed, "loss": "ce", "lr": 0.01},
    ).fit(log)
    checkpoint = l2.save(path.parent / f".{path.name}-l2")
    meta = {"version": version} if version else {}
    return export_bundle(
        path,
        retriever=retriever,
        l2_checkpoint=checkpoint,
        catalog=tiny_catalog(),
        popularity=log.item_counts().astype(np.float64),
        rerankers=RERANKERS,
        n_candidates=30,
        item_vectors=rng.normal(size=(N_ITEMS, 8)).astype(np.float32),
        meta=meta,
    )
