"""Neural sequence models of the ranking tier and the factory that builds them by name.

Every model maps a left-padded batch of shifted item ids ``[B, L]`` to hidden vectors
``[B, L, D]`` (see :mod:`ranking.models.base`); :class:`ranking.trainer.SequenceRecommender`
trains them and turns them into scorers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import Tensor

from ranking.errors import ConfigError
from ranking.models.base import ItemEmbedding, SequenceModel
from ranking.models.gru4rec import GRU4Rec
from ranking.models.longshort import LongShort
from ranking.models.sasrec import SASRec

__all__ = [
    "GRU4Rec",
    "ItemEmbedding",
    "LongShort",
    "MODELS",
    "SASRec",
    "SequenceModel",
    "accepts",
    "build_model",
]

MODELS: dict[str, Callable[..., SequenceModel]] = {
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "gru": partial(GRU4Rec, cell="gru"),
    "lstm": partial(GRU4Rec, cell="lstm"),
    "longshort": LongShort,
}
"""Model kinds by name (``gru`` and ``lstm`` are :class:`GRU4Rec` with that cell)."""


def accepts(kind: str, argument: str) -> bool:
    """Whether the model ``kind`` takes the keyword ``argument`` (e.g. ``max_len``)."""
    return argument in inspect.signature(_constructor(kind)).parameters


def _constructor(kind: str) -> Callable[..., SequenceModel]:
    try:
        return MODELS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown sequence model kind {kind!r}; expected one of {sorted(MODELS)}"
        ) from None


def build_model(
    kind: str, n_items: int, content: Tensor | None = None, **kwargs: Any
) -> SequenceModel:
    """Build the sequence model ``kind`` for a catalog of ``n_items`` items.

    ``kwargs`` are the model's own settings (``hidden``, ``n_blocks``, ...); an unknown setting
    raises :class:`~ranking.errors.ConfigError` naming the accepted ones.
    """
    ctor = _constructor(kind)
    params = inspect.signature(ctor).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        allowed = sorted(p for p in params if p not in ("n_items", "content"))
        raise ConfigError(f"model {kind!r} has no setting(s) {unknown}; accepted: {allowed}")
    try:
        return ctor(n_items=n_items, content=content, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"model {kind!r}: {exc}") from exc
