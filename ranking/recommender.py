"""The session-model recommender: a model spec, its network and its training record; a scorer.

:class:`SequenceRecommender` is the Hydra ``_target_`` of ``conf/model/{sasrec,gru4rec,lstm,
longshort}.yaml``: ``fit`` trains with early stopping (the one training loop,
:func:`ranking.trainer.train_epochs`), ``score`` implements the evaluator's Scorer protocol,
``score_candidates`` is the pipeline's L2 stage, ``save`` / :func:`load_recommender` read and write
the one checkpoint format (:mod:`ranking.checkpoint`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ranking.checkpoint import load_checkpoint, save_checkpoint
from ranking.data import Interactions, Split, pad_left
from ranking.errors import DataError
from ranking.models import SequenceModel
from ranking.seeding import seed_torch
from ranking.spec import ModelSpec, build_network
from ranking.train_config import TrainConfig
from ranking.trainer import make_optimizer, resolve_device, train_epochs

__all__ = ["SequenceRecommender", "load_recommender"]

log = logging.getLogger("tandem")

VALIDATION_METRIC = "ndcg@10"


class SequenceRecommender:
    """A neural sequence model, its training config and its training record; a scorer.

    Parameters
    ----------
    kind:
        Model name, one of :data:`ranking.models.MODELS` (``sasrec``, ``gru4rec``, ``gru``,
        ``lstm``, ``longshort``).
    n_items:
        Catalog size. If given the network is built now; otherwise :meth:`fit` builds it from the
        training log (which is what the Hydra run does: ``instantiate(cfg.model).fit(...)``).
    model:
        The model's own settings (``hidden``, ``n_blocks``, ...). ``max_len`` defaults to
        ``train.max_len`` for the models that take it.
    train:
        A :class:`TrainConfig` or a mapping of its fields.
    content:
        Optional frozen ``[n_items, C]`` content vectors (text / image embeddings) added, through a
        learned projection, to the item ID embeddings.

    Attributes
    ----------
    network:
        The :class:`~ranking.models.base.SequenceModel` (``None`` until built).
    history:
        One row per trained epoch: ``epoch``, ``loss``, ``seconds`` and, on validated epochs,
        ``val_ndcg@10`` and ``eval_seconds``.
    best_epoch:
        The epoch whose parameters the model holds after :meth:`fit` (1-based).
    """

    def __init__(
        self,
        kind: str = "sasrec",
        *,
        n_items: int | None = None,
        model: Mapping[str, Any] | None = None,
        train: TrainConfig | Mapping[str, Any] | None = None,
        content: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        self.spec = ModelSpec.from_mapping(
            {"kind": kind, "model": dict(model or {}), "train": train}
        )
        self.content = None if content is None else torch.as_tensor(content, dtype=torch.float32)
        self.network: SequenceModel | None = None
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.best_metric: float | None = None
        if n_items is not None:
            self.build(n_items)

    @classmethod
    def from_spec(
        cls, spec: ModelSpec | Mapping[str, Any], *, n_items: int | None = None, content: Any = None
    ) -> SequenceRecommender:
        """A recommender for a model spec (see :mod:`ranking.spec`)."""
        spec = ModelSpec.from_mapping(spec)
        return cls(spec.kind, n_items=n_items, model=spec.model, train=spec.train, content=content)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def cfg(self) -> TrainConfig:
        return self.spec.train

    # ---- construction ----------------------------------------------------------------------

    @property
    def n_items(self) -> int | None:
        return None if self.network is None else self.network.n_items

    @property
    def device(self) -> torch.device:
        return resolve_device(self.cfg.device)

    def build(self, n_items: int) -> SequenceModel:
        """(Re)build the network for ``n_items`` items, initialised from ``spec.train.seed``."""
        if self.content is not None and self.content.shape[0] != n_items:
            raise DataError(
                f"content has {self.content.shape[0]} rows but the catalog has {n_items} items"
            )
        self.network = build_network(self.spec, n_items, self.content).to(self.device)
        return self.network

    def _require(self) -> SequenceModel:
        if self.network is None:
            raise RuntimeError(f"{self!r} has no network yet; call fit(interactions) first")
        return self.network

    def __repr__(self) -> str:
        return f"SequenceRecommender(kind={self.kind!r}, n_items={self.n_items}, model={dict(self.spec.model)})"

    # ---- training --------------------------------------------------------------------------

    def fit(
        self,
        train: Interactions,
        validation: Split | None = None,
        *,
        warm_start: bool = False,
        callback: Callable[[int, dict[str, float], SequenceRecommender], None] | None = None,
    ) -> SequenceRecommender:
        """Train on ``train``; with ``validation``, early-stop on its ``valid`` stage NDCG@10.

        The network is rebuilt from ``cfg.seed`` unless ``warm_start`` (and one of the right size
        exists). With a validation split the model is evaluated every ``cfg.eval_every`` epochs
        (``evaluate(self, validation, stage="valid")``), training stops after ``cfg.patience``
        epochs without improvement, and the parameters of the best epoch are restored at the end.
        Without one it trains ``cfg.epochs`` epochs and keeps the last state. ``callback(epoch,
        row, self)`` is called after every epoch. Returns ``self``.
        """
        cfg = self.cfg
        if validation is not None and validation.train.n_items != train.n_items:
            raise DataError(
                f"validation split has {validation.train.n_items} items, training log {train.n_items}"
            )
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        seed_torch(cfg.seed)
        np.random.seed(cfg.seed)
        if not warm_start or self.network is None or self.network.n_items != train.n_items:
            self.build(train.n_items)
        net = self._require()
        sequences = train.sequences()
        counts = train.item_counts()
        rng = np.random.default_rng(cfg.seed)
        optimizer = make_optimizer(net, cfg)
        self.history = []
        best_metric, best_epoch, best_state = -math.inf, 0, None
        bar = tqdm(
            range(1, cfg.epochs + 1), desc=f"fit {self.kind}", disable=not cfg.progress, leave=False
        )
        for epoch in bar:
            stats = train_epochs(
                net, sequences, cfg, 1, item_counts=counts, rng=rng, optimizer=optimizer
            )
            row: dict[str, float] = {
                "epoch": epoch,
                "loss": stats["loss"],
                "seconds": stats["seconds"],
            }
            stop = False
            if validation is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                t0 = time.perf_counter()
                metric = self.evaluate_validation(validation)
                row[f"val_{VALIDATION_METRIC}"] = metric
                row["eval_seconds"] = time.perf_counter() - t0
                if metric > best_metric:
                    best_metric, best_epoch = metric, epoch
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                elif cfg.patience and epoch - best_epoch >= cfg.patience:
                    stop = True
            self.history.append(row)
            bar.set_postfix(
                {k: f"{v:.4f}" for k, v in row.items() if k in ("loss", f"val_{VALIDATION_METRIC}")}
            )
            log.debug("%s epoch %d: %s", self.kind, epoch, row)
            if callback is not None:
                callback(epoch, row, self)
            if stop:
                break
        bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
            self.best_epoch, self.best_metric = best_epoch, best_metric
        else:
            self.best_epoch, self.best_metric = (len(self.history) or None), None
        net.eval()
        return self

    def evaluate_validation(self, validation: Split) -> float:
        """NDCG@10 on the ``valid`` stage of ``validation`` (the early-stopping criterion)."""
        from ranking.evaluation import evaluate

        result = evaluate(
            self, validation, stage="valid", ks=(10,), filter_seen=self.cfg.validation_filter_seen
        )
        return float(result[VALIDATION_METRIC])

    # ---- scoring ---------------------------------------------------------------------------

    def score(
        self, histories: list[np.ndarray], users: np.ndarray, batch_size: int = 1024
    ) -> np.ndarray:
        """``float32 [B, n_items]``: each history's last hidden vector against every item.

        Histories are dense 0-based ids in time order; the most recent ``cfg.max_len`` items are
        used. An empty history scores every item 0.
        """
        net = self._require()
        was_training = net.training
        net.eval()
        out = np.empty((len(histories), net.n_items), dtype=np.float32)
        try:
            with torch.no_grad():
                table = net.item_table()
                for lo in range(0, len(histories), batch_size):
                    x = torch.from_numpy(
                        pad_left(histories[lo : lo + batch_size], self.cfg.max_len)
                    )
                    hidden = net.last_hidden(x.to(table.device))
                    out[lo : lo + len(x)] = net.logits(hidden, table).float().cpu().numpy()
        finally:
            net.train(was_training)
        return out

    def score_candidates(self, histories: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """``float32 [B, k]``: only the given 0-based item ids (``-1`` = no candidate, ``-inf``).

        The L2 stage of :class:`ranking.pipeline.TwoTierPipeline`.
        """
        net = self._require()
        candidates = np.asarray(candidates, dtype=np.int64)
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                table = net.item_table()
                x = torch.from_numpy(pad_left(histories, self.cfg.max_len)).to(table.device)
                hidden = net.last_hidden(x)
                rows = table[torch.from_numpy(np.maximum(candidates, 0) + 1).to(table.device)]
                scores = torch.einsum("bd,bkd->bk", hidden, rows).float().cpu().numpy()
        finally:
            net.train(was_training)
        scores[candidates < 0] = -np.inf
        return scores

    # ---- checkpoints -----------------------------------------------------------------------

    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
        """Write a checkpoint directory (:mod:`ranking.checkpoint`), atomically."""
        net = self._require()
        record = {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
        }
        return save_checkpoint(
            path,
            self.spec,
            net.state_dict(),
            net.n_items,
            content=self.content,
            meta={**record, **dict(meta or {})},
        )

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> SequenceRecommender:
        """A recommender from a checkpoint directory (see :func:`load_recommender`)."""
        return load_recommender(path, device=device)


def load_recommender(path: str | Path, *, device: str | None = None) -> SequenceRecommender:
    """The one public way to load a trained session model (trainer, server, pipeline, exporter).

    The checkpoint's manifest and checksums are verified; the network is rebuilt from its model
    spec and given the saved weights. ``device`` overrides the spec's training device.
    """
    ckpt = load_checkpoint(path)
    spec = ckpt.spec if device is None else ckpt.spec.with_train(device=device)
    rec = SequenceRecommender.from_spec(spec, content=ckpt.content)
    net = rec.build(ckpt.n_items)
    try:
        net.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise DataError(f"weights do not fit the model spec ({exc})", path=path) from exc
    net.eval()
    rec.history = list(ckpt.meta.get("history") or [])
    rec.best_epoch = ckpt.meta.get("best_epoch")
    rec.best_metric = ckpt.meta.get("best_metric")
    return rec
