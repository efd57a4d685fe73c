"""L1 candidate generation: a two-tower model over fused content vectors, served from FAISS.

* The **item tower** is an :class:`encoders.fusion.ItemFusion` over frozen CLIP text / image vectors
  and an optional learned ID embedding.
* The **session tower** is one of the sequence models of :mod:`ranking.models` (SASRec, GRU4Rec...)
  whose item table is replaced by the item tower (:class:`FusedItemTable`), so a session reads and
  scores items in the same space, and a session made of cold items still has a meaningful query.
* Training is the shared :func:`ranking.trainer.train_epochs`: by default in-batch plus sampled
  softmax (popularity-drawn negatives and the batch's own targets) with logQ correction.
* Serving: every item vector goes into a :class:`ranking.retrieval.FaissIndex`; a session's last
  hidden state is the query. Items with no training interaction have their (untrained) ID vector
  marked absent, so cold-start items are found through their content alone.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import trange

from encoders.fusion import ItemFusion
from ranking.data.interactions import Interactions
from ranking.data.sequences import PAD, pad_left
from ranking.data.splits import Split
from ranking.errors import ConfigError, DataError
from ranking.models import build_model
from ranking.retrieval.faiss_index import FaissIndex
from ranking.seeding import seed_torch
from ranking.storage import atomic_write_with
from ranking.train_config import TrainConfig
from ranking.trainer import make_optimizer, train_epochs


def _as_tensor(x: np.ndarray | None) -> Tensor | None:
    return None if x is None else torch.as_tensor(np.asarray(x), dtype=torch.float32)


class FusedItemTable(nn.Module):
    """Stands in for a model's ``ItemEmbedding``: rows come from an item tower (row 0 = padding)."""

    def __init__(self, fusion: ItemFusion) -> None:
        super().__init__()
        self.fusion = fusion
        self.n_items = fusion.n_items
        self.dim = fusion.out_dim

        self.frozen: Tensor | None = None
        """The table computed once for inference (:meth:`freeze`); training never reads it."""

    def table(self) -> Tensor:
        vectors = self.fusion()
        return torch.cat([vectors.new_zeros(1, self.dim), vectors], dim=0)

    def freeze(self) -> None:
        """Compute the table once, so that queries stop re-fusing every item (serving)."""
        with torch.no_grad():
            self.frozen = self.table().detach()

    def forward(self, inputs: Tensor, table: Tensor | None = None) -> Tensor:
        if table is None:
            use_frozen = self.frozen is not None and not self.training
            table = self.frozen if use_frozen else self.table()
        return nn.functional.embedding(inputs, table, padding_idx=PAD)


