"""Training of the neural sequence models, and :class:`SequenceRecommender`, the scorer wrapping one.

* :class:`TrainConfig`: every training setting (defaults = the SASRec+ protocol of Klenitskiy &
  Vasilev 2023: windows of 50 items, batch 128, AdamW at lr 1e-3, full softmax cross-entropy,
  early stopping on validation NDCG@10 with patience 10).
* :func:`train_epochs`: the training core -- a few epochs over a set of user sequences. Central
  training and the federated client both call it.
* :class:`SequenceRecommender`: model + config; ``fit`` trains with early stopping, ``score``
  implements the :class:`ranking.evaluation.Scorer` protocol, ``save`` / ``load`` checkpoints.
  It is the Hydra ``_target_`` of ``conf/model/{sasrec,gru4rec,lstm,longshort}.yaml``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ranking.data import PAD, Interactions, Split, UserSequences, pad_left, sequence_windows
from ranking.errors import ConfigError, DataError
from ranking.losses import NegativeSampler, bce_loss, cross_entropy_loss, sampled_softmax_loss
from ranking.models import SequenceModel, accepts, build_model
from ranking.storage import atomic_write_with

__all__ = [
    "CHECKPOINT_VERSION",
    "SequenceRecommender",
    "TrainConfig",
    "make_optimizer",
    "resolve_device",
    "train_epochs",
]

log = logging.getLogger("tandem")

CHECKPOINT_VERSION = 1
LOSSES = ("ce", "sampled", "bce")
SAMPLING = ("uniform", "popularity")
VALIDATION_METRIC = "ndcg@10"


@dataclass
class TrainConfig:
    """How a sequence model is trained.

    Attributes
    ----------
    epochs:
        Upper bound on training epochs (early stopping usually ends training sooner).
    batch_size:
        Training windows per step.
    lr, weight_decay:
        AdamW learning rate and decoupled weight decay.
    max_len:
        Window length: the model sees at most the ``max_len`` most recent items.
    loss:
        ``"ce"`` (full softmax), ``"sampled"`` (sampled softmax with ``n_negatives`` negatives
        shared by a batch) or ``"bce"`` (original SASRec: one negative per position).
    n_negatives:
        Negatives per batch of the sampled softmax.
    negative_sampling:
        ``"uniform"`` or ``"popularity"`` (proportional to training counts) for the sampled losses.
    logq_correction:
        Subtract ``log q`` from the sampled-softmax logits (matters for popularity sampling).
    in_batch_negatives:
        Sampled softmax also uses the batch's own target items as negatives (two-tower style).
    clip_grad_norm:
        Gradient norm clipping threshold (``None`` or ``0``: no clipping).
    patience:
        Stop when validation NDCG@10 has not improved for this many epochs (``0``: never stop
        early). Only used when ``fit`` gets a validation split.
    cover_history:
        Cut long histories into several windows instead of keeping only the most recent one
        (see :func:`ranking.data.sequence_windows`).
    eval_every:
        Validate every this many epochs.
    seed:
        Seeds parameter initialisation, dropout, shuffling and negative sampling.
    num_threads:
        ``torch.set_num_threads`` value (``None``: leave torch's default).
    progress:
        Show a progress bar over the epochs.
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_len: int = 50
    loss: str = "ce"
    n_negatives: int = 256
    negative_sampling: str = "uniform"
    logq_correction: bool = True
    in_batch_negatives: bool = False
    clip_grad_norm: float | None = 1.0
    patience: int = 10
    cover_history: bool = True
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 0, "epochs must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_len >= 1, "max_len must be >= 1"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.n_negatives >= 1, "n_negatives must be >= 1"),
            (self.negative_sampling in SAMPLING, f"negative_sampling must be one of {SAMPLING}"),
            (self.patience >= 0, "patience must be >= 0"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.num_threads is None or self.num_threads >= 1, "num_threads must be >= 1 or null"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"train config: {message}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> TrainConfig:
        """A config from a mapping (e.g. a Hydra section); unknown keys raise :class:`ConfigError`."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"train config has no setting(s) {unknown}; accepted: {sorted(known)}"
            )
        return cls(**values)


def resolve_device(name: str) -> torch.device:
    """The torch device for a :attr:`TrainConfig.device` value."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not a torch device: {exc}") from exc


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The AdamW optimizer of :func:`train_epochs`."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def batch_negatives(sampled: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The shared negatives of a sampled-softmax batch: the sampled ids, plus the batch's own
    target items when ``cfg.in_batch_negatives`` (0-based ids; a row's own positive is masked later)."""
    if not cfg.in_batch_negatives:
        return sampled
    in_batch = (targets[targets != PAD] - 1).unique()
    return torch.cat([sampled, in_batch.to(sampled.dtype)])


def _batch_loss(
    model: SequenceModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig,
    sampler: NegativeSampler | None,
    rng: np.random.Generator,
) -> torch.Tensor:
    hidden = model(inputs)
    table = model.item_table()
    if cfg.loss == "ce":
        return cross_entropy_loss(hidden, targets, table)
    assert sampler is not None
    if cfg.loss == "sampled":
        negatives = batch_negatives(sampler.sample(cfg.n_negatives, rng).to(inputs.device), targets, cfg)
        log_q = sampler.log_q.to(inputs.device) if cfg.logq_correction else None
        return sampled_softmax_loss(hidden, targets, table, negatives, log_q)
    negatives = sampler.sample(tuple(targets.shape), rng).to(inputs.device)
    return bce_loss(hidden, targets, table, negatives)


def train_epochs(
    model: SequenceModel,
    sequences: UserSequences,
    cfg: TrainConfig,
    epochs: int = 1,
    *,
    item_counts: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place for ``epochs`` epochs of next-item prediction on ``sequences``.

    Parameters
    ----------
    model:
        A :class:`~ranking.models.base.SequenceModel`, already on its device.
    sequences:
        The users' training sequences (e.g. ``interactions.sequences()``); they are cut into
        windows by :func:`ranking.data.sequence_windows` with ``cfg.max_len`` and
        ``cfg.cover_history``, and every non-PAD position of a window is a training target.
    cfg:
        Batch size, loss, learning rate, clipping... (``cfg.epochs`` is ignored; ``epochs`` counts).
    epochs:
        Epochs to run now.
    item_counts:
        Interactions per item for popularity-drawn negatives (default: counted on ``sequences``).
    rng:
        NumPy generator (or seed) for shuffling and negative sampling; default ``cfg.seed``.
        Dropout draws from torch's global generator (seed it with ``torch.manual_seed``).
    optimizer:
        Continue with this optimizer (keeps Adam's moments across calls); default: a fresh
        :func:`make_optimizer`.
    penalty:
        Optional extra term added to every batch loss, e.g. FedProx's proximal term
        ``mu / 2 * ||w - w_global||^2``.

    Returns
    -------
    ``{"loss": mean loss per target of the last epoch, "epoch_losses": [...], "seconds": wall
    time, "n_examples": training windows, "n_targets": target positions per epoch, "steps":
    optimizer steps}``. With no window (every sequence shorter than 2) nothing is trained and
    ``loss`` is NaN.
    """
    start = time.perf_counter()
    rng = (
        rng
        if isinstance(rng, np.random.Generator)
        else np.random.default_rng(cfg.seed if rng is None else rng)
    )
    inputs, targets = sequence_windows(sequences, cfg.max_len, cover_history=cfg.cover_history)
    n_windows = len(inputs)
    n_targets = int((targets != PAD).sum())
    result: dict[str, Any] = {
        "loss": math.nan, "epoch_losses": [], "seconds": 0.0,
        "n_examples": n_windows, "n_targets": n_targets, "steps": 0,
    }  # fmt: skip
    if n_windows == 0 or epochs <= 0:
        result["seconds"] = time.perf_counter() - start
        return result
    device = next(model.parameters()).device
    sampler = None
    if cfg.loss != "ce":
        if cfg.negative_sampling == "popularity" and item_counts is None:
            item_counts = np.bincount(sequences.items, minlength=model.n_items)
        sampler = NegativeSampler(model.n_items, cfg.negative_sampling, item_counts)
    optimizer = optimizer or make_optimizer(model, cfg)
    inputs_t = torch.from_numpy(inputs)
    targets_t = torch.from_numpy(targets)
    model.train()
    steps = 0
    for _ in range(epochs):
        total, weight = 0.0, 0
        order = torch.from_numpy(rng.permutation(n_windows))
        for lo in range(0, n_windows, cfg.batch_size):
            idx = order[lo : lo + cfg.batch_size]
            x = inputs_t[idx].to(device, non_blocking=True)
            y = targets_t[idx].to(device, non_blocking=True)
            count = int((y != PAD).sum())
            if count == 0:
                continue
            loss = _batch_loss(model, x, y, cfg, sampler, rng)
            if penalty is not None:
                loss = loss + penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            steps += 1
            total += float(loss.detach()) * count
            weight += count
        result["epoch_losses"].append(total / max(weight, 1))
    result["loss"] = result["epoch_losses"][-1]
    result["steps"] = steps
    result["seconds"] = time.perf_counter() - start
    return result


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
        self.kind = kind
        self.model_kwargs: dict[str, Any] = dict(model or {})
        self.cfg = train if isinstance(train, TrainConfig) else TrainConfig.from_mapping(train)
        self.content = None if content is None else torch.as_tensor(content, dtype=torch.float32)
        self.network: SequenceModel | None = None
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.best_metric: float | None = None
        accepts(kind, "hidden")  # fail early on an unknown kind
        if "max_len" in self.model_kwargs and int(self.model_kwargs["max_len"]) < self.cfg.max_len:
            raise ConfigError(
                f"model max_len={self.model_kwargs['max_len']} is shorter than train.max_len={self.cfg.max_len}"
            )
        if n_items is not None:
            self.build(n_items)

    # ---- construction ----------------------------------------------------------------------

    @property
    def n_items(self) -> int | None:
        return None if self.network is None else self.network.n_items

    @property
    def device(self) -> torch.device:
        return resolve_device(self.cfg.device)

    def build(self, n_items: int) -> SequenceModel:
        """(Re)build the network for ``n_items`` items, initialised from ``cfg.seed``."""
        if self.content is not None and self.content.shape[0] != n_items:
            raise DataError(
                f"content has {self.content.shape[0]} rows but the catalog has {n_items} items"
            )
        if accepts(self.kind, "max_len"):
            self.model_kwargs.setdefault("max_len", self.cfg.max_len)
        torch.manual_seed(self.cfg.seed)
        self.network = build_model(
            self.kind, n_items, content=self.content, **self.model_kwargs
        ).to(self.device)
        return self.network

    def _require(self) -> SequenceModel:
        if self.network is None:
            raise RuntimeError(f"{self!r} has no network yet; call fit(interactions) first")
        return self.network

    def __repr__(self) -> str:
        return f"SequenceRecommender(kind={self.kind!r}, n_items={self.n_items}, model={self.model_kwargs})"

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
        torch.manual_seed(cfg.seed)
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

        return float(evaluate(self, validation, stage="valid", ks=(10,))[VALIDATION_METRIC])

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

    # ---- checkpoints -----------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Everything :meth:`load` needs, as a dict of plain values and CPU tensors."""
        net = self._require()
        return {
            "format_version": CHECKPOINT_VERSION,
            "kind": self.kind,
            "n_items": net.n_items,
            "model_kwargs": copy.deepcopy(self.model_kwargs),
            "train": asdict(self.cfg),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "content": None if self.content is None else self.content.cpu(),
            "history": copy.deepcopy(self.history),
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
        }

    def save(self, path: str | Path) -> None:
        """Write a checkpoint (weights, model settings, train config, history), atomically."""
        state = self.checkpoint()
        atomic_write_with(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> SequenceRecommender:
        """A recommender from a :meth:`save` checkpoint (optionally moved to ``device``)."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise DataError(f"not a readable checkpoint ({exc})", path=path) from exc
        if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_VERSION:
            raise DataError(f"checkpoint format is not version {CHECKPOINT_VERSION}", path=path)
        train = dict(state["train"])
        if device is not None:
            train["device"] = device
        rec = cls(
            state["kind"],
            model=state["model_kwargs"],
            train=TrainConfig.from_mapping(train),
            content=state["content"],
        )
        net = rec.build(int(state["n_items"]))
        net.load_state_dict(state["state_dict"])
        net.eval()
        rec.history = list(state["history"])
        rec.best_epoch = state["best_epoch"]
        rec.best_metric = state["best_metric"]
        return rec
