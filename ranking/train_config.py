"""How a sequence model is trained: :class:`TrainConfig`, the ``train`` part of a model spec.

Defaults are the SASRec+ protocol of Klenitskiy & Vasilev (RecSys 2023): windows of 50 items,
batch 128, AdamW at lr 1e-3, full softmax cross-entropy, early stopping on validation NDCG@10 with
patience 10. These dataclass defaults are the only place they are written: the Hydra ``train/``
group and Flower's run config are built from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ranking.errors import ConfigError
from ranking.typed_config import dataclass_from_mapping

__all__ = ["LOSSES", "SAMPLING", "TrainConfig", "check_ranges"]

LOSSES = ("ce", "sampled", "bce")
SAMPLING = ("uniform", "popularity")


def check_ranges(where: str, checks: list[tuple[str, bool, str]], obj: Any) -> None:
    """Raise :class:`ConfigError` for the first ``(key, ok, expected)`` whose ``ok`` is false,
    naming ``where.key``, its value and what was expected."""
    for key, ok, expected in checks:
        if not ok:
            value = getattr(obj, key)
            raise ConfigError(f"{where}.{key}={value!r} is out of range: expected {expected}")


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
    validation_filter_seen:
        Early stopping removes the user's seen items (other than the target) from the ranking, as
        the reported evaluation does by default; the Hydra ``train/`` group links it to
        ``eval.filter_seen`` so that early stopping validates with the protocol being reported.
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
    validation_filter_seen: bool = True
    cover_history: bool = True
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_ranges(
            "train",
            [
                ("epochs", self.epochs >= 0, ">= 0"),
                ("batch_size", self.batch_size >= 1, ">= 1"),
                ("lr", self.lr > 0, "> 0"),
                ("weight_decay", self.weight_decay >= 0, ">= 0"),
                ("max_len", self.max_len >= 1, ">= 1"),
                ("loss", self.loss in LOSSES, f"one of {LOSSES}"),
                ("n_negatives", self.n_negatives >= 1, ">= 1"),
                ("negative_sampling", self.negative_sampling in SAMPLING, f"one of {SAMPLING}"),
                (
                    "clip_grad_norm",
                    self.clip_grad_norm is None or self.clip_grad_norm >= 0,
                    ">= 0 or null",
                ),
                ("patience", self.patience >= 0, ">= 0"),
                ("eval_every", self.eval_every >= 1, ">= 1"),
                ("num_threads", self.num_threads is None or self.num_threads >= 1, ">= 1 or null"),
                ("device", bool(self.device), "cpu, cuda, cuda:N or auto"),
            ],
            self,
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str = "train") -> TrainConfig:
        """A config from a mapping (a Hydra section, a run config table): unknown keys and values
        of the wrong type raise :class:`ConfigError` naming ``where.<key>``."""
        return dataclass_from_mapping(cls, values, where)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