class TwoTowerRetriever:
    """A trainable L1 retriever: fused item vectors, a session tower and a FAISS index.

    Parameters
    ----------
    text, image:
        ``[n_items, D]`` content vectors (either may be ``None``).
    use_id:
        Add a learned ID embedding to the item tower.
    session_model:
        Sequence model kind for the session tower, and its settings in ``model``.
    fusion:
        Settings of :class:`~encoders.fusion.ItemFusion` (``mode``, ``modality_dropout``...).
    train:
        A :class:`~ranking.trainer.TrainConfig` (or mapping); default sampled softmax with logQ.
    index:
        Settings of :class:`~ranking.retrieval.FaissIndex` (``factory``, ``ef_search``...).
    """

    def __init__(
        self,
        *,
        n_items: int,
        text: np.ndarray | None = None,
        image: np.ndarray | None = None,
        use_id: bool = True,
        dim: int = 64,
        session_model: str = "sasrec",
        model: dict[str, Any] | None = None,
        fusion: dict[str, Any] | None = None,
        train: TrainConfig | dict[str, Any] | None = None,
        index: dict[str, Any] | Callable[[int], FaissIndex] | None = None,
    ) -> None:
        defaults = {
            "loss": "sampled",
            "n_negatives": 256,
            "negative_sampling": "popularity",
            "in_batch_negatives": True,
            "progress": False,
        }
        self.cfg = (
            train
            if isinstance(train, TrainConfig)
            else TrainConfig.from_mapping({**defaults, **(train or {})})
        )
        seed_torch(self.cfg.seed)
        self.item_tower = ItemFusion(
            text=_as_tensor(text),
            image=_as_tensor(image),
            out_dim=dim,
            n_id_items=n_items if use_id else 0,
            **(fusion or {}),
        )
        if self.item_tower.n_items != n_items:
            raise ConfigError(
                f"content vectors cover {self.item_tower.n_items} items, expected {n_items}"
            )
        self.settings: dict[str, Any] = {
            "n_items": n_items,
            "use_id": use_id,
            "dim": dim,
            "session_model": session_model,
            "model": dict(model or {}),
            "fusion": dict(fusion or {}),
            "train": asdict(self.cfg),
        }
        """The constructor's settings (content vectors and index aside): what rebuilds it."""
        settings = {"hidden": dim, **(model or {})}
        self.network = build_model(session_model, n_items, **settings)
        self.network.item_emb = FusedItemTable(self.item_tower)
        self.n_items = n_items
        if callable(index):  # e.g. ``partial(instantiate, cfg.index)`` from the ``index/`` group
            self.make_index: Callable[[int], FaissIndex] = index
        else:
            # Item vectors are unit-norm already (zero for an ID-only cold item): no re-normalising.
            settings = {"factory": "Flat", "normalise": False, **(index or {})}
            self.make_index = lambda dim: FaissIndex(dim, **settings)
        self.index: FaissIndex | None = None
        self.history: list[dict[str, Any]] = []
        self.seen_counts: np.ndarray | None = None

    def fit(
        self,
        train: Interactions,
        epochs: int | None = None,
        *,
        callback: Callable[[int, dict[str, Any], TwoTowerRetriever], None] | None = None,
    ) -> TwoTowerRetriever:
        """Train both towers on ``train`` and (re)build the FAISS index.

        ``callback(epoch, row, self)`` is called after every epoch (``epoch`` counts from 1;
        ``row`` is the epoch's :func:`~ranking.trainer.train_epochs` result with its ``epoch``).
        """
        self.network.item_emb.frozen = None  # the towers change: the inference table is stale
        if self.item_tower.id_embedding is not None:
            self.item_tower.id_present.fill_(True)  # every ID trains; the unseen are masked after
        counts = train.item_counts()
        sequences = train.sequences()
        optimizer = make_optimizer(self.network, self.cfg)
        rng = np.random.default_rng(self.cfg.seed)
        for epoch in trange(
            1,
            (epochs or self.cfg.epochs) + 1,
            desc="L1 two-tower",
            unit="epoch",
            disable=not self.cfg.progress,
            leave=False,
        ):
            result = train_epochs(
                self.network,
                sequences,
                self.cfg,
                1,
                item_counts=counts,
                rng=rng,
                optimizer=optimizer,
            )
            row = {k: v for k, v in result.items() if k != "epoch_losses"}
            self.history.append(row)
            if callback is not None:
                callback(epoch, {"epoch": epoch, **row}, self)
        # No interaction evidence, no ID information: items no fit has seen are served by content
        # only (a later fit on a recent window keeps the ID vectors that earlier fits trained).
        self.seen_counts = counts if self.seen_counts is None else self.seen_counts + counts
        self.item_tower.mark_id_absent(torch.from_numpy(np.flatnonzero(self.seen_counts == 0)))
        self.build_index()
        return self

    def item_vectors(self) -> np.ndarray:
        self.network.eval()
        with torch.no_grad():
            return self.item_tower().numpy().astype(np.float32)

    def retrievable_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, item ids)`` of the items the index can hold: an ID-only tower gives items
        that no training session touched an all-zero vector (no evidence), and those are left out."""
        ids = self.retrievable_items()
        return self.item_vectors()[ids], ids

    def retrievable_items(self) -> np.ndarray:
        """Ids of the items the index holds (see :meth:`retrievable_vectors`)."""
        return np.flatnonzero(self.item_tower.has_vector().numpy())

    def build_index(self) -> FaissIndex:
        self.index = self.make_index(self.item_tower.out_dim)
        vectors, ids = self.retrievable_vectors()
        self.index.build(vectors, ids=ids)
        self.network.item_emb.freeze()
        return self.index

    def load_towers(self, path: str | Path, index: FaissIndex) -> TwoTowerRetriever:
        """Restore towers saved by :meth:`save` and serve them from ``index`` (already built from
        these towers' item vectors, e.g. read from a serving bundle), without re-indexing."""
        self._read_state(path)
        expected = len(self.retrievable_items())
        if index.ntotal != expected or index.dim != self.item_tower.out_dim:
            raise DataError(
                f"index holds {index.ntotal} vectors of dim {index.dim}; the towers need "
                f"{expected} of dim {self.item_tower.out_dim}",
                path=path,
            )
        self.index = index
        self.network.item_emb.freeze()
        return self

    def save(self, path: str | Path) -> None:
        """The trained towers (the index is rebuilt from them on :meth:`load`), atomically."""
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        atomic_write_with(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str | Path) -> TwoTowerRetriever:
        """Restore towers saved by :meth:`save` into this (identically configured) retriever."""
        self._read_state(path)
        self.build_index()
        return self

    def _read_state(self, path: str | Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.network.load_state_dict(state)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise DataError(f"not a readable two-tower state ({exc})", path=path) from exc

    def query_vectors(self, histories: list[np.ndarray]) -> np.ndarray:
        self.network.eval()
        max_len = getattr(self.network, "max_len", self.cfg.max_len)
        with torch.no_grad():
            return self.network.last_hidden(torch.from_numpy(pad_left(histories, max_len))).numpy()

    def retrieve(
        self, histories: list[np.ndarray], k: int, *, exclude_seen: bool = True
    ) -> np.ndarray:
        """Top-``k`` candidate item ids per session (seen items excluded by the index)."""
        if self.index is None:
            raise ConfigError("the retriever has no index yet: call fit() or build_index() first")
        exclude = [np.unique(h) for h in histories] if exclude_seen else None
        _, ids = self.index.search(self.query_vectors(histories), k, exclude=exclude)
        return ids


def l1_recall(
    retriever: TwoTowerRetriever,
    split: Split,
    stage: str = "test",
    ks: tuple[int, ...] = (100, 500),
    groups: dict[str, np.ndarray] | None = None,
    batch_size: int = 512,
    exclude_seen: bool = True,
) -> dict[str, float]:
    """Recall@K of the true next item among L1 candidates, overall and per target group.

    ``groups`` maps a name to a boolean mask over items (e.g. ``{"cold": never_trained}``); a target
    belongs to a group when its item does. Keys look like ``recall@100``, ``cold_recall@100`` and
    ``cold_n``. ``exclude_seen=False`` lets the session's own items be candidates (repeat
    consumption), as :class:`ranking.pipeline.TwoTierPipeline` does by default.
    """
    targets = split.targets(stage)
    seqs = split.history(stage).sequences()
    users, items = targets.user, targets.item
    kmax = max(ks)
    found = np.zeros((len(users), len(ks)), dtype=bool)
    for lo in range(0, len(users), batch_size):
        rows = slice(lo, lo + batch_size)
        ids = retriever.retrieve([seqs[u] for u in users[rows]], kmax, exclude_seen=exclude_seen)
        for j, k in enumerate(ks):
            found[rows, j] = (ids[:, :k] == items[rows, None]).any(axis=1)
    out: dict[str, float] = {"n": float(len(users))}
    masks = {"": np.ones(len(items), dtype=bool)}
    masks.update({f"{name}_": mask[items] for name, mask in (groups or {}).items()})
    for prefix, mask in masks.items():
        if prefix:
            out[f"{prefix}n"] = float(mask.sum())
        for j, k in enumerate(ks):
            out[f"{prefix}recall@{k}"] = (
                float(found[mask, j].mean()) if mask.any() else float("nan")
            )
    return out
